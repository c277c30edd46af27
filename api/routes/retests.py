"""`/v1/admin/retests`: retest one address, or every listed host of a zone (or category)."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import Engine, select

from api import audit
from api.auth import OperatorKey, actor
from api.deps import EngineDep, SettingsDep
from api.problems import Problem, responses
from api.schemas.admin import RetestAddressCreate, RetestCreate, RetestsScheduled
from dnsbl.addresses import IPV4_BITS, IPV6_BITS, address_text
from dnsbl.db import one_transaction
from dnsbl.errors import PolicyRefused, UnknownZoneError
from dnsbl.listings.covering import in_force_clause
from dnsbl.models import Listing, ListingValue, Zone, utcnow
from dnsbl.relay import schedule

router = APIRouter(prefix="/v1/admin/retests", tags=["admin: retests"])


def _listed_hosts(engine: Engine, zone: str, category: str | None) -> list[str]:
    """The single addresses listed in force in `zone` (networks cannot be tested as a whole)."""
    query = (
        select(Listing.family, Listing.start_key, Listing.prefixlen)
        .join(Zone, Zone.id == Listing.zone_id)
        .join(ListingValue, ListingValue.id == Listing.value_id)
        .where(Zone.name == zone, ListingValue.excluded.is_(False), in_force_clause(utcnow()))
        .order_by(Listing.family, Listing.start_key)
    )
    if category is not None:
        query = query.where(ListingValue.category == category)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    full = {4: IPV4_BITS, 6: IPV6_BITS}
    hosts = [
        address_text(family, int(start, 16))
        for family, start, length in rows
        if length == full[family]
    ]
    return list(dict.fromkeys(hosts))


@router.post(
    "",
    response_model=RetestsScheduled,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(400, 401, 403, 413, 422, 500),
)
def schedule_retests(
    key: OperatorKey, body: RetestCreate, engine: EngineDep, settings: SettingsDep
) -> RetestsScheduled:
    """Queue a retest (forced: the once-a-day limit does not apply) of one address, or of
    every host listed in a zone, optionally in one category. Hosts that policy forbids to
    test are skipped; a single address that policy forbids is refused (403)."""
    who = actor(key)
    if isinstance(body, RetestAddressCreate):
        with one_transaction(engine):  # the job and its audit entry, or neither
            job = schedule.schedule_retest(engine, settings, body.address, actor=who, forced=True)
            audit.record(
                engine,
                key,
                "retest.schedule",
                job.target,
                reason=body.reason,
                detail={"job": job.id},
            )
        return RetestsScheduled(scheduled=1, addresses=[job.target], skipped=[])
    try:
        zone = settings.zone(body.zone)
    except UnknownZoneError as exc:
        raise Problem(422, "unknown-zone", exc.detail, title="Unknown zone") from None
    scheduled: list[str] = []
    skipped: list[str] = []
    with one_transaction(engine):
        for host in _listed_hosts(engine, zone.name, body.category):
            try:
                schedule.schedule_retest(engine, settings, host, actor=who, forced=True)
                scheduled.append(host)
            except PolicyRefused:
                skipped.append(host)
        audit.record(
            engine,
            key,
            "retest.schedule",
            f"{zone.name}" + (f" category {body.category}" if body.category else ""),
            reason=body.reason,
            detail={"scheduled": len(scheduled), "skipped": len(skipped)},
        )
    return RetestsScheduled(scheduled=len(scheduled), addresses=scheduled, skipped=skipped)
