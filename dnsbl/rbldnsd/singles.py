"""The single addresses of an ip4set dataset, held as typed arrays: ten bytes a line.

Nearly every line of a large ip4set file is one address. Held as Python objects (a dict of
ints to values) they cost ~100 bytes each, so ten million lines needed gigabytes; here each
costs one 64-bit key — the address and the line's place among the singles — in the array of
its first octet, and a value number. `sorted_buckets` then sorts one first octet at a time (a
few megabytes for a 10M-line file of random addresses), and `runs` hands the addresses back
in order with the values each was given, in the order the lines gave them.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Generic, TypeVar

V = TypeVar("V")  # a value as read (None: an exclusion)
_LOW = 0xFFFFFFFF
_NONE = object()  # no value seen yet


class Singles(Generic[V]):
    """Single addresses with their values, in the order read."""

    def __init__(self) -> None:
        self._buckets = [array("Q") for _ in range(256)]
        self._value_of = array("H")  # the value number of each single, by its place
        self._values: list[V | None] = []
        self._numbers: dict[int, int] = {}  # id(value) -> value number
        self._last: object = _NONE
        self._last_number = 0

    def __len__(self) -> int:
        return len(self._value_of)

    def add(self, address: int, value: V | None) -> None:
        """A line giving `address` the value `value` (the reader hands out one object per
        distinct value, so values are told apart by identity)."""
        if value is not self._last:  # lines in a row mostly share their value
            self._last_number = self._number(value)
            self._last = value
        value_of = self._value_of
        self._buckets[address >> 24].append(address << 32 | len(value_of))
        value_of.append(self._last_number)

    def _number(self, value: V | None) -> int:
        number = self._numbers.get(id(value))
        if number is None:
            number = self._numbers[id(value)] = len(self._values)
            self._values.append(value)
            if number == 0xFFFF and self._value_of.typecode == "H":
                self._value_of = array("I", self._value_of)
        return number

    @property
    def values(self) -> list[V | None]:
        """The distinct values given, by number."""
        return self._values

    def sorted_buckets(self) -> Iterator[list[int]]:
        """Each first octet's keys (address << 32 | place), sorted; the arrays are let go of
        as they are read (call once)."""
        for octet in range(256):
            keys = sorted(self._buckets[octet])
            self._buckets[octet] = array("Q")
            yield keys

    def runs(self, keys: list[int]) -> Iterator[tuple[int, list[tuple[int, V | None]]]]:
        """(address, [(place, value), ...]) for sorted `keys`: each address's values in the
        order read."""
        values, value_of = self._values, self._value_of
        count = len(keys)
        i = 0
        while i < count:
            address = keys[i] >> 32
            j = i + 1
            while j < count and keys[j] >> 32 == address:
                j += 1
            yield address, [(key & _LOW, values[value_of[key & _LOW]]) for key in keys[i:j]]
            i = j
