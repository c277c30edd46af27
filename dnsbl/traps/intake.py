"""What a trap hit or a report does: find its source, list it, keep the evidence.

A trap hit lists its source at once. A report lists it once `reports.threshold` distinct
reporters have reported it within `reports.window_days`; below that it is only kept. Either
way the listing, its change log, the source's history and the evidence (which names the
listing) are one transaction (`one_sighting`); a source the never-list policy protects is
not listed, and its evidence is kept all the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.errors import DnsblError
from dnsbl.listings.rows import Source
from dnsbl.models import utcnow
from dnsbl.traps.escalation import Listed, list_source, one_sighting
from dnsbl.traps.evidence import EvidenceKind, Sighting, record_sighting, reporters_of
from dnsbl.traps.message import message_facts
from dnsbl.traps.received import source_of, trusted_networks

log = logging.getLogger(__name__)


class NoSourceError(DnsblError, ValueError):
    """The message names no host outside the trusted relays: nobody can be listed for it."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message a trap received: the SMTP session's facts and the message as sent."""

    peer: str
    helo: str | None
    mail_from: str | None
    rcpt_tos: list[str]
    content: bytes
    received_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Taken:
    """What a sighting did: its evidence id, its source, and the listing (or why none)."""

    evidence_id: int
    address: str
    listed: Listed | None  # None: a report below the threshold
    reporters: int = 0  # for a report: the distinct reporters within the window, this one too


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def take_trap_hit(engine: Engine, settings: Settings, delivery: Delivery) -> Taken:
    """List the source of a trap hit and keep the hit; `NoSourceError` if there is none."""
    traps = settings.traps
    facts = message_facts(delivery.content, traps, delivery.rcpt_tos, delivery.mail_from)
    source = source_of(facts.received, trusted_networks(traps.trusted_relays), delivery.peer)
    if source is None:
        raise NoSourceError(f"a trap hit from {delivery.peer} names no untrusted source")
    with one_sighting(engine):
        listed = list_source(
            engine,
            settings,
            source,
            reason="spam source: sent mail to a spam trap",
            actor="trap",
            source=Source.TRAP,
        )
        evidence_id = record_sighting(
            engine,
            Sighting(
                kind=EvidenceKind.TRAP,
                address=source,
                received_at=delivery.received_at,
                facts=facts,
                delivered_by=delivery.peer,
                helo=delivery.helo,
                mail_from=delivery.mail_from,
                trap=", ".join(delivery.rcpt_tos),
                trap_domain=_domain(delivery.rcpt_tos[0]) if delivery.rcpt_tos else None,
            ),
            listed.listing_id,
        )
    if listed.refused:
        log.info("trap: %s not listed: %s", source, listed.refused)
    return Taken(evidence_id, source, listed)


def take_report(engine: Engine, settings: Settings, raw: bytes, reporter: str) -> Taken:
    """Keep a reported message; list its source once enough reporters have reported it.

    Raises `NoSourceError` when its Received chain names no host outside `traps.trusted_relays`.
    """
    traps = settings.traps
    facts = message_facts(raw, traps)
    source = source_of(facts.received, trusted_networks(traps.trusted_relays))
    if source is None:
        raise NoSourceError(
            "the report's Received chain names no host outside traps.trusted_relays"
        )
    now = utcnow()
    sighting = Sighting(
        kind=EvidenceKind.REPORT, address=source, received_at=now, facts=facts, reporter=reporter
    )
    since = now - timedelta(days=settings.reports.window_days)
    with one_sighting(engine):
        reporters = len(reporters_of(engine, source, since) | {reporter})
        listed = None
        if reporters >= settings.reports.threshold:
            listed = list_source(
                engine,
                settings,
                source,
                reason=f"spam source: reported by {reporters} reporter"
                + ("s" if reporters > 1 else ""),
                actor=f"report:{reporter}",
                source=Source.REPORT,
            )
        evidence_id = record_sighting(engine, sighting, listed.listing_id if listed else None)
    return Taken(evidence_id, source, listed, reporters)
