"""Driver-level bulk reads and writes of listings, where SQLAlchemy's per-row cost is too high.

A million listings through SQLAlchemy's rows or `executemany` cost tens of seconds on a small
machine; these helpers talk to the DB-API cursor directly and keep the two databases' small
differences (parameter marks, how a timestamp is bound) in one place.
"""

from __future__ import annotations

import itertools
import json
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

BATCH = 5000


def ascending(values: Sequence[int]) -> bool:
    # A plain loop: no copy of the array, one int alive at a time (zip over a slice is ~4x
    # slower and doubles the memory for a moment).
    previous = -1
    for value in values:
        if value < previous:
            return False
        previous = value
    return True


def decode_starts(family: int, keys: str) -> Sequence[int]:
    """Decode concatenated fixed-width hex starts: IPv4 straight into an `array('I')`."""
    starts: Sequence[int]
    if family == 4:
        starts = array("I")
        starts.frombytes(bytes.fromhex(keys))
        if sys.byteorder == "little":
            starts.byteswap()
    else:
        starts = [int(keys[i : i + 32], 16) for i in range(0, len(keys), 32)]
    # The scan of the load index yields starts in order; a planner that chose otherwise
    # must not break the bisection.
    if not ascending(starts):
        ordered = sorted(starts)
        starts = array("I", ordered) if family == 4 else ordered
    return starts


LISTING_INSERT = (
    "listings",
    (
        "zone_id",
        "value_id",
        "family",
        "start_key",
        "prefixlen",
        "reason",
        "source",
        "created_at",
        "created_by",
        "expires_at",
    ),
)


def driver_rows(conn: Connection, sql: str, parameters: tuple[Any, ...]) -> Iterator[Any]:
    """Rows of `sql` (`{mark}` for each parameter) from the driver's own cursor, in batches."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql.format(mark=mark), parameters)
        while batch := cursor.fetchmany(BATCH * 4):
            yield from batch
    finally:
        cursor.close()


def as_datetime(value: Any) -> datetime | None:
    """A timestamp read through the driver: text on SQLite (SQLAlchemy's), datetime elsewhere."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def bind_time(conn: Connection, value: datetime | None) -> Any:
    """A timestamp as the driver takes it: SQLAlchemy's text format on SQLite, else as is."""
    plain = naive(value)
    if plain is None or conn.dialect.name != "sqlite":
        return value
    return plain.isoformat(sep=" ", timespec="microseconds")


_GROUPED_INSERT = (
    "INSERT INTO listings (zone_id, value_id, family, start_key, prefixlen, reason, source,"
    " created_at, created_by, expires_at) SELECT ?, ?, ?, value, ?, ?, ?, ?, ?, ? FROM"
    " json_each(?)"
)
_GROUPED_BATCH = 100_000


def insert_grouped(conn: Connection, rows: Iterator[tuple[Any, ...]], count: int) -> None:
    """Insert listing rows on SQLite as one statement per group of rows that differ only by
    start key, the keys passed as one JSON array (row by row when the groups are small).

    Binding ten parameters per row is most of what executemany costs there (5 s a million
    rows on the development machine, against 2 s this way).
    """
    groups: dict[tuple[Any, ...], list[str]] = {}
    for row in rows:
        groups.setdefault(row[:3] + row[4:], []).append(row[3])
    if len(groups) * 20 > count:
        # Mostly distinct rows (reasons, expiries): the general path, given the rows again.
        insert_many(
            conn,
            LISTING_INSERT,
            (
                (*constant[:3], key, *constant[3:])
                for constant, keys in groups.items()
                for key in keys
            ),
        )
        return
    for constant, keys in groups.items():
        zone_id, value_id, family, prefixlen, reason, source, stamp, actor, expires = constant
        for start in range(0, len(keys), _GROUPED_BATCH):
            conn.exec_driver_sql(
                _GROUPED_INSERT,
                (
                    zone_id,
                    value_id,
                    family,
                    prefixlen,
                    reason,
                    source,
                    stamp,
                    actor,
                    expires,
                    json.dumps(keys[start : start + _GROUPED_BATCH]),
                ),
            )


def insert_many(
    conn: Connection, table: tuple[str, tuple[str, ...]], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Bulk insert through the driver's own `executemany`: SQLAlchemy's costs ~10 µs a row."""
    name, columns = table
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, BATCH)):
        conn.exec_driver_sql(sql, batch)


def naive(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=None) if value is not None and value.tzinfo else value
