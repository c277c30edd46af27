"""Listings as the admin API takes and shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.common import RETURN_CODE_PATTERN, Input, NetworkText, Reason, UtcDatetime
from dnsbl.listings.rows import Source


class ListingCreate(Input):
    """A manual or report-based listing to add to a zone."""

    zone: str = Field(min_length=1, max_length=253, examples=["bl.example.org"])
    network: NetworkText
    category: str = Field(
        "manual", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )
    code: str | None = Field(
        None,
        max_length=15,
        pattern=RETURN_CODE_PATTERN,
        description="A return code in 127.0.0.0/8 (default: the category's, else the zone's)",
        examples=["127.0.0.2"],
    )
    txt: str | None = Field(
        None, max_length=255, description="TXT template, `$` = the queried address"
    )
    reason: Reason
    source: Literal[Source.MANUAL, Source.REPORT] = Source.MANUAL
    excluded: bool = Field(False, description="An exclusion: never listed, whatever covers it")
    expires_at: datetime | None = Field(None, description="When it leaves the zone by itself")


class ListingEnd(Input):
    """Why a listing ends."""

    reason: Reason


class ListingPublic(BaseModel):
    """A listing, active or ended, with who made and who ended it."""

    id: int
    zone: str
    network: str
    category: str
    excluded: bool
    code: str = Field(description="The A record answered (the effective code)")
    txt: str | None = Field(description="The listing's own TXT template (null: the zone's)")
    reason: str | None
    source: str
    created_at: UtcDatetime
    created_by: str | None
    expires_at: UtcDatetime | None
    active: bool
    ended_at: UtcDatetime | None
    ended_by: str | None
    end_reason: str | None
