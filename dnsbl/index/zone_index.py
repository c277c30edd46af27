"""The zone index: an immutable, compact lookup structure for one zone, built from the store.

Per category and family, the index keeps one sorted array of network starts per prefix length
(`array('I')` for IPv4, so a single listed address costs 4 bytes plus its value id) and a
parallel array of value ids. A lookup walks the prefix lengths present, longest first, and
bisects; the first hit decides (longest-prefix match), and a hit on an exclusion means "not
listed in this category". A zone that aggregates several categories answers one value per
category that lists the address.

Changes from the change log are applied as a small overlay (`delta`) on top of the arrays, so
following the log never needs a full rebuild; `compacted()` folds the overlay into new arrays
when it grows. Every method returns a new index: the DNS server swaps one reference.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from dnsbl.addresses import Network
from dnsbl.index.values import NEVER_LISTED, RBLDNSD_DEFAULTS, TEST_LISTED, Value, ValueDefaults
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow, LoadGroup

EXCLUDED = 0  # value id of an exclusion ("!" in rbldnsd data): stops the match, lists nothing
# Addresses decided before any table is consulted: the RFC 5782 test entries.
_SPECIAL = {family: frozenset({TEST_LISTED[family], *NEVER_LISTED[family]}) for family in (4, 6)}
COMPACT_AFTER = 4096  # overlay entries before a compaction is worth its cost


@dataclass(frozen=True, slots=True)
class _Level:
    """All entries of one prefix length: sorted starts and their value ids."""

    starts: Any  # array('I') for IPv4, list[int] for IPv6
    values: array[int]

    def find(self, start: int) -> int | None:
        i = bisect_left(self.starts, start)
        if i < len(self.starts) and self.starts[i] == start:
            return int(self.values[i])
        return None

    def between(self, low: int, high: int) -> tuple[int, int]:
        """The indexes [first, end) of the entries starting in [low, high]."""
        first = bisect_left(self.starts, low)
        return first, bisect_right(self.starts, high, first)

    def any_between(self, low: int, high: int) -> Iterator[int]:
        i = bisect_left(self.starts, low)
        while i < len(self.starts) and self.starts[i] <= high:
            yield int(self.values[i])
            i += 1


@dataclass(frozen=True, slots=True)
class Table:
    """One category's entries of one family: a level per prefix length, plus the overlay.

    `delta` maps (prefix length, start) to a value id, or to None where a base entry was
    removed. `lengths` holds every length present in either, longest first.
    """

    bits: int
    levels: Mapping[int, _Level]
    delta: Mapping[tuple[int, int], int | None]
    lengths: tuple[int, ...]

    def match(self, address: int) -> int | None:
        """The value id of the longest prefix containing `address`, or None."""
        bits = self.bits
        delta = self.delta
        levels = self.levels
        for length in self.lengths:
            start = address >> (bits - length) << (bits - length) if length else 0
            if delta:
                key = (length, start)
                if key in delta:
                    hit = delta[key]
                    if hit is None:
                        continue
                    return hit
            level = levels.get(length)
            if level is not None:
                found = level.find(start)
                if found is not None:
                    return found
        return None

    def entries(self) -> Iterator[tuple[int, int, int]]:
        """Every live (prefix length, start, value id), base and overlay merged."""
        delta = self.delta
        for length, level in self.levels.items():
            for start, value in zip(level.starts, level.values, strict=True):
                if (length, start) not in delta:
                    yield length, start, int(value)
        for (length, start), overlay in delta.items():
            if overlay is not None:
                yield length, start, overlay

    def entries_meeting(self, low: int, high: int) -> Iterator[tuple[int, int, int]]:
        """The live (prefix length, start, value id) whose network meets [low, high]."""
        delta = self.delta
        bits = self.bits
        for length, level in self.levels.items():
            # networks of one length are aligned and disjoint: the one holding `low` starts
            # at `low` cut to the length, and the others start inside the range
            first = low >> (bits - length) << (bits - length) if length else 0
            starts = level.starts
            i = bisect_left(starts, first)
            while i < len(starts) and starts[i] <= high:
                if (length, starts[i]) not in delta:
                    yield length, int(starts[i]), int(level.values[i])
                i += 1
        for (length, start), overlay in delta.items():
            last = start + (1 << (bits - length)) - 1
            if overlay is not None and start <= high and last >= low:
                yield length, start, overlay

    def overlaps(self, low: int, high: int, length: int) -> bool:
        """Whether an entry that is not an exclusion meets [low, high] (a prefix of `length`)."""
        if self.match(low) not in (None, EXCLUDED):
            return True
        for level_length, level in self.levels.items():
            if level_length > length:
                for value in level.any_between(low, high):
                    if value != EXCLUDED:
                        return True
        return any(
            value not in (None, EXCLUDED) and size > length and low <= start <= high
            for (size, start), value in self.delta.items()
        )


def _table(bits: int, rows: Iterable[tuple[int, int, int]]) -> Table:
    """Build a table from (prefix length, start, value id) rows in any order."""
    by_length: dict[int, list[tuple[int, int]]] = {}
    for length, start, value in rows:
        by_length.setdefault(length, []).append((start, value))
    levels = {length: _level(bits, sorted(pairs)) for length, pairs in by_length.items()}
    return Table(bits, levels, {}, tuple(sorted(levels, reverse=True)))


def _level(bits: int, pairs: list[tuple[int, int]]) -> _Level:
    """A level from (start, value id) pairs sorted by start."""
    starts: Any = array("I", (s for s, _ in pairs)) if bits == 32 else [s for s, _ in pairs]
    values = array(_value_typecode(max((v for _, v in pairs), default=0)))
    values.extend(v for _, v in pairs)
    return _Level(starts, values)


def _value_typecode(largest: int) -> str:
    return "B" if largest < 2**8 else "H" if largest < 2**16 else "I"


def _folded(table: Table) -> Table:
    """`table` with its overlay folded into its levels."""
    by_length: dict[int, list[tuple[int, int | None]]] = {}
    for (length, start), value in table.delta.items():
        by_length.setdefault(length, []).append((start, value))
    levels = dict(table.levels)
    for length, changes in by_length.items():
        changes.sort(key=_first)
        level = levels.get(length)
        if level is None:
            pairs = [(start, value) for start, value in changes if value is not None]
            level = _level(table.bits, pairs)
        else:
            level = _spliced(table.bits, level, changes)
        if len(level.starts):
            levels[length] = level
        else:
            levels.pop(length, None)
    return Table(table.bits, levels, {}, tuple(sorted(levels, reverse=True)))


def _first(pair: tuple[int, int | None]) -> int:
    return pair[0]


def _spliced(bits: int, level: _Level, changes: list[tuple[int, int | None]]) -> _Level:
    """`level` with `changes` (start, value id or None: removed), sorted by start, applied."""
    old_starts, old_values = level.starts, level.values
    largest = max((value for _, value in changes if value is not None), default=0)
    typecode: str = old_values.typecode
    if _value_typecode(largest) > typecode:  # "B" < "H" < "I": a wider value id came in
        typecode = _value_typecode(largest)
        old_values = array(typecode, old_values)
    starts: Any = array("I") if bits == 32 else []
    values = array(typecode)
    position = 0
    count = len(old_starts)
    for start, value in changes:
        i = bisect_left(old_starts, start, position)
        starts.extend(old_starts[position:i])
        values.extend(old_values[position:i])
        while i < count and old_starts[i] == start:
            i += 1  # replaced or removed (every copy: the overlay stands for them all)
        if value is not None:
            starts.append(start)
            values.append(value)
        position = i
    starts.extend(old_starts[position:])
    values.extend(old_values[position:])
    return _Level(starts, values)


@dataclass(frozen=True)
class ZoneIndex:
    """The immutable index of one zone at one serial.

    Make one with `build` or `from_groups`, and a newer one with `with_changes`.
    """

    zone: str
    serial: int
    defaults: ValueDefaults
    values: tuple[Value | None, ...]  # by id; id 0 is EXCLUDED
    tables: Mapping[tuple[str, int], Table]  # by (category, family)
    _value_ids: Mapping[Value, int] = field(repr=False)
    # Made by `with_changes`: the serial it was made from and the networks that changed
    # (what an IXFR from that serial has to look at); None for an index loaded whole.
    changed: tuple[int, frozenset[Network]] | None = field(repr=False, compare=False)
    # The tables of each family, grouped once: lookups are the DNS hot path.
    by_family: Mapping[int, tuple[Table, ...]] = field(repr=False, compare=False)

    @classmethod
    def _make(
        cls,
        zone: str,
        serial: int,
        defaults: ValueDefaults,
        values: tuple[Value | None, ...],
        tables: Mapping[tuple[str, int], Table],
        value_ids: Mapping[Value, int],
        changed: tuple[int, frozenset[Network]] | None = None,
    ) -> ZoneIndex:
        by_family = {
            family: tuple(table for (_, f), table in tables.items() if f == family)
            for family in (4, 6)
        }
        return cls(zone, serial, defaults, values, tables, value_ids, changed, by_family)

    # -- building ------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        zone: str,
        serial: int,
        rows: Iterable[ListingRow],
        defaults: ValueDefaults = RBLDNSD_DEFAULTS,
    ) -> ZoneIndex:
        """Build from listing rows; what a row leaves open (None) `defaults` fills in."""
        value_ids: dict[Value, int] = {}
        values: list[Value | None] = [None]
        raw_ids: dict[tuple[str, str | None, str | None], int] = {}
        grouped: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
        for row in rows:
            if row.excluded:
                value_id = EXCLUDED
            else:
                raw = (row.category, row.code, row.txt)
                value_id = raw_ids.get(raw, -1)
                if value_id < 0:
                    value = defaults.value(row.category, row.code, row.txt)
                    value_id = value_ids.get(value, -1)
                    if value_id < 0:
                        value_id = value_ids[value] = len(values)
                        values.append(value)
                    raw_ids[raw] = value_id
            grouped.setdefault((row.category, row.family), []).append(
                (row.prefixlen, row.start, value_id)
            )
        tables = {
            key: _table(32 if key[1] == 4 else 128, table_rows)
            for key, table_rows in grouped.items()
        }
        return cls._make(zone, serial, defaults, tuple(values), tables, value_ids)

    @classmethod
    def from_groups(
        cls,
        zone: str,
        serial: int,
        groups: Iterable[LoadGroup],
        defaults: ValueDefaults = RBLDNSD_DEFAULTS,
    ) -> ZoneIndex:
        """Build from `LoadGroup`s: sorted starts sharing family, length and value.

        The common case, one value per prefix length, takes the group's array as it is.
        """
        value_ids: dict[Value, int] = {}
        values: list[Value | None] = [None]
        parts: dict[tuple[str, int], dict[int, list[tuple[Any, int]]]] = {}
        for group in groups:
            if group.excluded:
                value_id = EXCLUDED
            else:
                value = defaults.value(group.category, group.code, group.txt)
                value_id = value_ids.setdefault(value, len(values))
                if value_id == len(values):
                    values.append(value)
            by_length = parts.setdefault((group.category, group.family), {})
            by_length.setdefault(group.prefixlen, []).append((group.starts, value_id))
        tables = {}
        for (category, family), by_length in parts.items():
            bits = 32 if family == 4 else 128
            levels = {}
            for length, pieces in by_length.items():
                if len(pieces) == 1:
                    starts, value_id = pieces[0]
                    if family == 4 and not isinstance(starts, array):
                        starts = array("I", starts)
                    ids = array(_value_typecode(value_id), [value_id]) * len(starts)
                    levels[length] = _Level(starts, ids)
                else:
                    pairs = sorted((s, v) for starts, v in pieces for s in starts)
                    levels[length] = _level(bits, pairs)
            tables[(category, family)] = Table(
                bits, levels, {}, tuple(sorted(levels, reverse=True))
            )
        return cls._make(zone, serial, defaults, tuple(values), tables, value_ids)

    @classmethod
    def from_arrays(
        cls,
        zone: str,
        serial: int,
        defaults: ValueDefaults,
        values: tuple[Value | None, ...],
        arrays: Mapping[tuple[str, int], Mapping[int, tuple[Any, array[int]]]],
    ) -> ZoneIndex:
        """Rebuild an index from what `levels` gave of one (a node's snapshot): its values by
        id, and per (category, family) and prefix length its sorted starts and value ids."""
        tables = {
            (category, family): Table(
                32 if family == 4 else 128,
                {length: _Level(starts, ids) for length, (starts, ids) in levels.items()},
                {},
                tuple(sorted(levels, reverse=True)),
            )
            for (category, family), levels in arrays.items()
        }
        value_ids = {value: i for i, value in enumerate(values) if value is not None}
        return cls._make(zone, serial, defaults, values, tables, value_ids)

    def levels(self) -> Iterator[tuple[str, int, int, Any, array[int]]]:
        """Every level of the compacted index: (category, family, prefix length, starts,
        value ids), the arrays as they are held. Call on a `compacted()` index."""
        for (category, family), table in self.tables.items():
            assert not table.delta, "levels() of an index with an overlay"
            for length, level in table.levels.items():
                yield category, family, length, level.starts, level.values

    def with_changes(self, serial: int, changes: Iterable[ChangeRecord]) -> ZoneIndex:
        """A new index at `serial` with the change log entries `changes` applied.

        Only the overlays of the tables touched are copied.
        """
        changes = list(changes)
        values = list(self.values)
        value_ids = dict(self._value_ids)
        deltas: dict[tuple[str, int], dict[tuple[int, int], int | None]] = {}
        for change in changes:
            row = change.listing
            key = (row.category, row.family)
            delta = deltas.get(key)
            if delta is None:
                table = self.tables.get(key)
                delta = deltas[key] = dict(table.delta) if table else {}
            slot = (row.prefixlen, row.start)
            if change.action == ChangeAction.REMOVE:
                table = self.tables.get(key)
                level = table.levels.get(row.prefixlen) if table else None
                in_base = level is not None and level.find(row.start) is not None
                if in_base:
                    delta[slot] = None
                else:
                    delta.pop(slot, None)
                continue
            if row.excluded:
                delta[slot] = EXCLUDED
                continue
            value = self.defaults.value(row.category, row.code, row.txt)
            value_id = value_ids.get(value, -1)
            if value_id < 0:
                value_id = value_ids[value] = len(values)
                values.append(value)
            delta[slot] = value_id
        tables = dict(self.tables)
        for key, delta in deltas.items():
            old = tables.get(key)
            bits = 32 if key[1] == 4 else 128
            levels = old.levels if old else {}
            lengths = set(levels) | {length for length, _ in delta}
            tables[key] = Table(bits, levels, delta, tuple(sorted(lengths, reverse=True)))
        changed = (self.serial, frozenset(change.listing.network for change in changes))
        return ZoneIndex._make(
            self.zone, serial, self.defaults, tuple(values), tables, value_ids, changed
        )

    @property
    def overlay_size(self) -> int:
        return sum(len(table.delta) for table in self.tables.values())

    def compacted(self) -> ZoneIndex:
        """The same content with every overlay folded into the arrays.

        Each level is spliced: the runs of its arrays between the overlay's entries are
        copied as slices (C speed), so compacting ten million listings costs a copy of the
        arrays, not ten million Python tuples.
        """
        tables = {
            key: _folded(table) if table.delta else table for key, table in self.tables.items()
        }
        return ZoneIndex._make(
            self.zone,
            self.serial,
            self.defaults,
            self.values,
            tables,
            self._value_ids,
            self.changed,
        )

    # -- answering -----------------------------------------------------------------------

    def lookup(self, family: int, address: int) -> tuple[Value, ...]:
        """The values that list `address`, one per category; empty when it is not listed.

        RFC 5782 test addresses: 127.0.0.2 and ::ffff:7f00:2 are always listed (with the
        zone's own listing if one exists, else the default value); 127.0.0.1 and ::1 never.
        """
        if address in _SPECIAL[family]:
            if address == TEST_LISTED[family]:
                return self._test_listed(family, address)
            return ()
        found: list[Value] = []
        for table in self.by_family[family]:
            hit = table.match(address)
            if hit:
                value = self.values[hit]
                if value is not None:
                    found.append(value)
        return tuple(found)

    def _test_listed(self, family: int, address: int) -> tuple[Value, ...]:
        found = [
            self.values[hit]
            for (_, table_family), table in self.tables.items()
            if table_family == family and (hit := table.match(address))
        ]
        listed = tuple(v for v in found if v is not None)
        return listed or (self.test_value,)

    @property
    def test_value(self) -> Value:
        """What 127.0.0.2 answers where no listing of the zone covers it."""
        return self.defaults.test_value

    def has_names_under(self, family: int, start: int, length: int) -> bool:
        """Whether any listed address lies in the prefix (start/length): an empty non-terminal."""
        bits = 32 if family == 4 else 128
        high = start | ((1 << (bits - length)) - 1)
        if start <= TEST_LISTED[family] <= high:
            return True
        return any(
            table.overlaps(start, high, length)
            for (_, table_family), table in self.tables.items()
            if table_family == family
        )

    # -- enumerating ---------------------------------------------------------------------

    def entries(self) -> Iterator[tuple[str, Network, Value | None]]:
        """Every entry: (category, network, value), value None for an exclusion."""
        for (category, family), table in sorted(self.tables.items()):
            for length, start, value_id in sorted(table.entries()):
                yield category, Network(family, start, length), self.values[value_id]

    def __len__(self) -> int:
        return sum(
            sum(len(level.starts) for level in table.levels.values()) + len(table.delta)
            for table in self.tables.values()
        )
