"""The feed a DNS node reads: each zone's serial, its listings to load, and its changes since.

These reads are all a DNS node ever asks of the database (`dnsbl.node.loader`): a whole zone
once, at start, as groups of starts concatenated in SQL, then the change log after the serial
it holds. Each is one consistent transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from dnsbl.errors import UnknownZoneError
from dnsbl.listings.bulk_sql import decode_starts
from dnsbl.listings.covering import expired_clause
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow, LoadGroup, ZoneLoad
from dnsbl.models import Change, Listing, ListingValue, Zone, utcnow

ROW_COLUMNS = (
    ListingValue.category,
    Listing.family,
    Listing.start_key,
    Listing.prefixlen,
    ListingValue.excluded,
    ListingValue.code,
    ListingValue.txt,
)
"""The columns of a `ListingRow`, in its order (listings joined with their values)."""


def listing_row(values: Sequence[Any]) -> ListingRow:
    """A `ListingRow` from the `ROW_COLUMNS` of one result row."""
    category, family, start_key, prefixlen, excluded, code, txt = values
    return ListingRow(category, family, int(start_key, 16), prefixlen, bool(excluded), code, txt)


def zone_serials(engine: Engine) -> dict[str, int]:
    """The current serial of every zone, by name."""
    with engine.connect() as conn:
        return {name: serial for name, serial in conn.execute(select(Zone.name, Zone.serial))}


class ListingFeed:
    """The zones' listings and change log, as a DNS node reads them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def serials(self) -> dict[str, int]:
        """The current serial of every zone, by name."""
        return zone_serials(self.engine)

    def load(self, zone: str, now: datetime | None = None) -> ZoneLoad:
        """Everything a DNS node needs to build the zone's index, in one transaction.

        The active listings come as groups of starts (one scan of the load index,
        concatenated in SQL: a million rows cost a fraction of a second instead of seconds of
        row objects), with the listings already past their expiry (at `now`) but not yet swept.
        """
        now = now or utcnow()
        with self.engine.connect() as conn, conn.begin():
            zone_row = conn.execute(select(Zone.id, Zone.serial).where(Zone.name == zone)).first()
            if zone_row is None:
                raise UnknownZoneError(f"unknown zone {zone!r}")
            concat = (
                func.group_concat(Listing.start_key, "")
                if conn.dialect.name == "sqlite"
                else func.string_agg(
                    Listing.start_key, aggregate_order_by(literal(""), Listing.start_key)
                )
            )
            grouped = (
                select(Listing.family, Listing.prefixlen, Listing.value_id, concat)
                .where(Listing.zone_id == zone_row.id, Listing.ended_at.is_(None))
                .group_by(Listing.family, Listing.prefixlen, Listing.value_id)
            )
            values = {
                row.id: row
                for row in conn.execute(
                    select(
                        ListingValue.id,
                        ListingValue.category,
                        ListingValue.excluded,
                        ListingValue.code,
                        ListingValue.txt,
                    )
                )
            }
            groups = []
            for family, prefixlen, value_id, keys in conn.execute(grouped):
                value = values[value_id]
                groups.append(
                    LoadGroup(
                        family,
                        prefixlen,
                        value.category,
                        bool(value.excluded),
                        value.code,
                        value.txt,
                        decode_starts(family, keys or ""),
                    )
                )
            expired = [
                listing_row(row)
                for row in conn.execute(
                    select(*ROW_COLUMNS)
                    .join(ListingValue, ListingValue.id == Listing.value_id)
                    .where(Listing.zone_id == zone_row.id, expired_clause(now))
                )
            ]
        return ZoneLoad(int(zone_row.serial), groups, expired)

    def expired_between(
        self, after: datetime | None, until: datetime
    ) -> dict[str, list[ListingRow]]:
        """By zone name: the listings not ended whose expiry passed in (`after`, `until`] (by
        `until` when `after` is None) — what a DNS node hides while no sweep has ended them."""
        found: dict[str, list[ListingRow]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Zone.name, *ROW_COLUMNS)
                .join(Listing, Listing.zone_id == Zone.id)
                .join(ListingValue, ListingValue.id == Listing.value_id)
                .where(expired_clause(until, after))
            )
            for row in rows:
                found.setdefault(row[0], []).append(listing_row(row[1:]))
        return found

    def changes_since(self, zone: str, serial: int) -> tuple[int, list[ChangeRecord]]:
        """The zone's current serial and every change after `serial`, in order."""
        with self.engine.connect() as conn, conn.begin():
            zone_row = conn.execute(select(Zone.id, Zone.serial).where(Zone.name == zone)).first()
            if zone_row is None:
                raise UnknownZoneError(f"unknown zone {zone!r}")
            rows = conn.execute(
                select(Change.serial, Change.action, Listing.expires_at, *ROW_COLUMNS)
                .join(Listing, Listing.id == Change.listing_id)
                .join(ListingValue, ListingValue.id == Listing.value_id)
                .where(
                    Change.zone_id == zone_row.id,
                    Change.serial > serial,
                    Change.serial <= zone_row.serial,
                )
                .order_by(Change.serial, Change.id)
            )
            changes = [
                ChangeRecord(r[0], ChangeAction(r[1]), listing_row(r[3:]), r[2]) for r in rows
            ]
        return int(zone_row.serial), changes
