"""The units of an ip4set dataset's ranges and CIDRs, held as typed arrays.

A CIDR or range line is cut into units (`dnsbl.rbldnsd.ip4set`); held as a dict of units
with the line that gave each, ten million `a.b.c.0/24` lines cost gigabytes. Here a unit
costs eight bytes, `first address << 32 | line` in the array of its level and first octet
(its *bucket*), and a line its value number (two bytes, four past 65,535 values; none while
every line has the first value). A /32 unit
costs eight bytes more, `address << 32 | place`: the place a single address of its first
octet read after the line would take (`dnsbl.rbldnsd.singles`), for the order in which
singles and ranges meet. Sorted, a bucket holds its units in address order and, for one
unit, in the order of the lines — and so do the places, which grow with the lines: the two
sorted arrays stay side by side. `sort` hands out the units that several lines gave, and
the /32 units that a single address meets (both rare), for the caller to resolve the
general way, and keeps the others, each given once.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator
from itertools import pairwise

from dnsbl.rbldnsd.value_numbers import with_number

_LINE = 0xFFFFFFFF


class RangeUnits:
    """The units of levels 1-3 of the range and CIDR lines of a dataset, by line number."""

    def __init__(self) -> None:
        # buckets[level << 8 | octet]; level 0 stays empty
        self.buckets = [array("Q") for _ in range(1024)]
        self.places = [array("Q") for _ in range(256)]  # of the /32 units, by first octet
        self.lines = 0
        # The value number of each line, by number (from 1); None while all are 0.
        self.line_values: array[int] | None = None

    def add_line(self, number: int) -> int:
        """A range or CIDR line of value number `number`; returns the line's number."""
        self.lines += 1
        self.line_values = with_number(self.line_values, self.lines, number)
        return self.lines

    def value_number(self, line: int) -> int:
        """The value number of `line`."""
        return 0 if self.line_values is None else self.line_values[line]

    def add(self, level: int, start: int, count: int, line: int, place: int) -> None:
        """`count` units of `level` from `start`, given by `line`; `place`: that of /32 units."""
        step = 1 << (8 * level)
        buckets = self.buckets
        if not level:
            at = start >> 24
            buckets[at].extend(range(start << 32 | line, (start + count) << 32, 1 << 32))
            self.places[at].extend(range(start << 32 | place, (start + count) << 32, 1 << 32))
            return
        for unit in range(start, start + count * step, step):
            buckets[level << 8 | unit >> 24].append(unit << 32 | line)

    def sort(self, singles: list[array[int]]) -> Iterator[tuple[int, int, int, int]]:
        """Sort every bucket; yields (level, first address, line, place or 0) of each unit
        that several lines gave or (a /32 unit) that an address of `singles` (by first
        octet) meets, in address order and for one unit in the order of the lines, and takes
        such units out of the buckets (call once)."""
        for index, bucket in enumerate(self.buckets):
            if not bucket:
                continue
            ordered = sorted(bucket)
            units = [element >> 32 for element in ordered]
            repeated = {unit for unit, after in pairwise(units) if unit == after}
            places: list[int] = []
            if index < 256:
                places = sorted(self.places[index])
                self.places[index] = array("Q")
                repeated.update(set(units).intersection(singles[index]))
            del units
            if repeated:
                level = index >> 8
                for i, element in enumerate(ordered):
                    if element >> 32 in repeated:
                        place = places[i] & _LINE if places else 0
                        yield level, element >> 32, element & _LINE, place
                ordered = [element for element in ordered if element >> 32 not in repeated]
            self.buckets[index] = array("Q", ordered)

    def units(self, index: int) -> Iterator[tuple[int, int]]:
        """(first address, line) of the units of bucket `index` (sorted), in address order."""
        for element in self.buckets[index]:
            yield element >> 32, element & _LINE

    def starts_within(self, level: int, first: int, last: int) -> Iterator[int]:
        """The first addresses of the (sorted) units of `level` within [first, last]."""
        bucket = self.buckets[level << 8 | first >> 24]
        end = bisect_left(bucket, (last + 1) << 32)
        for i in range(bisect_left(bucket, first << 32), end):
            yield bucket[i] >> 32

    def clear(self) -> None:
        """Let go of every unit and line."""
        self.buckets = [array("Q") for _ in range(1024)]
        self.places = [array("Q") for _ in range(256)]
        self.lines = 0
        self.line_values = None
