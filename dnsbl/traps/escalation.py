"""How long a spam source is listed, and its free removal (the PSBL model).

- A first hit lists the source for `traps.first_days`.
- A hit while it is listed extends the listing by `traps.extra_days`, never beyond
  `traps.max_days` from now.
- A removal on request ends the listing at once: there is nothing to retest.
- A hit after a removal lists it again for twice the previous length (capped at `max_days`),
  and the lookup page says so. A listing that simply expired starts over at `first_days`.

Listing goes through the one listing rule (`list_entries`): the never-list networks win.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, select, update

from dnsbl.addresses import parse_network
from dnsbl.config import Settings, TrapsSettings
from dnsbl.db import begin_write, one_transaction
from dnsbl.errors import DnsblError
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.manual import list_entries
from dnsbl.listings.rows import Source
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.models import Listing, utcnow
from dnsbl.models.traps import SpamSource
from dnsbl.timestamps import aware, maybe_aware

_DAY = timedelta(days=1)
# One process lists one source at a time: two hits at once must not both start a listing.
_listing_lock = threading.RLock()


@contextmanager
def one_sighting(engine: Engine) -> Iterator[None]:
    """Everything one sighting writes (listing, change log, history, evidence, audit entry) as
    one transaction, one sighting at a time in this process. The lock is taken first: a
    thread holding SQLite's write lock must never wait for it."""
    with _listing_lock, one_transaction(engine):
        yield


@dataclass(frozen=True, slots=True)
class Listed:
    """What a sighting did to the list: the listing and its expiry, or why there is none."""

    listing_id: int | None
    expires_at: datetime | None
    refused: str | None = None
    relisted_after_removal: datetime | None = None


def spam_listings(engine: Engine, traps: TrapsSettings, address: str) -> list[Listing]:
    """The spam-source listings of exactly `address` in force, in every zone."""
    length = parse_network(address).prefixlen
    return [
        listing
        for listing in listings_containing(engine, address)
        if listing.category == traps.category
        and not listing.excluded
        and listing.prefixlen == length
    ]


def _state(engine: Engine, zone: str, address: str) -> SpamSource | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(SpamSource).where(SpamSource.zone == zone, SpamSource.address == address)
        ).first()
    return None if row is None else SpamSource(**row._mapping)


def _expiry(
    traps: TrapsSettings, current: Listing | None, state: SpamSource | None, now: datetime
) -> tuple[datetime | None, datetime, datetime | None]:
    """(until, listed since, relisted after removal at) for a new sighting."""
    ceiling = now + traps.max_days * _DAY
    if current is not None:
        since = aware(state.listed_since) if state is not None else aware(current.created_at)
        relisted = maybe_aware(state.relisted_at) if state is not None else None
        if current.expires_at is None:
            return None, since, relisted  # listed for good by hand: a hit does not shorten it
        return min(aware(current.expires_at) + traps.extra_days * _DAY, ceiling), since, relisted
    removed = maybe_aware(state.removed_at) if state is not None else None
    if state is not None and removed is not None and removed >= aware(state.listed_since):
        return min(now + 2 * state.listed_days * _DAY, ceiling), now, now
    return min(now + traps.first_days * _DAY, ceiling), now, None


def list_source(
    engine: Engine, settings: Settings, address: str, *, reason: str, actor: str, source: Source
) -> Listed:
    """List (or extend the listing of) `address` as a spam source in the spam zone."""
    zone = settings.spam_zone
    if zone is None:
        return Listed(None, None, "no zone is configured")
    traps = settings.traps
    refusals: list[DnsblError] = []
    with _listing_lock:
        now = utcnow()
        current = next(
            (x for x in spam_listings(engine, traps, address) if x.zone.name == zone.name), None
        )
        state = _state(engine, zone.name, address)
        until, since, relisted = _expiry(traps, current, state, now)
        entry = Entry(
            parse_network(address),
            category=traps.category,
            reason=reason,
            expires_at=until,
        )
        result = list_entries(
            ListingStore(engine),
            zone.name,
            [entry],
            actor=actor,
            source=source,
            refused=lambda _entry, problem: refusals.append(problem),
        )
        if refusals:
            return Listed(None, None, str(refusals[0]))
        days = (until - since) / _DAY if until is not None else traps.max_days
        _keep_state(engine, zone.name, address, state, days, since, relisted)
    listing_id = result.listing_ids[0] if result.listing_ids else None
    if listing_id is None and current is not None:
        listing_id = current.id  # the same values again: the listing stands as it was
    removed = maybe_aware(state.removed_at) if relisted and state is not None else None
    return Listed(listing_id, until, None, removed)


def _keep_state(
    engine: Engine,
    zone: str,
    address: str,
    state: SpamSource | None,
    days: float,
    since: datetime,
    relisted: datetime | None,
) -> None:
    values = {"listed_days": days, "listed_since": since, "relisted_at": relisted}
    with begin_write(engine) as conn:
        if state is None:
            conn.execute(
                insert(SpamSource).values(zone=zone, address=address, removals=0, **values)
            )
        else:
            conn.execute(update(SpamSource).where(SpamSource.id == state.id).values(**values))


def remove_source(engine: Engine, traps: TrapsSettings, address: str, *, actor: str) -> int:
    """End `address`'s spam-source listings at once (a removal on request); how many ended.

    The removal is remembered: the next hit lists the source for twice as long.
    """
    listings = spam_listings(engine, traps, address)
    if not listings:
        return 0
    with one_sighting(engine):
        ListingStore(engine).end_ids(
            [listing.id for listing in listings], actor=actor, reason="removed on request"
        )
        now = utcnow()
        with begin_write(engine) as conn:
            conn.execute(
                update(SpamSource)
                .where(
                    SpamSource.address == address,
                    SpamSource.zone.in_({listing.zone.name for listing in listings}),
                )
                .values(removed_at=now, removals=SpamSource.removals + 1)
            )
    return len(listings)


def source_history(engine: Engine, zone: str, address: str) -> SpamSource | None:
    """The listing history of `address` as a spam source in `zone`, or None."""
    return _state(engine, zone, address)
