"""The spam traps' tables: the evidence of each hit or report, and each source's listing history.

A hit is what a trap received; a report is spam a user sent in over the API. Both are kept as
`SpamEvidence`, already redacted (no trap address anywhere in `headers`, `body` or `subject`);
the trap that was hit is kept apart in `trap`, for admins only. `SpamSource` remembers per zone
and address how long the last listing was and when the source last asked out, which is what
the next hit's listing length is worked out from (dnsbl.traps.escalation).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dnsbl.models.base import Base, utcnow


class SpamEvidence(Base):
    """One trap hit or one report: who sent it, and what it was (redacted)."""

    __tablename__ = "spam_evidence"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # an EvidenceKind: trap or report
    address: Mapped[str] = mapped_column(String(45))  # the source, as listed
    delivered_by: Mapped[str | None] = mapped_column(String(45))  # the connecting address
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    helo: Mapped[str | None] = mapped_column(String(255))
    mail_from: Mapped[str | None] = mapped_column(Text)
    sender_domain: Mapped[str | None] = mapped_column(String(253))
    subject: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # the first 16 KB
    trap: Mapped[str | None] = mapped_column(Text)  # the trap hit: never shown in public
    trap_domain: Mapped[str | None] = mapped_column(String(253))
    reporter: Mapped[str | None] = mapped_column(String(128))
    listing_id: Mapped[int | None] = mapped_column(ForeignKey("listings.id"))

    __table_args__ = (Index("ix_spam_evidence_address", "address", "received_at"),)


class SpamSource(Base):
    """A source's listing history in one zone: the last listing's length and the last removal."""

    __tablename__ = "spam_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    zone: Mapped[str] = mapped_column(String(253))
    address: Mapped[str] = mapped_column(String(45))
    listed_days: Mapped[float] = mapped_column(Float)
    listed_since: Mapped[datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column()  # the last removal on request
    relisted_at: Mapped[datetime | None] = mapped_column()  # listed again after that removal
    removals: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (UniqueConstraint("zone", "address", name="uq_spam_sources_zone_address"),)
