"""The entries of an ip4trie, ip6trie or ip6tset dataset, held as typed arrays.

A trie dataset keeps the *first* entry for a network and warns about every later one
(`dnsbl.rbldnsd.data`). Held as a dict of networks, each entry cost ~150 bytes, so a file of
ten million lines needed gigabytes. Here an entry costs its first address, its prefix length
and its line (the reader's count over every file) in the arrays of its *part* — the entries
whose first address shares its top 8 bits — and, once a second value is seen, a value
number: 9 bytes an IPv4 entry, 13 an IPv6 one (21 from the first entry longer than a /64, whose
address has lower 64 bits), 2 more with several values.

Few parts, each of large arrays: ten thousand small ones growing side by side fragmented the
heap to three times their size. `resolve` then takes one part at a time, in address order: a
part too large to take whole (a file of random IPv4 networks at 67M lines, every IPv6 entry
of 2001::/8) is split by the next 8 bits first, and again, so that no more than `_WHOLE`
entries are ever Python objects at once; within a part the entry of each
network with the smallest line is kept and the others are duplicates, and the kept first
addresses are sorted into one array per value and prefix length. Parts never overlap and
come in address order, so those arrays grow sorted. A split takes the part's arrays from
their end, a chunk at a time, cutting them as it goes: the entries are not held twice.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar, overload

from dnsbl.rbldnsd.value_numbers import ValueNumbers, with_number

V = TypeVar("V")  # a value as read (None: an exclusion)
_WHOLE = 1 << 18  # a part of more entries is split before it is resolved
_CHUNK = 1 << 16  # entries a split moves before it cuts the part's arrays
_LOW = (1 << 64) - 1


class AddressArray(Sequence[int]):
    """Addresses as typed arrays: IPv4 ones as 32-bit numbers; IPv6 ones as their upper
    halves and, from the first that has any, their lower halves (a /64 or shorter has none).
    A sequence of ints made one at a time, as the store asks (by index, slice or `bisect`)."""

    __slots__ = ("high", "low", "v6")

    def __init__(self, family: int) -> None:
        self.v6 = family == 6
        self.high = array("Q" if self.v6 else "I")
        self.low: array[int] | None = None

    def __len__(self) -> int:
        return len(self.high)

    def __iter__(self) -> Iterator[int]:
        # Not Sequence's, which would index one by one through `__getitem__`.
        if not self.v6:
            return iter(self.high)
        if self.low is None:
            return (high << 64 for high in self.high)
        return (high << 64 | low for high, low in zip(self.high, self.low, strict=True))

    def append(self, address: int) -> None:
        if not self.v6:
            self.high.append(address)
            return
        self.high.append(address >> 64)
        low = address & _LOW
        if low and self.low is None:
            self.low = array("Q", [0]) * (len(self.high) - 1)
        if self.low is not None:
            self.low.append(low)

    def cut(self, count: int) -> None:
        """Keep the first `count` addresses only."""
        del self.high[count:]
        if self.low is not None:
            del self.low[count:]

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> list[int]: ...

    def __getitem__(self, index: int | slice) -> int | list[int]:
        if isinstance(index, slice):
            if not self.v6:
                return self.high[index].tolist()
            if self.low is None:
                return [high << 64 for high in self.high[index]]
            pairs = zip(self.high[index], self.low[index], strict=True)
            return [high << 64 | low for high, low in pairs]
        if not self.v6:
            return self.high[index]
        return self.high[index] << 64 | (0 if self.low is None else self.low[index])


class _Part:
    """Parallel arrays of entries, in the order read: first address, prefix length, line,
    and value number (None while every number is 0)."""

    __slots__ = ("bits", "firsts", "lines", "numbers")

    def __init__(self, family: int) -> None:
        self.firsts = AddressArray(family)
        self.bits = array("B")
        self.lines = array("I")
        self.numbers: array[int] | None = None

    def append(self, first: int, bits: int, line: int, number: int) -> None:
        self.firsts.append(first)
        self.bits.append(bits)
        if line > 0xFFFFFFFF and self.lines.typecode == "I":
            self.lines = array("Q", self.lines)
        self.lines.append(line)
        self.numbers = with_number(self.numbers, len(self.bits) - 1, number)

    def cut(self, count: int) -> None:
        """Keep the first `count` entries only."""
        self.firsts.cut(count)
        for held in (self.bits, self.lines, self.numbers):
            if held is not None:
                del held[count:]


class TrieEntries(Generic[V]):
    """The entries of one family of a trie dataset: (first address, prefix length, value)."""

    def __init__(self, family: int, *, quiet: bool = False) -> None:
        """`quiet`: a network given twice is no duplicate to report (ip6tset merges them)."""
        self.family = family
        self.quiet = quiet
        self._width = 32 if family == 4 else 128
        self._parts: dict[int, _Part] = {}  # by the first address's top 8 bits
        self._numbers: ValueNumbers[V] = ValueNumbers()
        self._count = 0
        # After `resolve`: sorted first addresses by (value number, prefix length).
        self._starts: dict[tuple[int, int], AddressArray] | None = None

    def __len__(self) -> int:
        return self._count

    def add(self, first: int, bits: int, line: int, value: V | None) -> None:
        """An entry for the network `first`/`bits` given by `line`."""
        top = first >> (self._width - 8)
        part = self._parts.get(top)
        if part is None:
            part = self._parts[top] = _Part(self.family)
        part.append(first, bits, line, self._numbers.number(value))
        self._count += 1

    def resolve(self) -> Iterator[tuple[int, int, int]]:
        """Keep the first entry of each network; yields (line, first address, prefix length)
        of every later one, in address order (call once: the parts go as they are taken)."""
        self._starts = {}
        parts, self._parts = self._parts, {}
        for top in sorted(parts):
            yield from self._resolve(parts.pop(top), self._width - 16)

    def _resolve(self, part: _Part, shift: int) -> Iterator[tuple[int, int, int]]:
        count = len(part.bits)
        if count > _WHOLE and shift >= 0:
            for piece in _split(part, self.family, shift):
                yield from self._resolve(piece, shift - 8)
            return
        lines, numbers = part.lines, part.numbers
        kept: dict[int, int] = {}  # first address << 8 | prefix length -> entry
        for i, (first, bits) in enumerate(zip(part.firsts, part.bits, strict=True)):
            key = first << 8 | bits
            held = kept.setdefault(key, i)
            if held == i:
                continue
            later = i
            if lines[i] < lines[held]:  # a split has turned the order round
                kept[key], later = i, held
            if not self.quiet:
                yield lines[later], key >> 8, key & 255
        assert self._starts is not None
        for key in sorted(kept):
            where = (0 if numbers is None else numbers[kept[key]], key & 255)
            starts = self._starts.get(where)
            if starts is None:
                starts = self._starts[where] = AddressArray(self.family)
            starts.append(key >> 8)

    def groups(self) -> Iterator[tuple[V | None, int, Sequence[int]]]:
        """(value, prefix length, sorted first addresses) of the entries kept (after
        `resolve`; as often as asked)."""
        assert self._starts is not None, "resolve first"
        values = self._numbers.values
        for (number, bits), starts in self._starts.items():
            yield values[number], bits, starts if starts.v6 else starts.high


def _split(part: _Part, family: int, shift: int) -> list[_Part]:
    """`part` as pieces by the 8 bits of the first address above `shift`, in address order;
    `part` is left empty."""
    pieces: dict[int, _Part] = {}
    end = len(part.bits)
    while end:
        start = max(0, end - _CHUNK)
        numbers = part.numbers
        for i, first in enumerate(part.firsts[start:end], start):
            digit = first >> shift & 0xFF
            piece = pieces.get(digit)
            if piece is None:
                piece = pieces[digit] = _Part(family)
            number = 0 if numbers is None else numbers[i]
            piece.append(first, part.bits[i], part.lines[i], number)
        part.cut(start)
        end = start
    return [pieces[digit] for digit in sorted(pieces)]
