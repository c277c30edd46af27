"""The evidence of trap hits and reports: written once per sighting, read by lookups and the CLI.

A `Sighting` is one message as evidence, before it is written. The public view of a sighting
(`HitView`: date, subject, sender domain) is redacted again with today's traps; the full
record (`EvidenceView`: headers, body, and for admins the trap that was hit) is for the CLI.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select

from dnsbl.config import TrapsSettings
from dnsbl.db import begin_write
from dnsbl.models.traps import SpamEvidence
from dnsbl.timestamps import aware
from dnsbl.traps.message import MessageFacts
from dnsbl.traps.redaction import Redactor


class EvidenceKind(enum.StrEnum):
    """What a piece of spam evidence is: mail a trap received, or a user's report."""

    TRAP = "trap"
    REPORT = "report"


@dataclass(frozen=True, slots=True)
class Sighting:
    """One spam message seen from `address`: at a trap, or in a report."""

    kind: EvidenceKind
    address: str
    received_at: datetime
    facts: MessageFacts
    delivered_by: str | None = None
    helo: str | None = None
    mail_from: str | None = None
    trap: str | None = None
    trap_domain: str | None = None
    reporter: str | None = None


def record_sighting(engine: Engine, sighting: Sighting, listing_id: int | None) -> int:
    """Write the evidence; its id."""
    facts = sighting.facts
    with begin_write(engine) as conn:
        return int(
            conn.execute(
                insert(SpamEvidence)
                .values(
                    kind=sighting.kind,
                    address=sighting.address,
                    delivered_by=sighting.delivered_by,
                    received_at=sighting.received_at,
                    helo=(sighting.helo or "")[:255] or None,
                    mail_from=sighting.mail_from,
                    sender_domain=(facts.sender_domain or "")[:253] or None,
                    subject=facts.subject,
                    message_id=facts.message_id,
                    headers=facts.headers,
                    body=facts.body,
                    trap=sighting.trap,
                    trap_domain=sighting.trap_domain,
                    reporter=sighting.reporter,
                    listing_id=listing_id,
                )
                .returning(SpamEvidence.id)
            ).scalar_one()
        )


@dataclass(frozen=True, slots=True)
class HitView:
    """A sighting as the public sees it: when, what, from which sender domain. No trap."""

    kind: str
    received_at: datetime
    subject: str | None
    sender_domain: str | None


@dataclass(frozen=True, slots=True)
class EvidenceView:
    """A sighting in full, for the CLI (`trap` is the trap that was hit: admins only)."""

    id: int
    kind: str
    address: str
    delivered_by: str | None
    received_at: datetime
    helo: str | None
    mail_from: str | None
    sender_domain: str | None
    subject: str | None
    message_id: str | None
    headers: str
    body: str
    trap: str | None
    reporter: str | None
    listing_id: int | None


def evidence_of(
    engine: Engine, address: str, kind: EvidenceKind | None = None, limit: int = 100
) -> list[EvidenceView]:
    """The sightings of `address`, newest first."""
    query = select(SpamEvidence).where(SpamEvidence.address == address)
    if kind is not None:
        query = query.where(SpamEvidence.kind == kind)
    query = query.order_by(SpamEvidence.received_at.desc(), SpamEvidence.id.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        EvidenceView(
            id=row.id,
            kind=row.kind,
            address=row.address,
            delivered_by=row.delivered_by,
            received_at=aware(row.received_at),
            helo=row.helo,
            mail_from=row.mail_from,
            sender_domain=row.sender_domain,
            subject=row.subject,
            message_id=row.message_id,
            headers=row.headers,
            body=row.body,
            trap=row.trap,
            reporter=row.reporter,
            listing_id=row.listing_id,
        )
        for row in rows
    ]


def public_hits(
    engine: Engine, traps: TrapsSettings, address: str, limit: int = 50
) -> list[HitView]:
    """The sightings of `address` that may be shown to anyone, newest first."""
    redact = Redactor(traps)
    return [
        HitView(
            kind=item.kind,
            received_at=item.received_at,
            subject=redact(item.subject),
            sender_domain=redact(item.sender_domain),
        )
        for item in evidence_of(engine, address, limit=limit)
    ]


def reporters_of(engine: Engine, address: str, since: datetime) -> set[str]:
    """Who reported `address` since `since` (as committed: not the report being written)."""
    with engine.connect() as conn:
        return set(
            conn.scalars(
                select(SpamEvidence.reporter)
                .where(
                    SpamEvidence.address == address,
                    SpamEvidence.kind == EvidenceKind.REPORT,
                    SpamEvidence.received_at > since,
                    SpamEvidence.reporter.is_not(None),
                )
                .distinct()
            )
        )
