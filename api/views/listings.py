"""Reading listings for the admin API: filters, pagination, and the public shape of a listing."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from api.schemas.listings import ListingPublic
from dnsbl.addresses import Network
from dnsbl.config import Settings
from dnsbl.errors import UnknownZoneError
from dnsbl.index.values import RBLDNSD_DEFAULTS, ValueDefaults
from dnsbl.listings.covering import covering_starts, in_force_clause
from dnsbl.models import Listing, ListingValue, Zone, utcnow
from dnsbl.timestamps import aware


@dataclass(frozen=True, slots=True)
class ListingFilter:
    """What the admin asked to see; every field left None matches everything."""

    zone: str | None = None
    category: str | None = None
    source: str | None = None
    active: bool | None = None
    within: Network | None = None  # listings inside this network
    containing: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None


def _containing(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ColumnElement[bool]:
    return and_(
        Listing.family == address.version,
        or_(
            *(
                and_(Listing.prefixlen == length, Listing.start_key == start)
                for length, start in covering_starts(address).items()
            )
        ),
    )


def _query(wanted: ListingFilter) -> Select[Listing]:
    query = (
        select(Listing)
        .join(Zone, Zone.id == Listing.zone_id)
        .join(ListingValue, ListingValue.id == Listing.value_id)
    )
    if wanted.zone is not None:
        query = query.where(Zone.name == wanted.zone)
    if wanted.category is not None:
        query = query.where(ListingValue.category == wanted.category)
    if wanted.source is not None:
        query = query.where(Listing.source == wanted.source)
    if wanted.active is True:
        query = query.where(in_force_clause(utcnow()))
    elif wanted.active is False:
        query = query.where(~in_force_clause(utcnow()))
    if wanted.within is not None:
        net = wanted.within
        query = query.where(
            Listing.family == net.family,
            Listing.start_key >= net.start_key,
            Listing.start_key <= net.end_key,
            Listing.prefixlen >= net.prefixlen,
        )
    if wanted.containing is not None:
        query = query.where(_containing(wanted.containing))
    return query


def find_listings(
    session: Session, settings: Settings, wanted: ListingFilter, *, limit: int, offset: int
) -> tuple[int, list[ListingPublic]]:
    """The number of listings matching `wanted` and one page of them, newest first."""
    query = _query(wanted)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Listing.id.desc()).limit(limit).offset(offset))
    return total, [to_public(listing, settings) for listing in rows.unique()]


def get_listing(session: Session, settings: Settings, listing_id: int) -> ListingPublic | None:
    listing = session.get(Listing, listing_id)
    return to_public(listing, settings) if listing is not None else None


def to_public(listing: Listing, settings: Settings) -> ListingPublic:
    try:
        defaults = ValueDefaults.of(settings.zone(listing.zone.name))
    except UnknownZoneError:  # a zone since removed from the configuration
        defaults = RBLDNSD_DEFAULTS
    expired = listing.expires_at is not None and aware(listing.expires_at) <= utcnow()
    return ListingPublic(
        id=listing.id,
        zone=listing.zone.name,
        network=listing.network,
        category=listing.category,
        excluded=listing.excluded,
        code=defaults.code(listing.category, listing.code),
        txt=listing.txt,
        reason=listing.reason,
        source=listing.source,
        created_at=listing.created_at,
        created_by=listing.created_by,
        expires_at=listing.expires_at,
        active=listing.ended_at is None and not expired,
        ended_at=listing.ended_at,
        ended_by=listing.ended_by,
        end_reason=listing.end_reason,
    )
