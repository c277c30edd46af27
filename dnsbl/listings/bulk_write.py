"""A bulk write of listing groups (an import) with no Python object per listing.

An import of ten million lines hands the store groups of sorted starts sharing a family,
prefix length and value (`LoadGroup`, the shape a DNS node loads), as typed arrays. This
module compares them with the zone's active listings by bisection in those arrays — marking
the unchanged ones in one byte each and collecting the ids of those to end — and streams the
rest into the listings table: on SQLite as one statement per batch of starts (a JSON array,
hex-formatted by SQLite itself), on PostgreSQL through COPY. The caller holds the zone lock
and writes the change log, all in its one transaction.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime

from sqlalchemy import Connection

from dnsbl.listings.bulk_sql import bind_time, driver_rows
from dnsbl.listings.rows import LoadGroup, Source

_SQLITE_BATCH = 100_000
_COPY_BATCH = 50_000
ValueKey = tuple[str, bool, str | None, str | None]  # category, excluded, code, txt


def value_key(group: LoadGroup) -> ValueKey:
    return (group.category, group.excluded, group.code, group.txt)


class Comparison:
    """How groups stand against the zone's active listings: which entries are unchanged (one
    byte per entry, only where any is) and the ids of the listings to end."""

    def __init__(self, groups: Sequence[LoadGroup]) -> None:
        self.groups = groups
        self.unchanged: dict[int, bytearray] = {}  # group number -> a mark per start
        self.unchanged_count = 0
        self.ended = array("q")

    def compare(
        self, conn: Connection, zone_id: int, replace_categories: Collection[str]
    ) -> Comparison:
        """Read the zone's active listings of the groups' (and replaced) categories once."""
        by_key: dict[tuple[str, int, int], list[int]] = {}
        for number, group in enumerate(self.groups):
            by_key.setdefault((group.category, group.family, group.prefixlen), []).append(number)
        categories = sorted({group.category for group in self.groups} | set(replace_categories))
        if not categories:
            return self
        replaced = set(replace_categories)
        marks = ", ".join(["{mark}"] * len(categories))
        sql = (
            "SELECT l.id, v.category, l.family, l.start_key, l.prefixlen, v.excluded, v.code,"
            " v.txt, l.reason, l.expires_at FROM listings l"
            " JOIN listing_values v ON v.id = l.value_id"
            f" WHERE l.zone_id = {{mark}} AND l.ended_at IS NULL AND v.category IN ({marks})"
        )
        groups = self.groups
        for row in driver_rows(conn, sql, (zone_id, *categories)):
            listing_id, category, family, key, prefixlen = row[:5]
            start = int(key, 16)
            found = False
            for number in by_key.get((category, family, prefixlen), ()):
                group = groups[number]
                starts = group.starts
                i = bisect_left(starts, start)
                if i == len(starts) or starts[i] != start:
                    continue
                found = True
                same = (bool(row[5]), row[6], row[7]) == (group.excluded, group.code, group.txt)
                if same and row[8] is None and row[9] is None:
                    marks_of = self.unchanged.get(number)
                    if marks_of is None:
                        marks_of = self.unchanged[number] = bytearray(len(starts))
                    marks_of[i] = 1
                    self.unchanged_count += 1
                else:
                    self.ended.append(listing_id)
                break
            if not found and category in replaced:
                self.ended.append(listing_id)
        return self

    def new_starts(self, number: int) -> Sequence[int]:
        """The starts of group `number` that are not unchanged."""
        starts = self.groups[number].starts
        marks = self.unchanged.get(number)
        if marks is None:
            return starts
        kept = [start for start, mark in zip(starts, marks, strict=True) if not mark]
        return array("I", kept) if isinstance(starts, array) else kept

    @property
    def added(self) -> int:
        return sum(len(group.starts) for group in self.groups) - self.unchanged_count


def insert_groups(
    conn: Connection,
    zone_id: int,
    comparison: Comparison,
    value_ids: dict[ValueKey, int],
    now: datetime,
    actor: str,
    source: Source,
) -> None:
    """Insert every entry of the groups that is not unchanged, as active listings."""
    for number, group in enumerate(comparison.groups):
        starts = comparison.new_starts(number)
        if not len(starts):
            continue
        value_id = value_ids[value_key(group)]
        if conn.dialect.name == "sqlite":
            _insert_sqlite(conn, zone_id, value_id, group, starts, now, actor, source)
        else:
            _copy(conn, zone_id, value_id, group, starts, now, actor, source)


_SQLITE_INSERT = (
    "INSERT INTO listings (zone_id, value_id, family, start_key, prefixlen, source,"
    " created_at, created_by) SELECT ?, ?, ?, {key}, ?, ?, ?, ? FROM json_each(?)"
)


def _insert_sqlite(
    conn: Connection,
    zone_id: int,
    value_id: int,
    group: LoadGroup,
    starts: Sequence[int],
    now: datetime,
    actor: str,
    source: Source,
) -> None:
    # IPv4 starts go as integers and SQLite writes their hex; IPv6 ones do not fit its integers.
    v4 = group.family == 4
    sql = _SQLITE_INSERT.format(key="printf('%08x', value)" if v4 else "value")
    stamp = bind_time(conn, now)
    for first in range(0, len(starts), _SQLITE_BATCH):
        chunk = starts[first : first + _SQLITE_BATCH]
        keys = chunk.tolist() if isinstance(chunk, array) else [f"{s:032x}" for s in chunk]
        conn.exec_driver_sql(
            sql,
            (
                zone_id,
                value_id,
                group.family,
                group.prefixlen,
                source,
                stamp,
                actor,
                json.dumps(keys),
            ),
        )


def _copy(
    conn: Connection,
    zone_id: int,
    value_id: int,
    group: LoadGroup,
    starts: Sequence[int],
    now: datetime,
    actor: str,
    source: Source,
) -> None:
    """COPY the rows in text format: one prefix and one suffix shared by every row."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    width = "08x" if group.family == 4 else "032x"
    head = f"{zone_id}\t{value_id}\t{group.family}\t"
    tail = f"\t{group.prefixlen}\t{source}\t{now.isoformat()}\t{_copy_text(actor)}\n"
    columns = "zone_id, value_id, family, start_key, prefixlen, source, created_at, created_by"
    with cursor.copy(f"COPY listings ({columns}) FROM STDIN") as copy:
        for piece in _pieces(starts, head, width, tail):
            copy.write(piece)


def _pieces(starts: Sequence[int], head: str, width: str, tail: str) -> Iterator[bytes]:
    for first in range(0, len(starts), _COPY_BATCH):
        yield "".join(
            [f"{head}{start:{width}}{tail}" for start in starts[first : first + _COPY_BATCH]]
        ).encode()


def _copy_text(text: str) -> str:
    """A value in COPY's text format (backslash, tab and newline escaped)."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
