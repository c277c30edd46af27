"""The listing store: writes listings and their change log, and reads them back.

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

from sqlalchemy import Connection, Engine, and_, func, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from dnsbl.addresses import Network, hex_key, parse_address
from dnsbl.db import writer
from dnsbl.errors import UnknownZoneError
from dnsbl.listings.bulk_sql import (
    BATCH,
    LISTING_INSERT,
    as_datetime,
    bind_time,
    decode_starts,
    driver_rows,
    insert_grouped,
    insert_many,
    naive,
)
from dnsbl.models import Change, Listing, ListingValue, Zone, utcnow

_BATCH = BATCH
_Key = tuple[str, int, int, int]  # category, family, first address, prefix length
_ValueKey = tuple[str, bool, str | None, str | None]  # category, excluded, code, txt


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
    def value_key(self) -> _ValueKey:
        return (self.category, self.excluded, self.code, self.txt)


@dataclass(slots=True)
class WriteResult:
    """What one writing transaction did: the zone serial it produced and its counts."""

    serial: int
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    listing_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ListingRow:
    """The columns of a listing that the zone index needs."""

    category: str
    family: int
    start: int
    prefixlen: int
    excluded: bool
    code: str | None
    txt: str | None

    @property
    def network(self) -> Network:
        return Network(self.family, self.start, self.prefixlen)


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One change log entry joined with the listing it concerns (and the listing's expiry)."""

    serial: int
    action: str  # "add" or "remove"
    listing: ListingRow
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LoadGroup:
    """Active listings of one family, prefix length and value: their starts, in order."""

    family: int
    prefixlen: int
    category: str
    excluded: bool
    code: str | None
    txt: str | None
    starts: Sequence[int]  # array('I') for IPv4, list[int] for IPv6


_ROW_COLUMNS = (
    ListingValue.category,
    Listing.family,
    Listing.start_key,
    Listing.prefixlen,
    ListingValue.excluded,
    ListingValue.code,
    ListingValue.txt,
)


def _row(values: Sequence[Any]) -> ListingRow:
    category, family, start_key, prefixlen, excluded, code, txt = values
    return ListingRow(category, family, int(start_key, 16), prefixlen, bool(excluded), code, txt)


def active_clause(now: datetime) -> Any:
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


class ListingStore:
    """Listings and the change log of every zone, over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- zones ---------------------------------------------------------------------------

    def ensure_zones(self, names: Iterable[str]) -> None:
        """Create a row for each configured zone that has none yet."""
        with writer(self.engine).begin() as conn:
            known = set(conn.scalars(select(Zone.name)))
            for name in names:
                if name not in known:
                    conn.execute(insert(Zone).values(name=name, serial=1, updated_at=utcnow()))

    def serials(self) -> dict[str, int]:
        """The current serial of every zone, by name."""
        with self.engine.connect() as conn:
            return {name: serial for name, serial in conn.execute(select(Zone.name, Zone.serial))}

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
        source: str = "manual",
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
        with writer(self.engine).begin() as conn:
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
        source: str,
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
        # Our zone lock keeps other writers of this zone out, so every listing of the zone
        # above the old maximum id is one this transaction wrote.
        mine = and_(Listing.zone_id == zone_id, Listing.id > first_new)
        conn.execute(
            insert(Change).from_select(
                ["zone_id", "serial", "listing_id", "action", "at", "actor"],
                select(
                    Listing.zone_id,
                    literal(serial),
                    Listing.id,
                    literal("add"),
                    Listing.created_at,
                    literal(actor),
                ).where(mine),
            )
        )
        if conn.dialect.name == "sqlite":
            # Under the database lock, SQLite numbers new rows max(id) + 1, one after another.
            last = conn.scalar(select(func.max(Listing.id)))
            if last == first_new + len(ordered):
                return list(range(first_new + 1, last + 1))
        # Straight from the driver: a million ids through SQLAlchemy's rows cost seconds.
        sql = "SELECT id FROM listings WHERE zone_id = {mark} AND id > {mark}"
        return [row[0] for row in driver_rows(conn, sql, (zone_id, first_new))]

    def _value_ids(self, conn: Connection, keys: set[_ValueKey]) -> dict[_ValueKey, int]:
        """The id of each value, creating the missing ones."""
        found: dict[_ValueKey, int] = {}
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
        with writer(self.engine).begin() as conn:
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
        with writer(self.engine).begin() as conn:
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
                        "action": "remove",
                        "at": now,
                        "actor": actor,
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
                *_ROW_COLUMNS,
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

    # -- reading -------------------------------------------------------------------------

    def load_groups(
        self, zone: str, now: datetime | None = None
    ) -> tuple[int, list[LoadGroup], list[ListingRow]]:
        """Everything a DNS node needs to build the zone's index, in one transaction.

        Returns the serial, the active listings as groups of starts (one scan of the load
        index, concatenated in SQL: a million rows cost a fraction of a second instead of
        seconds of row objects), and the listings already past their expiry (at `now`) but not
        yet swept, which the index must leave out.
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
                _row(row)
                for row in conn.execute(
                    select(*_ROW_COLUMNS)
                    .join(ListingValue, ListingValue.id == Listing.value_id)
                    .where(Listing.zone_id == zone_row.id, expired_clause(now))
                )
            ]
        return int(zone_row.serial), groups, expired

    def expired_between(
        self, after: datetime | None, until: datetime
    ) -> dict[str, list[ListingRow]]:
        """By zone name: the listings not ended whose expiry passed in (`after`, `until`] (by
        `until` when `after` is None) — what a DNS node hides while no sweep has ended them."""
        found: dict[str, list[ListingRow]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(Zone.name, *_ROW_COLUMNS)
                .join(Listing, Listing.zone_id == Zone.id)
                .join(ListingValue, ListingValue.id == Listing.value_id)
                .where(expired_clause(until, after))
            )
            for row in rows:
                found.setdefault(row[0], []).append(_row(row[1:]))
        return found

    def changes_since(self, zone: str, serial: int) -> tuple[int, list[ChangeRecord]]:
        """The zone's current serial and every change after `serial`, in order."""
        with self.engine.connect() as conn, conn.begin():
            zone_row = conn.execute(select(Zone.id, Zone.serial).where(Zone.name == zone)).first()
            if zone_row is None:
                raise UnknownZoneError(f"unknown zone {zone!r}")
            rows = conn.execute(
                select(Change.serial, Change.action, Listing.expires_at, *_ROW_COLUMNS)
                .join(Listing, Listing.id == Change.listing_id)
                .join(ListingValue, ListingValue.id == Listing.value_id)
                .where(
                    Change.zone_id == zone_row.id,
                    Change.serial > serial,
                    Change.serial <= zone_row.serial,
                )
                .order_by(Change.serial, Change.id)
            )
            changes = [ChangeRecord(r[0], r[1], _row(r[3:]), r[2]) for r in rows]
        return int(zone_row.serial), changes

    def listings_containing(self, address: str, *, active_only: bool = True) -> list[Listing]:
        """Listings (in every zone) whose network contains `address`, most specific first."""
        ip = parse_address(address)
        bits = ip.max_prefixlen
        value = int(ip)
        # Every network containing the address starts at the address masked to its length.
        starts = {
            length: hex_key(ip.version, value >> (bits - length) << (bits - length))
            for length in range(bits, -1, -1)
        }
        with Session(self.engine) as session:
            query = (
                select(Listing)
                .where(Listing.family == ip.version, Listing.start_key.in_(set(starts.values())))
                .order_by(Listing.prefixlen.desc(), Listing.created_at.desc())
            )
            if active_only:
                query = query.where(active_clause(utcnow()))
            return [
                listing
                for listing in session.scalars(query).unique()
                if starts[listing.prefixlen] == listing.start_key
            ]


def in_force(listings: Iterable[Listing]) -> list[Listing]:
    """The listings that decide, per zone and category: the most specific one of each, and only
    if it is not an exclusion — the longest-prefix rule the zone index answers by.

    `listings` must come most specific first, as `listings_containing` returns them.
    """
    decided: dict[tuple[int, str], Listing] = {}
    for listing in listings:
        decided.setdefault((listing.zone_id, listing.category), listing)
    return [listing for listing in decided.values() if not listing.excluded]


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
