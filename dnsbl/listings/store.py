"""The listing store: zones and their serials; listings added, ended and expired.

Every writing transaction locks its zone's row, bumps the zone serial by one and records each
addition or removal in the change log under that serial. That lock is what keeps serials
gap-free and in commit order on PostgreSQL (followers never miss a change that committed late);
on SQLite the `BEGIN IMMEDIATE` write lock does the same. It is also what keeps one active
listing per zone, category and network. Nothing is deleted: ending a listing stamps it ended
and logs a removal.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, literal, select, update

from dnsbl.addresses import Network, hex_key
from dnsbl.db import begin_write
from dnsbl.errors import UnknownZoneError
from dnsbl.listings.bulk_sql import (
    BATCH,
    LISTING_INSERT,
    as_datetime,
    bind_time,
    driver_rows,
    insert_grouped,
    insert_many,
    naive,
)
from dnsbl.listings.bulk_write import Comparison, ValueKey, insert_groups, value_key
from dnsbl.listings.covering import expired_clause
from dnsbl.listings.feed import ROW_COLUMNS, zone_serials
from dnsbl.listings.rows import ChangeAction, LoadGroup, Source
from dnsbl.models import Change, Listing, ListingValue, Zone, utcnow

_BATCH = BATCH
_Key = tuple[str, int, int, int]  # category, family, first address, prefix length


@dataclass(frozen=True, slots=True)
class Entry:
    """A listing to be written: a network in a category with its values and its reason."""

    network: Network
    category: str = "manual"
    excluded: bool = False
    code: str | None = None
    txt: str | None = None
    reason: str | None = None
    expires_at: datetime | None = None

    @property
    def value_key(self) -> ValueKey:
        return (self.category, self.excluded, self.code, self.txt)


@dataclass(slots=True)
class WriteResult:
    """What one writing transaction did: the zone serial it produced and its counts."""

    serial: int
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    listing_ids: list[int] = field(default_factory=list)


class ListingStore:
    """Listings and the change log of every zone, over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- zones ---------------------------------------------------------------------------

    def ensure_zones(self, names: Iterable[str]) -> None:
        """Create a row for each configured zone that has none yet."""
        with begin_write(self.engine) as conn:
            known = set(conn.scalars(select(Zone.name)))
            for name in names:
                if name not in known:
                    conn.execute(insert(Zone).values(name=name, serial=1, updated_at=utcnow()))

    def serials(self) -> dict[str, int]:
        """The current serial of every zone, by name."""
        return zone_serials(self.engine)

    def serial(self, zone: str) -> int:
        try:
            return self.serials()[zone]
        except KeyError:
            raise UnknownZoneError(f"unknown zone {zone!r}") from None

    def _lock_zone(self, conn: Connection, zone: str) -> tuple[int, int]:
        """Lock the zone row for this transaction and return (zone id, next serial)."""
        row = conn.execute(
            select(Zone.id, Zone.serial).where(Zone.name == zone).with_for_update()
        ).first()
        if row is None:
            raise UnknownZoneError(f"unknown zone {zone!r}")
        return row.id, row.serial + 1

    def _commit_serial(self, conn: Connection, zone_id: int, serial: int) -> None:
        conn.execute(
            update(Zone).where(Zone.id == zone_id).values(serial=serial, updated_at=utcnow())
        )

    # -- writing -------------------------------------------------------------------------

    def add(
        self,
        zone: str,
        entries: Iterable[Entry],
        *,
        actor: str,
        source: Source = Source.MANUAL,
        replace_categories: Collection[str] = (),
    ) -> WriteResult:
        """List (or exclude) `entries` in `zone` in one transaction.

        An entry whose network is already active in the same category replaces it when its
        values differ and is left alone when they are the same; within one call a later entry
        for the same network wins, as a data file reads top to bottom. The active listings of
        `replace_categories` that `entries` do not contain are ended too (a bulk import
        replacing the content of its categories). Nothing is written
        unless everything is: any error rolls the whole transaction back.
        """
        now = utcnow()
        pending: dict[_Key, Entry] = {}
        for entry in entries:
            net = entry.network
            key = (entry.category, net.family, net.first, net.prefixlen)
            pending.pop(key, None)
            pending[key] = entry
        incoming = set(pending) if replace_categories else set()
        with begin_write(self.engine) as conn:
            zone_id, serial = self._lock_zone(conn, zone)
            result = WriteResult(serial=serial)
            replaced: list[int] = []
            for key, old in self._active_by_key(conn, zone_id, pending).items():
                new = pending[key]
                if (old.excluded, old.code, old.txt, old.reason, naive(old.expires_at)) == (
                    new.excluded,
                    new.code,
                    new.txt,
                    new.reason,
                    naive(new.expires_at),
                ):
                    del pending[key]
                    result.unchanged += 1
                else:
                    replaced.append(old.id)
            for category in replace_categories:
                replaced += self._stale(conn, zone_id, category, incoming)
            if replaced:
                self._end(conn, zone_id, serial, replaced, now, actor, "replaced")
                result.removed += len(replaced)
            if pending:
                result.listing_ids = self._insert(
                    conn, zone_id, serial, pending, now, actor, source
                )
                result.added = len(pending)
            if result.added or result.removed:
                self._commit_serial(conn, zone_id, serial)
            else:
                result.serial = serial - 1
        return result

    def categories(self) -> set[str]:
        """Every category a listing has had (values are shared, so this is a small table)."""
        with self.engine.connect() as conn:
            return set(conn.scalars(select(ListingValue.category).distinct()))

    def _stale(
        self, conn: Connection, zone_id: int, category: str, incoming: set[_Key]
    ) -> list[int]:
        """Ids of the category's active listings whose network is not in `incoming`."""
        sql = (
            "SELECT l.id, l.family, l.start_key, l.prefixlen FROM listings l"
            " JOIN listing_values v ON v.id = l.value_id"
            " WHERE l.zone_id = {mark} AND l.ended_at IS NULL AND v.category = {mark}"
        )
        return [
            row[0]
            for row in driver_rows(conn, sql, (zone_id, category))
            if (category, row[1], int(row[2], 16), row[3]) not in incoming
        ]

    def _insert(
        self,
        conn: Connection,
        zone_id: int,
        serial: int,
        pending: dict[_Key, Entry],
        now: datetime,
        actor: str,
        source: Source,
    ) -> list[int]:
        value_ids = self._value_ids(conn, {entry.value_key for entry in pending.values()})
        first_new: int = conn.scalar(select(func.coalesce(func.max(Listing.id), 0))) or 0
        stamp = bind_time(conn, now)
        # Rows in address order: the indexes on start_key then grow at a few places instead
        # of at random pages, which makes a large import several times faster on SQLite.
        ordered = sorted(pending.values(), key=_address_order)
        rows = (
            (
                zone_id,
                value_ids[(entry.category, entry.excluded, entry.code, entry.txt)],
                net.family,
                format(net.first, "08x" if net.family == 4 else "032x"),
                net.prefixlen,
                entry.reason,
                source,
                stamp,
                actor,
                None if entry.expires_at is None else bind_time(conn, entry.expires_at),
            )
            for entry in ordered
            for net in (entry.network,)
        )
        if conn.dialect.name == "sqlite":
            insert_grouped(conn, rows, len(ordered))
        else:
            insert_many(conn, LISTING_INSERT, rows)
        self._log_added(conn, zone_id, serial, first_new, actor)
        if conn.dialect.name == "sqlite":
            # Under the database lock, SQLite numbers new rows max(id) + 1, one after another.
            last = conn.scalar(select(func.max(Listing.id)))
            if last == first_new + len(ordered):
                return list(range(first_new + 1, last + 1))
        # Straight from the driver: a million ids through SQLAlchemy's rows cost seconds.
        sql = "SELECT id FROM listings WHERE zone_id = {mark} AND id > {mark}"
        return [row[0] for row in driver_rows(conn, sql, (zone_id, first_new))]

    def add_groups(
        self,
        zone: str,
        groups: Sequence[LoadGroup],
        *,
        actor: str,
        source: Source = Source.IMPORT,
        replace_categories: Collection[str] = (),
    ) -> WriteResult:
        """`add` for a bulk import: groups of sorted starts, one value each, written in one
        transaction with no Python object per listing (`dnsbl.listings.bulk_write`).

        What is unchanged, replaced and ended follows `add`; the networks of the groups must
        be distinct per category. The result carries no listing ids.
        """
        now = utcnow()
        with begin_write(self.engine) as conn:
            zone_id, serial = self._lock_zone(conn, zone)
            result = WriteResult(serial=serial)
            comparison = Comparison(groups).compare(conn, zone_id, replace_categories)
            result.unchanged = comparison.unchanged_count
            if comparison.ended:
                ended = comparison.ended.tolist()
                self._end(conn, zone_id, serial, ended, now, actor, "replaced")
                result.removed = len(ended)
            result.added = comparison.added
            if result.added:
                value_ids = self._value_ids(conn, {value_key(group) for group in groups})
                first_new = conn.scalar(select(func.coalesce(func.max(Listing.id), 0))) or 0
                insert_groups(conn, zone_id, comparison, value_ids, now, actor, source)
                self._log_added(conn, zone_id, serial, first_new, actor)
            if result.added or result.removed:
                self._commit_serial(conn, zone_id, serial)
            else:
                result.serial = serial - 1
        return result

    def _log_added(
        self, conn: Connection, zone_id: int, serial: int, first_new: int, actor: str
    ) -> None:
        """Log an "add" under `serial` for every listing of the zone above id `first_new`."""
        # Our zone lock keeps other writers of this zone out, so every listing of the zone
        # above the old maximum id is one this transaction wrote.
        mine = and_(Listing.zone_id == zone_id, Listing.id > first_new)
        conn.execute(
            insert(Change).from_select(
                ["zone_id", "serial", "listing_id", "action"],
                select(
                    Listing.zone_id,
                    literal(serial),
                    Listing.id,
                    literal(ChangeAction.ADD.value),
                ).where(mine),
            )
        )

    def _value_ids(self, conn: Connection, keys: set[ValueKey]) -> dict[ValueKey, int]:
        """The id of each value, creating the missing ones."""
        found: dict[ValueKey, int] = {}
        columns = (
            ListingValue.category,
            ListingValue.excluded,
            ListingValue.code,
            ListingValue.txt,
        )
        categories = {key[0] for key in keys}
        for row in conn.execute(
            select(ListingValue.id, *columns).where(ListingValue.category.in_(categories))
        ):
            key = (row.category, bool(row.excluded), row.code, row.txt)
            if key in keys:
                found.setdefault(key, row.id)
        for key in keys - found.keys():
            category, excluded, code, txt = key
            found[key] = conn.execute(
                insert(ListingValue)
                .values(category=category, excluded=excluded, code=code, txt=txt)
                .returning(ListingValue.id)
            ).scalar_one()
        return found

    def end(
        self,
        zone: str,
        networks: Sequence[Network],
        *,
        actor: str,
        reason: str,
        category: str | None = None,
    ) -> WriteResult:
        """End the active listings of `networks` in `zone` (in `category`, or in any)."""
        with begin_write(self.engine) as conn:
            zone_id, serial = self._lock_zone(conn, zone)
            wanted = {(n.family, n.first, n.prefixlen) for n in networks}
            query = (
                select(Listing.id, Listing.family, Listing.start_key, Listing.prefixlen)
                .join(ListingValue, ListingValue.id == Listing.value_id)
                .where(Listing.zone_id == zone_id, Listing.ended_at.is_(None))
            )
            if category is not None:
                query = query.where(ListingValue.category == category)
            ids: list[int] = []
            starts = sorted({hex_key(family, first) for family, first, _ in wanted})
            for start in range(0, len(starts), _BATCH):
                chunk = starts[start : start + _BATCH]
                for row in conn.execute(query.where(Listing.start_key.in_(chunk))):
                    if (row.family, int(row.start_key, 16), row.prefixlen) in wanted:
                        ids.append(row.id)
            if not ids:
                return WriteResult(serial=serial - 1)
            self._end(conn, zone_id, serial, ids, utcnow(), actor, reason)
            self._commit_serial(conn, zone_id, serial)
            return WriteResult(serial=serial, removed=len(ids), listing_ids=ids)

    def end_ids(self, ids: Sequence[int], *, actor: str, reason: str) -> dict[str, int]:
        """End listings by id, whatever their zones; returns the new serial of each zone touched."""
        serials: dict[str, int] = {}
        with begin_write(self.engine) as conn:
            rows = conn.execute(
                select(Listing.id, Zone.name)
                .join(Zone, Zone.id == Listing.zone_id)
                .where(Listing.id.in_(list(ids)), Listing.ended_at.is_(None))
            ).all()
            by_zone: dict[str, list[int]] = {}
            for listing_id, zone_name in rows:
                by_zone.setdefault(zone_name, []).append(listing_id)
            now = utcnow()
            for zone_name, zone_ids in sorted(by_zone.items()):
                zone_id, serial = self._lock_zone(conn, zone_name)
                self._end(conn, zone_id, serial, zone_ids, now, actor, reason)
                self._commit_serial(conn, zone_id, serial)
                serials[zone_name] = serial
        return serials

    def expire_due(self, now: datetime | None = None) -> dict[str, int]:
        """End every active listing whose expiry has passed; returns serials of zones touched."""
        now = now or utcnow()
        with self.engine.connect() as conn:
            due = list(conn.scalars(select(Listing.id).where(expired_clause(now))))
        if not due:
            return {}
        return self.end_ids(due, actor="expiry", reason="expired")

    def _end(
        self,
        conn: Connection,
        zone_id: int,
        serial: int,
        ids: list[int],
        now: datetime,
        actor: str,
        reason: str,
    ) -> None:
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            conn.execute(
                update(Listing)
                .where(Listing.id.in_(chunk))
                .values(ended_at=now, ended_by=actor, end_reason=reason)
            )
            conn.execute(
                insert(Change),
                [
                    {
                        "zone_id": zone_id,
                        "serial": serial,
                        "listing_id": listing_id,
                        "action": ChangeAction.REMOVE.value,
                    }
                    for listing_id in chunk
                ],
            )

    def _active_by_key(
        self, conn: Connection, zone_id: int, wanted: dict[_Key, Entry]
    ) -> dict[_Key, Any]:
        """The active listings of the zone that share a key with `wanted`."""
        query = (
            select(
                Listing.id,
                *ROW_COLUMNS,
                Listing.reason,
                Listing.expires_at,
            )
            .join(ListingValue, ListingValue.id == Listing.value_id)
            .where(Listing.zone_id == zone_id, Listing.ended_at.is_(None))
        )
        found: dict[_Key, Any] = {}
        if not wanted:
            return found
        if len(wanted) > _BATCH:
            return self._scan_active(conn, zone_id, wanted)
        # Few entries: probe by start instead of reading the whole zone.
        starts = sorted({hex_key(family, first) for _, family, first, _ in wanted})
        query = query.where(Listing.start_key.in_(starts))
        for row in conn.execute(query):
            key = (row.category, row.family, int(row.start_key, 16), row.prefixlen)
            if key in wanted:
                found[key] = row
        return found

    def _scan_active(
        self, conn: Connection, zone_id: int, wanted: dict[_Key, Entry]
    ) -> dict[_Key, Any]:
        """`_active_by_key` for a bulk write: one scan of the zone, straight from the driver
        (a million SQLAlchemy rows cost seconds more than the scan itself)."""
        found: dict[_Key, Any] = {}
        sql = (
            "SELECT l.id, v.category, l.family, l.start_key, l.prefixlen, v.excluded, v.code,"
            " v.txt, l.reason, l.expires_at FROM listings l"
            " JOIN listing_values v ON v.id = l.value_id"
            " WHERE l.zone_id = {mark} AND l.ended_at IS NULL"
        )
        for row in driver_rows(conn, sql, (zone_id,)):
            key = (row[1], row[2], int(row[3], 16), row[4])
            if key in wanted:
                found[key] = _ActiveRow(
                    row[0], bool(row[5]), row[6], row[7], row[8], as_datetime(row[9])
                )
        return found


@dataclass(frozen=True, slots=True)
class _ActiveRow:
    """The columns of an active listing that a write compares with a new entry."""

    id: int
    excluded: bool
    code: str | None
    txt: str | None
    reason: str | None
    expires_at: datetime | None


def _address_order(entry: Entry) -> int:
    network = entry.network
    return network.family << 128 | network.first
