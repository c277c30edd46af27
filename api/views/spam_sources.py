"""What a lookup shows of a spam-source listing: the hits (trap redacted), its expiry, whether
it came back after a removal, and how to remove it."""

from __future__ import annotations

from sqlalchemy import Engine

from api.schemas.lookup import SpamHitPublic, SpamSourcePublic
from dnsbl.config import Settings
from dnsbl.models import Listing
from dnsbl.timestamps import maybe_aware
from dnsbl.traps.escalation import source_history
from dnsbl.traps.evidence import public_hits


def spam_section(
    engine: Engine, settings: Settings, listing: Listing, address: str, delist_url: str
) -> SpamSourcePublic | None:
    """The spam-source part of `listing`'s lookup, or None for a listing of another category."""
    if listing.category != settings.traps.category:
        return None
    history = source_history(engine, listing.zone.name, address)
    relisted = history is not None and history.relisted_at is not None
    return SpamSourcePublic(
        hits=[
            SpamHitPublic(
                kind=hit.kind,
                received_at=hit.received_at,
                subject=hit.subject,
                sender_domain=hit.sender_domain,
            )
            for hit in public_hits(engine, settings.traps, address)
        ],
        expires_at=listing.expires_at,
        relisted_after_removal=maybe_aware(history.removed_at) if relisted and history else None,
        removal=(
            f"Ask for removal at {delist_url}: a spam-source listing ends at once, without a "
            "test. Spam seen again after a removal lists the address for twice as long."
        ),
    )
