"""What filing a spam report answers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas.common import UtcDatetime


class ReportFiled(BaseModel):
    """A report kept as evidence: the source found in its Received chain, and whether that
    source is now listed (only once enough reporters reported it)."""

    evidence_id: int
    source: str = Field(description="The first host outside traps.trusted_relays")
    listed: bool
    listing_id: int | None
    zone: str | None
    expires_at: UtcDatetime | None
    refused: str | None = Field(description="Why the source was not listed (never-list policy)")
    reporters: int = Field(description="Distinct reporters of the source within the window")
    threshold: int
