"""rbldnsd's ip4set dataset: octet-level units, and the CIDR entries that answer as it does.

ip4set cuts every entry into /32, /24, /16 and /8 *units*; a query takes the units of the
longest of those four lengths that has any, and where several entries gave the same unit an
exclusion wins, else all their distinct values are answered. `Ip4SetUnits` holds the units
of a dataset as it is read and turns them back into entries for the zone index:

- Each level's runs of one value (from one line: a listed address stays the network it was
  written as) are merged into CIDRs no shorter than the level, so that the index's
  longest-prefix match still prefers every higher level (`groups`).
- A unit given several distinct values answers the first in the dataset's category; the
  n-th goes to rank n (`tie_groups`, stored in the *tie category* `CATEGORY+n`), listed at
  the unit and excluded at every more specific unit inside it, where ip4set answers the
  more specific unit alone.

The values themselves are opaque here (`V`, as read); `convert` turns them into what is
stored (`C`), and equal stored values count as one.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from heapq import merge
from itertools import compress, repeat
from operator import and_, itemgetter, lshift, or_, rshift
from typing import Generic, TypeVar

from dnsbl.addresses import Network
from dnsbl.rbldnsd.range_units import RangeUnits
from dnsbl.rbldnsd.singles import Singles, sorted_distinct
from dnsbl.rbldnsd.syntax import ip4set_units

V = TypeVar("V")  # a value as read (None: an exclusion)
C = TypeVar("C")  # a value as stored
_FEW_VALUES = 8  # an octet of more values goes address by address


def tie_category(category: str, rank: int) -> str:
    """The category that holds the `rank`-th values of ip4set units given several."""
    suffix = f"+{rank}"
    return category[: 64 - len(suffix)] + suffix


class Ip4SetUnits(Generic[V]):
    """The units of one ip4set dataset, keyed `level << 32 | first address` (level 0: /32,
    1: /24, 2: /16, 3: /8)."""

    def __init__(self) -> None:
        # A value, None (an exclusion), or the list of everything given for the unit when
        # several entries meet there. Public: the reader's fast path adds single addresses.
        self.units: dict[int, V | list[V | None] | None] = {}
        # The line (by count) that gave a unit, for units of ranges and CIDRs: only units of
        # one line are merged back, so that a listed address stays the network it was written
        # as (`dnsbl delist 192.0.2.3` finds it), however many neighbours it has.
        self._origins: dict[int, int] = {}
        # The /24, /16 and /8 units of ranges and CIDRs, as arrays: only those that several
        # lines gave come into `units` (at `resolve`). Off, every unit goes into `units`.
        self.ranges: RangeUnits | None = RangeUnits()
        self._ranges = 0
        self._values: list[V | None] = []  # the singles' value numbers, after `resolve`
        # Whether a unit of /24 or wider is given twice (and may tie): `tie_groups` then
        # looks for the units inside it in the arrays.
        self._nested = False
        # Units given several distinct values: the values after the first, in order.
        self._ties: dict[int, list[V]] = {}
        # Single addresses (a line of one address) wait here, as arrays, until `resolve`.
        self.singles: Singles[V] = Singles()
        # The /32 units of ranges, as (place, value) for each line that gave one (the place:
        # how many singles of the unit's bucket were read before): where a single address
        # meets one, `resolve` replays both in the order read.
        self._level0: dict[int, list[tuple[int, V | None]]] = {}
        # After `resolve`: the single addresses no other line gave, by value, in order.
        self._pure: dict[int, tuple[V | None, array[int]]] | None = None

    def add(self, key: int, value: V | None) -> None:
        """Give the unit `key` a value (or an exclusion)."""
        units = self.units
        if key not in units:
            units[key] = value
            return
        held = units[key]
        if isinstance(held, list):
            held.append(value)
        elif held != value:
            units[key] = [held, value]

    def add_range(self, first: int, last: int, value: V | None) -> None:
        """An entry from `first` to `last` (an address, a CIDR or a range), cut into units."""
        if first == last:
            self.singles.add(first, value)
            return
        singles, ranges = self.singles, self.ranges
        self._ranges += 1
        origin = self._ranges
        if ranges is not None:
            ranges.add_line(singles.number(value))
        for level, start, count in ip4set_units(first, last):
            if ranges is not None:  # a level 0 run is within one /24: one place
                ranges.add(level, start, count, origin, singles.place(start))
                continue
            step = 1 << (8 * level)
            for unit in range(start, start + count * step, step):
                key = level << 32 | unit
                self.add(key, value)
                self._origins.setdefault(key, origin)
                if not level:
                    self._level0.setdefault(key, []).append((singles.place(unit), value))

    def resolve(self) -> None:
        """Take the single addresses in: those no other line gave stay arrays (`_pure`); the
        others become units, their values in the order the lines gave them."""
        if self._pure is not None:
            return
        pure: dict[int, tuple[V | None, array[int]]] = {}
        singles = self.singles
        self._values = values = singles.values
        if self.ranges is not None:
            # Units several lines gave, and /32 units a single address meets.
            for level, unit, line, place in self.ranges.sort(singles.buckets):
                key = level << 32 | unit
                value = values[self.ranges.value_number(line)]
                self.add(key, value)
                self._origins.setdefault(key, line)
                if not level:
                    self._level0.setdefault(key, []).append((place, value))
                self._nested = self._nested or level > 0
        met = {key >> 24 for key in self.units if key >> 32 == 0}  # first octets of /32 units
        # The first value's addresses (nearly all, as a rule) go into one array of the size
        # of every single, filled in order: grown instead, it would be held twice at times.
        first = array("I", [0]) * len(singles) if singles.values else array("I")
        if singles.values:
            pure[id(singles.values[0])] = (singles.values[0], first)
        filled = 0
        for octet, bucket, numbers in singles.buckets_taken():
            if not bucket:
                continue
            if numbers is None and octet not in met:
                # The common case: one value, no range meeting them (an address given twice
                # the same value is one entry).
                ordered = sorted_distinct(bucket)
                first[filled : filled + len(ordered)] = ordered
                filled += len(ordered)
                continue
            if octet not in met and numbers is not None and len(set(bucket)) == len(bucket):
                given = set(numbers)
                if len(given) <= _FEW_VALUES:  # each address once: no ties, one value each
                    filled = self._by_value(bucket, numbers, given, pure, first, filled)
                    continue
            filled = self._resolve_runs(bucket, numbers, pure, first, filled)
        del first[filled:]
        if singles.values and not filled:
            del pure[id(singles.values[0])]
        self._pure = pure
        self.singles = Singles()  # all taken in: its arrays go

    def _by_value(
        self,
        bucket: array[int],
        numbers: array[int],
        given: set[int],
        pure: dict[int, tuple[V | None, array[int]]],
        first: array[int],
        filled: int,
    ) -> int:
        """`resolve` for one first octet of a few values and no address twice: the sorted
        addresses of each value picked out at C speed; returns how much of `first` is filled."""
        values = self.singles.values
        # address << 32 | number, sorted: every step a builtin's, none a line of Python
        keys = sorted(map(or_, map(lshift, bucket, repeat(32)), numbers))
        addresses = list(map(rshift, keys, repeat(32)))
        numbered = list(map(and_, keys, repeat(0xFFFFFFFF)))
        for number in sorted(given):
            picked = array("I", compress(addresses, map(number.__eq__, numbered)))
            if not number:
                first[filled : filled + len(picked)] = picked
                filled += len(picked)
                continue
            _addresses_of(pure, values[number]).extend(picked)
        return filled

    def _resolve_runs(
        self,
        bucket: array[int],
        numbers: array[int] | None,
        pure: dict[int, tuple[V | None, array[int]]],
        first: array[int],
        filled: int,
    ) -> int:
        """`resolve` for one first octet, address by address; returns how much of `first`
        (the first value's addresses) is filled."""
        units, level0 = self.units, self._level0
        zero = self.singles.values[0]
        for address, given in self.singles.runs(bucket, numbers):
            if len(given) == 1 and address not in units:
                value = given[0][1]
                if value is zero:
                    first[filled] = address
                    filled += 1
                    continue
                _addresses_of(pure, value).append(address)
                continue
            # A range's value given at `place` (the singles of the bucket read before it)
            # comes before the single at that place.
            events = [(place, 1, value) for place, value in given]
            events += [(place, 0, value) for place, value in level0.get(address, ())]
            events.sort(key=itemgetter(0, 1))
            units.pop(address, None)
            for _, _, value in events:
                self.add(address, value)
        return filled

    def single_groups(
        self, convert: Callable[[V | None], C | None]
    ) -> Iterator[tuple[C | None, array[int]]]:
        """The single addresses no other line gave, by value: sorted arrays of addresses."""
        self.resolve()
        assert self._pure is not None
        for raw, addresses in self._pure.values():
            yield convert(raw), addresses

    def groups(
        self, convert: Callable[[V | None], C | None]
    ) -> Iterator[tuple[C | None, list[Network]]]:
        """The entries by value: single addresses as they are, units of ranges and CIDRs (and
        units that several entries gave) merged back into CIDRs."""
        for value, addresses in self.single_groups(convert):
            yield value, [Network(4, address, 32) for address in addresses]
        for value, length, starts in self.packed(convert):
            yield value, [Network(4, start, length) for start in starts]

    def packed(
        self, convert: Callable[[V | None], C | None], release: bool = False
    ) -> Iterator[tuple[C | None, int, array[int]]]:
        """The entries other than those of `single_groups`, as (value, prefix length, sorted
        starts): a bulk import takes them as arrays, no object per entry. `release`: the
        arrays of units go as they are taken (nothing is asked after)."""
        self.resolve()
        origins = self._origins
        singles: dict[int, tuple[V | None, list[int]]] = {}
        rest: dict[int, V | list[V | None] | None] = {}
        for key, held in self.units.items():
            if isinstance(held, list) or (origins and key in origins):
                rest[key] = held
            else:
                singles.setdefault(id(held), (held, []))[1].append(key)
        for raw, keys in singles.values():
            yield convert(raw), 32, array("I", sorted(keys))
        merged: dict[tuple[int, int], tuple[C | None, array[int]]] = {}
        for first, length, value in self._merged(convert, rest, release):
            found = merged.get((id(value), length))
            if found is None:
                found = merged[(id(value), length)] = (value, array("I"))
            found[1].append(first)
        for (_, length), (value, starts) in merged.items():
            yield value, length, starts

    def bulk(
        self, convert: Callable[[V | None], C | None], last: bool = False
    ) -> Iterator[tuple[int, C | None, int, array[int]]]:
        """Every entry, for a bulk write: (rank, value, prefix length, sorted starts), rank 1
        for `groups`, n for `tie_groups`' rank n. `last`: nothing is asked after, so the
        arrays of units go once all is handed out."""
        for value, addresses in self.single_groups(convert):
            yield 1, value, 32, addresses
        for value, length, starts in self.packed(convert, last and not self._nested):
            yield 1, value, length, starts
        for rank, value, networks in self.tie_groups(convert):
            by_length: dict[int, list[int]] = {}
            for network in networks:
                by_length.setdefault(network.prefixlen, []).append(network.first)
            for length, firsts in by_length.items():
                yield rank, value, length, array("I", sorted(firsts))
        if last and self.ranges is not None:
            self.ranges.clear()

    def tie_groups(
        self, convert: Callable[[V | None], C | None]
    ) -> Iterator[tuple[int, C | None, list[Network]]]:
        """The further values of units given several, as (rank, value, networks).

        Rank n holds each tied unit's n-th distinct value (`groups` has the first), listed at
        the unit, and an exclusion for every more specific unit inside it. Call after
        `groups`, which finds the ties.
        """
        if not self._ties:
            return
        levels: list[list[int]] = [[], [], [], []]
        for key in self.units:
            levels[key >> 32].append(key & 0xFFFFFFFF)
        for starts in levels:
            starts.sort()
        assert self._pure is not None
        pure = [addresses for _, addresses in self._pure.values()]
        deepest = max(len(extras) for extras in self._ties.values()) + 1
        for rank in range(2, deepest + 1):
            ties = self._ties.items()
            listed = {key: extras[rank - 2] for key, extras in ties if len(extras) > rank - 2}
            by_value: dict[int, tuple[V, list[Network]]] = {}
            for key, raw in sorted(listed.items()):
                by_value.setdefault(id(raw), (raw, []))[1].append(_unit_network(key))
            for raw, networks in by_value.values():
                yield rank, convert(raw), networks
            inside = {
                inner for key in listed for inner in _units_inside(key, levels, pure, self.ranges)
            }
            inside -= listed.keys()
            if inside:
                yield rank, None, [_unit_network(key) for key in sorted(inside)]

    def _ordered(
        self, units: dict[int, V | list[V | None] | None], release: bool
    ) -> Iterator[tuple[int, V | list[V | None] | None, int | None]]:
        """(key, held, line or None) of `units` and of the units held as arrays, by key
        (`release`: each array goes once taken)."""
        origins = self._origins
        # Sorting the pairs, not the keys: looking a million keys up again in key order
        # costs more than the sort (each probe lands somewhere else in memory).
        ordered = sorted(units.items(), key=itemgetter(0))
        ranges = self.ranges
        if ranges is None:
            for key, held in ordered:
                yield key, held, origins.get(key) if origins else None
            return
        values, line_values = self._values, ranges.line_values
        i = 0
        for index in range(1024):  # level << 8 | first octet, as keys sort
            j = i
            while j < len(ordered) and ordered[j][0] >> 24 == index:
                j += 1
            given = ((key, held, origins.get(key)) for key, held in ordered[i:j])
            some_given, i = j > i, j
            if not ranges.buckets[index]:
                yield from given
                continue
            high = (index >> 8) << 32
            if line_values is None:  # every line has the first value
                held_once = ((high | unit, values[0], line) for unit, line in ranges.units(index))
            else:
                held_once = (
                    (high | unit, values[line_values[line]], line)
                    for unit, line in ranges.units(index)
                )
            yield from merge(given, held_once, key=itemgetter(0)) if some_given else held_once
            if release:
                ranges.buckets[index] = array("Q")

    def _merged(
        self,
        convert: Callable[[V | None], C | None],
        units: dict[int, V | list[V | None] | None],
        release: bool = False,
    ) -> Iterator[tuple[int, int, C | None]]:
        """`units` and those held as arrays, each level's runs of one value (from one line)
        merged into CIDRs: (first address, prefix length, value)."""
        run_level = -1
        run_start = run_end = 0
        run_value: V | None = None
        run_origin: int | None = None
        for key, held, origin in self._ordered(units, release):
            level, unit = key >> 32, key & 0xFFFFFFFF
            value = self._first_value(key, held, convert) if isinstance(held, list) else held
            if (
                unit == run_end + 1
                and origin is not None
                and origin == run_origin
                and level == run_level
                and (value is run_value or value == run_value)
            ):
                run_end = unit + (1 << (8 * level)) - 1
                continue
            if run_level >= 0:
                if run_level == 0 and run_start == run_end:
                    yield run_start, 32, convert(run_value)
                else:
                    yield from _cidrs(run_start, run_end, run_level, convert(run_value))
            run_level, run_start, run_value, run_origin = level, unit, value, origin
            run_end = unit + (1 << (8 * level)) - 1
        if run_level >= 0:
            yield from _cidrs(run_start, run_end, run_level, convert(run_value))

    def _first_value(
        self, key: int, held: list[V | None], convert: Callable[[V | None], C | None]
    ) -> V | None:
        """The first value rbldnsd answers for a unit (an exclusion wins over any value); the
        unit's other distinct values are kept for `tie_groups`."""
        if None in held:
            return None
        first = held[0]
        assert first is not None
        seen = {convert(first)}
        extras: list[V] = []
        for raw in held[1:]:
            value = convert(raw)
            if raw is not None and value not in seen:
                seen.add(value)
                extras.append(raw)
        if extras:
            self._ties[key] = extras
        return first


def _addresses_of(pure: dict[int, tuple[V | None, array[int]]], value: V | None) -> array[int]:
    """The array of the single addresses of `value` in `pure` (a new one for a new value)."""
    found = pure.get(id(value))
    if found is None:
        found = pure[id(value)] = (value, array("I"))
    return found[1]


def _unit_network(key: int) -> Network:
    """The network of a unit key (level << 32 | first address)."""
    return Network(4, key & 0xFFFFFFFF, 32 - 8 * (key >> 32))


def _units_inside(
    key: int,
    levels: list[list[int]],
    singles: Sequence[Sequence[int]] = (),
    ranges: RangeUnits | None = None,
) -> Iterator[int]:
    """The keys of the units more specific than `key` inside it (`levels`: sorted starts of
    each level; `singles`: more sorted /32 units; `ranges`: more units, as arrays)."""
    level, first = key >> 32, key & 0xFFFFFFFF
    last = first + (1 << (8 * level)) - 1
    for inner in range(level):
        for starts in (levels[inner], *(singles if inner == 0 else ())):
            for i in range(bisect_left(starts, first), bisect_right(starts, last)):
                yield inner << 32 | starts[i]
        if ranges is not None:
            for start in ranges.starts_within(inner, first, last):
                yield inner << 32 | start


def _cidrs(first: int, last: int, level: int, value: C) -> Iterator[tuple[int, int, C]]:
    """Units [first, last] of one level as aligned CIDRs no shorter than the level.

    Runs are kept within the level's band of prefix lengths (/25-/32 for /32 units, ...,
    /0-/8 for /8 units) so that the longest-prefix match still prefers every higher level.
    """
    unit = 1 << (8 * level)
    if last - first + 1 == unit:
        yield first, 32 - 8 * level, value
        return
    largest = 1 << 32 if level == 3 else unit << 7
    while first <= last:
        size = first & -first if first else 1 << 32
        size = min(size, largest)
        while first + size - 1 > last:
            size >>= 1
        yield first, 33 - size.bit_length(), value
        first += size
