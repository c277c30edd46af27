"""Which listings cover an address, and which of them are in force: what a lookup shows.

A network containing an address starts at the address cut to the network's length, so the
listings covering an address are found with one probe of the start index per prefix length.
Per zone and category the most specific of them decides, and an exclusion there means "not
listed in that category": the longest-prefix rule the zone index answers by.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from sqlalchemy import Engine, and_, or_, select
from sqlalchemy.orm import Session

from dnsbl.addresses import hex_key, parse_address
from dnsbl.models import Listing, utcnow


def in_force_clause(now: datetime) -> Any:
    """SQL: the listing is in force (not ended, not past its expiry)."""
    return and_(
        Listing.ended_at.is_(None), or_(Listing.expires_at.is_(None), Listing.expires_at > now)
    )


def expired_clause(until: datetime, after: datetime | None = None) -> Any:
    """SQL: the listing is not ended but its expiry passed (by `until`; after `after`, if given):
    out of force, waiting for an expiry sweep to end it."""
    clause = and_(
        Listing.ended_at.is_(None), Listing.expires_at.is_not(None), Listing.expires_at <= until
    )
    return clause if after is None else and_(clause, Listing.expires_at > after)


def covering_starts(ip: IPv4Address | IPv6Address) -> dict[int, str]:
    """The start key of the network of each prefix length that contains `ip`, longest first."""
    bits = ip.max_prefixlen
    value = int(ip)
    return {
        length: hex_key(ip.version, value >> (bits - length) << (bits - length))
        for length in range(bits, -1, -1)
    }


def listings_containing(engine: Engine, address: str, *, active_only: bool = True) -> list[Listing]:
    """Listings (in every zone) whose network contains `address`, most specific first."""
    ip = parse_address(address)
    starts = covering_starts(ip)
    with Session(engine) as session:
        query = (
            select(Listing)
            .where(Listing.family == ip.version, Listing.start_key.in_(set(starts.values())))
            .order_by(Listing.prefixlen.desc(), Listing.created_at.desc())
        )
        if active_only:
            query = query.where(in_force_clause(utcnow()))
        return [
            listing
            for listing in session.scalars(query).unique()
            if starts[listing.prefixlen] == listing.start_key
        ]


def in_force(listings: Iterable[Listing]) -> list[Listing]:
    """The listings that decide, per zone and category: the most specific one of each, and only
    if it is not an exclusion.

    `listings` must come most specific first, as `listings_containing` returns them.
    """
    decided: dict[tuple[int, str], Listing] = {}
    for listing in listings:
        decided.setdefault((listing.zone_id, listing.category), listing)
    return [listing for listing in decided.values() if not listing.excluded]
