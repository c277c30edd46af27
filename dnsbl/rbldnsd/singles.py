"""The single addresses of an ip4set dataset, held as typed arrays: four bytes a line.

Nearly every line of a large ip4set file is one address. Held as Python objects (a dict of
ints to values) they cost ~100 bytes each, so ten million lines needed gigabytes; here each
costs its address in the array of its first octet (the *bucket*), in the order read, and —
only once a bucket has seen a second value — a value number beside it. A line's *place* is
its index in its bucket: lines of different buckets never meet, so the order within a bucket
is all the order the dataset needs. `buckets_taken` then hands out one first octet at a time,
for the caller to sort (a few megabytes for a 10M-line file of random addresses), and `runs`
hands a bucket's addresses back in order with the values each was given, in the order the
lines gave them.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from itertools import compress
from typing import Generic, TypeVar

from dnsbl.rbldnsd.value_numbers import ValueNumbers

V = TypeVar("V")  # a value as read (None: an exclusion)
# A bucket of more addresses is sorted in a bitmap of its octet's 2**24 addresses (2 MB),
# not as a list of ints (~40 bytes an address while it is sorted): one /8 can hold a file.
_BITMAP_FROM = 1 << 20
_BITS_OF = [tuple(bit for bit in range(8) if byte >> bit & 1) for byte in range(256)]


class Singles(Generic[V]):
    """Single addresses with their values, in the order read."""

    def __init__(self) -> None:
        self.buckets = [array("I") for _ in range(256)]  # the addresses, by first octet
        # The value number of each address of a bucket, by place; None while all are 0.
        self._value_of: list[array[int] | None] = [None] * 256
        self._code = "H"
        self._numbered_any = False  # whether any bucket has value numbers
        self._numbers: ValueNumbers[V] = ValueNumbers()

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self.buckets)

    def add(self, address: int, value: V | None) -> None:
        """A line giving `address` the value `value` (the reader hands out one object per
        distinct value, so values are told apart by identity)."""
        number = self.number(value)
        octet = address >> 24
        bucket = self.buckets[octet]
        numbers = self._value_of[octet]
        if numbers is None and number:
            numbers = self._numbered(octet)
        if numbers is not None:
            numbers.append(number)
        bucket.append(address)

    def add_block(self, addresses: Iterable[int], value: V | None) -> None:
        """Lines in a row giving each of `addresses` the same value."""
        number = self.number(value)
        buckets, value_of = self.buckets, self._value_of
        if not number and not self._numbered_any:  # the common case: one value so far
            for address in addresses:
                buckets[address >> 24].append(address)
            return
        for address in addresses:
            octet = address >> 24
            numbers = value_of[octet]
            if numbers is None and number:
                numbers = self._numbered(octet)
            if numbers is not None:
                numbers.append(number)
            buckets[octet].append(address)

    def place(self, address: int) -> int:
        """The place the next single address of `address`'s bucket would take."""
        return len(self.buckets[address >> 24])

    def number(self, value: V | None) -> int:
        """The value number of `value`."""
        number = self._numbers.number(value)
        if number == 0xFFFF and self._code == "H":
            self._code = "I"
            self._value_of = [None if a is None else array("I", a) for a in self._value_of]
        return number

    def _numbered(self, octet: int) -> array[int]:
        """Give bucket `octet` its value numbers (0 so far, for each address held)."""
        numbers = self._value_of[octet] = array(self._code, [0]) * len(self.buckets[octet])
        self._numbered_any = True
        return numbers

    @property
    def values(self) -> list[V | None]:
        """The distinct values given, by number."""
        return self._numbers.values

    def buckets_taken(self) -> Iterator[tuple[int, array[int], array[int] | None]]:
        """(octet, addresses, value numbers or None for all 0) of each bucket, in place order;
        the arrays are let go of as they are handed out (call once)."""
        for octet in range(256):
            bucket, numbers = self.buckets[octet], self._value_of[octet]
            self.buckets[octet] = array("I")
            self._value_of[octet] = None
            yield octet, bucket, numbers

    def runs(
        self, bucket: array[int], numbers: array[int] | None
    ) -> Iterator[tuple[int, list[tuple[int, V | None]]]]:
        """(address, [(place, value), ...]) for a bucket, by address: each address's values
        in the order read."""
        values = self._numbers.values
        order = sorted(range(len(bucket)), key=bucket.__getitem__)  # stable: places in order
        count = len(order)
        i = 0
        while i < count:
            address = bucket[order[i]]
            j = i + 1
            while j < count and bucket[order[j]] == address:
                j += 1
            places = order[i:j]
            if numbers is None:
                yield address, [(place, values[0]) for place in places]
            else:
                yield address, [(place, values[numbers[place]]) for place in places]
            i = j


def sorted_distinct(bucket: array[int]) -> array[int]:
    """The distinct addresses of a bucket (one first octet), in order."""
    if len(bucket) < _BITMAP_FROM or not bucket:
        return array("I", sorted(set(bucket)))
    bitmap = bytearray(1 << 21)
    for address in bucket:
        bitmap[address >> 3 & 0x1FFFFF] |= 1 << (address & 7)
    found = array("I")
    octet = bucket[0] >> 24 << 24
    for byte in compress(range(len(bitmap)), bitmap):  # the bytes with an address
        base = octet | byte << 3
        found.extend([base | bit for bit in _BITS_OF[bitmap[byte]]])
    return found
