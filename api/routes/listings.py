"""`/v1/admin/listings`: create (manual or report-based), end, list and filter listings.

Writes go through the listing store, so each one is a change-log entry under a new zone serial
and the DNS nodes, which follow the log, answer it within their sync interval.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit
from api.auth import AdminKey, OperatorKey, actor
from api.deps import EngineDep, SessionDep, SettingsDep, StoreDep
from api.problems import Problem, responses
from api.schemas.common import ADDRESS_PATTERN, NETWORK_PATTERN, TEXT_PATTERN, Page
from api.schemas.listings import ListingCreate, ListingEnd, ListingPublic
from api.views.listings import ListingFilter, find_listings, get_listing
from dnsbl.addresses import parse_address, parse_network
from dnsbl.db import one_transaction
from dnsbl.errors import AddressError, UnknownZoneError
from dnsbl.listings.manual import list_entries
from dnsbl.listings.rows import Source
from dnsbl.listings.store import Entry
from dnsbl.models import Listing, ListingValue, Zone

router = APIRouter(prefix="/v1/admin/listings", tags=["admin: listings"])

ListingId = Annotated[int, Path(ge=1, le=2**63 - 1)]
_READ_ERRORS = responses(400, 401, 403, 413, 422, 500)
_WRITE_ERRORS = responses(400, 401, 403, 404, 409, 413, 422, 500)


@router.get("", response_model=Page[ListingPublic], responses=_READ_ERRORS)
def list_listings(
    key: OperatorKey,
    session: SessionDep,
    settings: SettingsDep,
    zone: Annotated[str | None, Query(max_length=253, pattern=TEXT_PATTERN)] = None,
    category: Annotated[str | None, Query(max_length=64, pattern=TEXT_PATTERN)] = None,
    source: Annotated[str | None, Query(max_length=32, pattern=TEXT_PATTERN)] = None,
    active: Annotated[bool | None, Query(description="true: in force; false: ended")] = None,
    network: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=NETWORK_PATTERN,
            description="Only listings inside this network",
        ),
    ] = None,
    address: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=ADDRESS_PATTERN,
            description="Only listings containing this address",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> Page[ListingPublic]:
    """Listings, newest first, filtered; `total` counts every match across pages."""
    wanted = ListingFilter(
        zone=zone.rstrip(".").lower() if zone is not None else None,
        category=category,
        source=source,
        active=active,
        within=parse_network(network) if network is not None else None,
        containing=parse_address(address) if address is not None else None,
    )
    total, items = find_listings(session, settings, wanted, limit=limit, offset=offset)
    return Page[ListingPublic](items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/{listing_id}", response_model=ListingPublic, responses=responses(401, 403, 404, 422, 500)
)
def read_listing(
    key: OperatorKey, session: SessionDep, settings: SettingsDep, listing_id: ListingId
) -> ListingPublic:
    """One listing, active or ended."""
    found = get_listing(session, settings, listing_id)
    if found is None:
        raise Problem(404, "not-found", f"no listing {listing_id}")
    return found


def _expiry(body: ListingCreate) -> datetime | None:
    if body.expires_at is None:
        return None
    # Naive means UTC; any other offset is converted, since SQLite keeps only the wall time.
    given = body.expires_at
    return given.astimezone(UTC) if given.tzinfo else given.replace(tzinfo=UTC)


@router.post(
    "",
    response_model=ListingPublic,
    status_code=status.HTTP_201_CREATED,
    responses=_WRITE_ERRORS,
)
def create_listing(
    key: AdminKey,
    body: ListingCreate,
    engine: EngineDep,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
) -> ListingPublic:
    """List (or exclude) a network in a zone; it answers in DNS once the nodes follow the log.

    An identical listing already in force is left as it is and returned; one with other values
    is replaced (ended, and the new one added, under one serial).
    """
    try:
        zone = settings.zone(body.zone)
    except UnknownZoneError as exc:
        raise Problem(422, "unknown-zone", exc.detail, title="Unknown zone") from None
    try:
        network = parse_network(body.network)
    except AddressError as exc:
        raise Problem(400, "bad-address", exc.detail, title="Bad address") from None
    entry = Entry(
        network,
        category=body.category,
        excluded=body.excluded,
        code=body.code,
        txt=body.txt,
        reason=body.reason,
        expires_at=_expiry(body),
    )
    # The listing, its change-log rows and its audit entry: all committed, or none.
    with one_transaction(engine):
        store.ensure_zones([zone.name])
        # The rule refuses a bad code (422), a past expiry (422) and a never-list network (403).
        result = list_entries(
            store, zone.name, [entry], actor=actor(key), source=Source(body.source)
        )
        listing_id = (
            result.listing_ids[0] if result.listing_ids else _active_id(session, zone.name, entry)
        )
        audit.record(
            engine,
            key,
            "listing.create",
            f"{zone.name} {network}",
            reason=body.reason,
            detail={
                "listing_id": listing_id,
                "category": body.category,
                "code": body.code,
                "excluded": body.excluded,
                "source": body.source,
                "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
                "serial": result.serial,
                "unchanged": bool(result.unchanged),
            },
        )
    found = get_listing(session, settings, listing_id)
    assert found is not None
    return found


def _active_id(session: Session, zone: str, entry: Entry) -> int:
    listing_id = session.scalar(
        select(Listing.id)
        .join(Zone, Zone.id == Listing.zone_id)
        .join(ListingValue, ListingValue.id == Listing.value_id)
        .where(
            Zone.name == zone,
            ListingValue.category == entry.category,
            Listing.family == entry.network.family,
            Listing.start_key == entry.network.start_key,
            Listing.prefixlen == entry.network.prefixlen,
            Listing.ended_at.is_(None),
        )
    )
    if listing_id is None:  # ended by someone else between our write and this read
        raise Problem(409, "conflict", "the listing was ended while it was being created")
    return listing_id


@router.post("/{listing_id}/end", response_model=ListingPublic, responses=_WRITE_ERRORS)
def end_listing(
    key: AdminKey,
    listing_id: ListingId,
    body: ListingEnd,
    engine: EngineDep,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
) -> ListingPublic:
    """End a listing in force: it leaves the zone, and the record of it stays."""
    listing = session.get(Listing, listing_id)
    if listing is None:
        raise Problem(404, "not-found", f"no listing {listing_id}")
    if listing.ended_at is not None:
        raise Problem(
            409, "already-ended", f"listing {listing_id} already ended at {listing.ended_at}"
        )
    with one_transaction(engine):
        serials = store.end_ids([listing_id], actor=actor(key), reason=body.reason)
        if not serials:
            raise Problem(409, "already-ended", f"listing {listing_id} was ended meanwhile")
        audit.record(
            engine,
            key,
            "listing.end",
            f"{listing.zone.name} {listing.network}",
            reason=body.reason,
            detail={"listing_id": listing_id, "category": listing.category, "serials": serials},
        )
    session.rollback()  # end the read transaction: see the write that just committed
    found = get_listing(session, settings, listing_id)
    assert found is not None
    return found
