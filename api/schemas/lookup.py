"""What a lookup answers: for one address, its listings per zone and category and the evidence."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas.common import UtcDatetime


class SpamHitPublic(BaseModel):
    """A spam message seen from the address: at a trap or in a report (the trap never shown)."""

    kind: str = Field(description="trap or report")
    received_at: UtcDatetime
    subject: str | None
    sender_domain: str | None


class SpamSourcePublic(BaseModel):
    """Why a spam-source listing stands, until when, and how it ends."""

    hits: list[SpamHitPublic] = Field(description="Newest first")
    expires_at: UtcDatetime | None
    relisted_after_removal: UtcDatetime | None = Field(
        description="Set when the source was removed on request and spam came again: the date "
        "of that removal (this listing then lasts twice as long as the one before)"
    )
    removal: str = Field(description="How to have the listing removed")


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
    spam: SpamSourcePublic | None = Field(
        None, description="For a spam-source listing: the hits, its expiry, how to remove it"
    )


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
