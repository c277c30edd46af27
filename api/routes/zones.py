"""`/v1/admin/zones`: the configured zones, their serials and what is listed in them."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import Engine, func, select

from api.auth import OperatorKey
from api.deps import EngineDep, SettingsDep, StoreDep
from api.problems import responses
from api.schemas.admin import ZonePublic
from dnsbl.listings.covering import in_force_clause
from dnsbl.models import Listing, ListingValue, Zone, utcnow

router = APIRouter(prefix="/v1/admin/zones", tags=["admin: zones"])


def listing_counts(engine: Engine) -> dict[tuple[str, str, bool], int]:
    """Listings in force by (zone, category, excluded)."""
    query = (
        select(Zone.name, ListingValue.category, ListingValue.excluded, func.count())
        .select_from(Listing)
        .join(Zone, Zone.id == Listing.zone_id)
        .join(ListingValue, ListingValue.id == Listing.value_id)
        .where(in_force_clause(utcnow()))
        .group_by(Zone.name, ListingValue.category, ListingValue.excluded)
    )
    with engine.connect() as conn:
        return {(z, c, bool(e)): n for z, c, e, n in conn.execute(query)}


@router.get("", response_model=list[ZonePublic], responses=responses(401, 403, 500))
def list_zones(
    key: OperatorKey, engine: EngineDep, store: StoreDep, settings: SettingsDep
) -> list[ZonePublic]:
    """Every configured zone with its SOA serial and its active listings by category."""
    serials = store.serials()
    counts = listing_counts(engine)
    zones = []
    for zone in settings.zones:
        listed = {c: n for (z, c, e), n in counts.items() if z == zone.name and not e}
        excluded = sum(n for (z, _, e), n in counts.items() if z == zone.name and e)
        zones.append(
            ZonePublic(
                name=zone.name,
                serial=serials.get(zone.name),
                default_code=zone.default_code,
                categories=zone.categories,
                listings=dict(sorted(listed.items())),
                exclusions=excluded,
                ttl=zone.ttl,
                negative_ttl=zone.negative_ttl,
            )
        )
    return zones
