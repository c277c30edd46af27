"""What a lookup answers: for one address, its listings per zone and category and the evidence."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas.common import UtcDatetime


class LookupListing(BaseModel):
    """A listing in force that covers the address: one per zone and category that lists it."""

    zone: str
    category: str
    network: str = Field(description="The listed network (the address itself or a range)")
    code: str = Field(description="The A record the zone answers (RFC 5782 return code)")
    txt: str | None = Field(description="The TXT record the zone answers")
    since: UtcDatetime
    expires_at: UtcDatetime | None
    reason: str | None
    source: str = Field(description="How it was listed: relay-test, manual, report, import…")
    listing_id: int | None = Field(description="None for the RFC 5782 test address")


class EvidenceLink(BaseModel):
    """A relay test of the address: its verdict and where to read its transcript."""

    id: int
    verdict: str | None
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    url: str


class LookupPublic(BaseModel):
    """Whether an address is listed, where, why, since when, and the evidence."""

    address: str
    listed: bool
    listings: list[LookupListing]
    zones: list[str] = Field(description="The zones that were consulted")
    evidence: list[EvidenceLink] = Field(description="Relay tests of this address, newest first")
    page_url: str = Field(description="The human page for this address")
    delist_url: str | None = Field(description="Where to request removal (when listed)")
