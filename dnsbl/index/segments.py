"""One address family's space as *segments*: sorted, disjoint runs of addresses with one answer.

A segment's answer is the tuple of values `ZoneIndex.lookup` gives every address in it, so
categories, exclusions, longest-prefix match and the RFC 5782 test addresses are all accounted
for, exactly. `dnsbl.index.records` walks the label tree over them.

A large zone's segments are not held at once: those of a range are made when the walk comes
to a node holding at most `AT_ONCE` entries (an IPv4 /8 of a ten-million-listing zone holds
some forty thousand), and only the last range made is kept. What a larger range answers as a
whole — nothing, one answer, or mixed — is read from the index's arrays (`answer_in`: the
entry covering it and the values of the entries inside), exactly; where the arrays cannot
tell, that range's segments are made after all. A zone of at most `AT_ONCE` entries is made
whole at once.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from itertools import repeat

from dnsbl.index.values import TEST_LISTED, TEST_UNLISTED, TEST_UNLISTED_MAPPED, Value
from dnsbl.index.zone_index import EXCLUDED, Table, ZoneIndex

Answer = tuple[Value, ...]
Ranges = list[tuple[int, int]]  # (low, high) address ranges of one family
# A run of segments: their lows, highs and answers (equal answers are one object).
Run = tuple[list[int], list[int], list[Answer]]

# A child of a node: its first address, its answer (or MIXED) and the indexes of the
# segments meeting it in their run, [first, end).
Kid = tuple[int, Answer | None, int, int]

MIXED: None = None  # a range whose addresses do not all share one answer
EMPTY: Answer = ()
AT_ONCE = 1 << 16  # entries in a range whose segments are made at once


def specials(family: int) -> list[int]:
    """The RFC 5782 test addresses of `family`, which `lookup` answers before any table."""
    found = [TEST_LISTED[family], TEST_UNLISTED[family]]
    if family == 6:
        found.append(TEST_UNLISTED_MAPPED)
    return sorted(found)


class Segments:
    """One family's segments, and what a range of addresses answers (see the module).

    `ranges`: only the answers inside these (low, high) ranges are needed, and the segments
    of all of them are made at once; elsewhere they may be missing or wrong. Without
    `ranges`, the segments of a range are made when they are asked for (`span`), and a range
    holding more than `AT_ONCE` entries is answered from the arrays (`answer_in`).
    """

    def __init__(
        self, index: ZoneIndex, family: int, bits: int, ranges: Ranges | None = None
    ) -> None:
        self.index = index
        self.family = family
        self.bits = bits
        self.interned: dict[Answer, Answer] = {EMPTY: EMPTY}
        self._arrays: ZoneIndex | None = None
        self._cached: tuple[tuple[int, int], Run] | None = None
        self.whole: Run | None = None
        if ranges is not None or self.small(0, (1 << bits) - 1):
            self.whole = self.made(ranges)

    @property
    def tables(self) -> tuple[Table, ...]:
        """The family's tables, their overlays folded into their arrays, in lookup order."""
        if self._arrays is None:
            index = self.index
            self._arrays = index.compacted() if index.overlay_size else index
        return self._arrays.by_family[self.family]

    def made(self, ranges: Ranges | None, clip: tuple[int, int] | None = None) -> Run:
        """The segments meeting `ranges` (all if None), cut to `clip` when given."""
        index, family, bits = self.index, self.family, self.bits
        tables = [table for (_, each), table in index.tables.items() if each == family]
        run = _Run(clip or (0, (1 << bits) - 1), self.interned)
        if len(tables) > 1:
            for low, high, answer in _looked_up(index, family, bits, ranges):
                run.add(low, high, answer)
            return run.lists()
        if tables:
            _sweep(index, tables[0], ranges, run)
        wanted = [
            address
            for address in specials(family)
            if ranges is None or any(low <= address <= high for low, high in ranges)
        ]
        if not wanted:
            return run.lists()
        # The test addresses are answered by `lookup` itself: cut out of the pieces around.
        cut = _Run(run.clip, self.interned)
        for low, high, answer in zip(*run.lists(), strict=True):
            for special in wanted:
                if low <= special <= high:
                    cut.add(low, special - 1, answer)
                    low = special + 1
            cut.add(low, high, answer)
        tests = [(address, address, index.lookup(family, address)) for address in wanted]
        pieces = sorted([*zip(*cut.lists(), strict=True), *tests], key=_low)
        done = _Run(run.clip, self.interned)
        for low, high, answer in pieces:
            done.add(low, high, answer)
        return done.lists()

    def span(self, low: int, high: int) -> tuple[Run, int, int]:
        """The segments meeting [low, high]: a run holding them, and the indexes of theirs
        in it, [first, end). Made for the range (the last range made is kept), where not all
        made at once."""
        if self.whole is not None:
            run = self.whole
        else:
            if self._cached is None or self._cached[0] != (low, high):
                self._cached = ((low, high), self.made([(low, high)], (low, high)))
            run = self._cached[1]
        lows, highs, _ = run
        return run, bisect_left(highs, low), bisect_right(lows, high)

    def small(self, low: int, high: int) -> bool:
        """Whether the segments of [low, high] are few enough to be made at once."""
        if self.whole is not None:
            return True
        count = 0
        for table in self.tables:
            for level in table.levels.values():
                first, end = level.between(low, high)
                count += end - first
        return count <= AT_ONCE

    def answer(self, low: int, high: int) -> Answer | None:
        """The one answer of every address in [low, high], or `MIXED`."""
        if not self.small(low, high):
            return self.answer_in(low, high)
        return self._made_answer(low, high)

    def children(self, low: int, child_bits: int, count: int) -> dict[int, Answer | None]:
        """The answer of each child of the node at `low` that meets a segment (others: none)."""
        high = low + (count << child_bits) - 1
        if not self.small(low, high):
            size = 1 << child_bits
            read = {
                child: self.answer_in(low + child * size, low + (child + 1) * size - 1)
                for child in range(count)
            }
            return {child: answer for child, answer in read.items() if answer is not EMPTY}
        run, first, end = self.span(low, high)
        kids = children_of(run, low, child_bits, count, first, end)
        return {(child - low) >> child_bits: answer for child, answer, _, _ in kids}

    def listed_within(self, low: int, high: int) -> tuple[int, int] | None:
        """The first and last address of the entries inside the aligned range [low, high]
        when nothing covers the whole of it (no address outside them answers), else None."""
        if self._holds_test_address(low, high):
            return None
        first_start, last_end = high + 1, low - 1
        for table in self.tables:
            bits = table.bits
            length = bits - (high - low + 1).bit_length() + 1
            for each, level in table.levels.items():
                starts = level.starts
                if each <= length:
                    found = level.find(low >> (bits - each) << (bits - each))
                    if found is not None and found != EXCLUDED:
                        return None
                    continue
                first, end = level.between(low, high)
                if end > first:
                    first_start = min(first_start, starts[first])
                    last_end = max(last_end, starts[end - 1] + (1 << (bits - each)) - 1)
        return (first_start, last_end) if first_start <= last_end else None

    def answer_in(self, low: int, high: int) -> Answer | None:
        """What the aligned range [low, high] answers, `EMPTY` or `MIXED`, read from the arrays
        without making its segments (see `_table_answer`); they are made where the arrays
        cannot tell, and where a test address is in the range."""
        if self._holds_test_address(low, high):
            return self._made_answer(low, high)
        found: list[Value] = []
        for table in self.tables:
            known, answer = _table_answer(table, self.index.values, low, high)
            if not known:
                return self._made_answer(low, high)
            if answer is MIXED:
                return MIXED
            found += answer
        combined = tuple(found)
        return self.interned.setdefault(combined, combined)

    def _made_answer(self, low: int, high: int) -> Answer | None:
        """What [low, high] answers, from its segments."""
        (lows, highs, answers), first, end = self.span(low, high)
        if first == end:
            return EMPTY
        if end - first == 1 and lows[first] <= low and highs[first] >= high:
            return answers[first]
        return MIXED

    def _holds_test_address(self, low: int, high: int) -> bool:
        return any(low <= address <= high for address in specials(self.family))


def _table_answer(
    table: Table, values: tuple[Value | None, ...], low: int, high: int
) -> tuple[bool, Answer | None]:
    """What one table (no overlay) answers for the aligned range [low, high] — `EMPTY`, one
    value or `MIXED` — if the arrays can tell: (True, answer), else (False, None).

    The entry covering the range (if any) answers every address that no entry inside it
    covers. When every entry inside answers the same, that is the answer. Otherwise, where
    an entry inside answers differently and some address of it is left to it by the entries
    deeper still (they cover less than it), and some address is covered by no entry inside,
    the range is mixed. What is left (ranges tiled by entries, a network listed twice with
    two answers) the arrays cannot tell.
    """
    bits = table.bits
    size = high - low + 1
    length = bits - size.bit_length() + 1  # the range's prefix length
    covering: int | None = None
    inside: list[tuple[int, set[int], int]] = []  # (length, value ids, count), longest first
    for each in table.lengths:
        level = table.levels[each]
        if each > length:
            first, end = level.between(low, high)
            if end > first:
                ids = set(level.values[first:end])
                if len(ids) > 1 and len(set(level.starts[first:end])) < end - first:
                    return False, None  # a network listed twice: bisection decides, not a set
                inside.append((each, ids, end - first))
        elif covering is None:
            covering = level.find(low >> (bits - each) << (bits - each))
    base = EXCLUDED if covering is None else covering  # what an address nothing inside covers
    if all(ids <= {base} for _, ids, _ in inside):
        value = values[base]
        return True, (value,) if value is not None else EMPTY
    # The deepest entries that answer otherwise, and what the entries deeper still cover.
    other = next(each for each, ids, _ in inside if ids - {base})
    deeper = sum(count << (bits - each) for each, _, count in inside if each > other)
    covered = sum(count << (bits - each) for each, _, count in inside)
    if deeper < 1 << (bits - other) and covered < size:
        return True, MIXED
    return False, None


def _entries(table: Table, ranges: Ranges | None) -> Iterator[tuple[int, int, int]]:
    """A table's (prefix length, start, value id): all, or those meeting one of `ranges`."""
    if ranges is None:
        yield from table.entries()
        return
    if len(ranges) == 1:
        yield from table.entries_meeting(*ranges[0])
        return
    seen: set[tuple[int, int]] = set()
    for low, high in ranges:
        for length, start, value_id in table.entries_meeting(low, high):
            if (length, start) not in seen:  # a short prefix can meet several ranges
                seen.add((length, start))
                yield length, start, value_id


def _looked_up(
    index: ZoneIndex, family: int, bits: int, ranges: Ranges | None
) -> Iterator[tuple[int, int, Answer]]:
    """Runs with one answer, asking `lookup` once between each two entry boundaries."""
    top = (1 << bits) - 1
    points = {0}
    for (_, each), table in index.tables.items():
        if each == family:
            for length, start, _ in _entries(table, ranges):
                points.add(start)
                points.add(start + (1 << (bits - length)))
    for low, high in ranges or ():
        points.update((low, high + 1))
    for address in specials(family):
        points.update((address, address + 1))
    starts = sorted(p for p in points if p <= top)
    for i, low in enumerate(starts):
        high = starts[i + 1] - 1 if i + 1 < len(starts) else top
        yield low, high, index.lookup(family, low)


def children_of(
    run: Run, start: int, child_bits: int, count: int, first: int, end: int
) -> list[Kid]:
    """The children (`count` of them, of `child_bits` each) of the node at `start` that meet
    one of the segments run[first:end], in order: a child met by one segment whole has its
    answer, one met otherwise is `MIXED` (segments are disjoint, and touching ones of one
    answer are one)."""
    lows, highs, answers = run
    size = 1 << child_bits
    last = start + (count << child_bits) - 1
    kids: list[Kid] = []
    cursor = start
    i = first
    while i < end:
        low = max(lows[i], cursor)
        if low > last:
            break
        child = low >> child_bits << child_bits
        child_last = child + size - 1
        if lows[i] <= child and highs[i] >= child_last:
            # segment i covers this child whole, and maybe the next ones
            stop = (min(highs[i], last) + 1) >> child_bits << child_bits
            kids += [(each, answers[i], i, i + 1) for each in range(child, stop, size)]
            cursor = stop
            if highs[i] < cursor:
                i += 1
            continue
        # the segments meeting this child: i and (rarely) the next ones
        j = (
            i + 1
            if i + 1 == end or lows[i + 1] > child_last
            else bisect_right(lows, child_last, i, end)
        )
        kids.append((child, MIXED, i, j))
        cursor = child_last + 1
        i = j - 1 if highs[j - 1] > child_last else j
    return kids


class _Run:
    """Segments as they are made, in address order: pieces cut to `clip`, those without an
    answer left out, touching pieces of one answer joined, and equal answers one object."""

    def __init__(self, clip: tuple[int, int], interned: dict[Answer, Answer]) -> None:
        self.clip = clip
        self.lows: list[int] = []
        self.highs: list[int] = []
        self.answers: list[Answer] = []
        self.add = self._adder(interned)

    def _adder(self, interned: dict[Answer, Answer]) -> Callable[[int, int, Answer], None]:
        # A closure over locals: called once a piece, millions of times in a transfer.
        floor, ceiling = self.clip
        lows, highs, answers = self.lows, self.highs, self.answers
        given: Answer | None = None  # the answer last added, as given and as interned
        kept = EMPTY

        def add(low: int, high: int, answer: Answer) -> None:
            nonlocal given, kept
            if low < floor:
                low = floor
            if high > ceiling:
                high = ceiling
            if high < low or not answer:
                return
            if answer is not given:  # pieces of one value share their answer object
                given, kept = answer, interned.setdefault(answer, answer)
            if highs and highs[-1] == low - 1 and answers[-1] is kept:
                highs[-1] = high
            else:
                lows.append(low)
                highs.append(high)
                answers.append(kept)

        return add

    def lists(self) -> Run:
        return self.lows, self.highs, self.answers


def _sweep(index: ZoneIndex, table: Table, ranges: Ranges | None, run: _Run) -> None:
    """Add the pieces of one table's nested CIDRs that meet `ranges` to `run`, in one sweep
    (the test addresses not yet cut out)."""
    values = index.values
    bits = table.bits
    answer_of: dict[int, Answer] = {}  # by value id: one tuple per value
    for value_id, value in enumerate(values):
        answer_of[value_id] = (value,) if value is not None else EMPTY
    add = run.add
    stack: list[tuple[int, int]] = []  # (last address, value id) of the open networks
    position = 0
    previous_start = previous_length = -1
    for start, length, value_id in _rows(table, ranges):
        if start == previous_start and length == previous_length:
            continue  # the same network twice: the level's bisection finds the first
        previous_start, previous_length = start, length
        while stack and stack[-1][0] < start:
            last, open_id = stack.pop()
            add(position, last, answer_of[open_id])
            position = last + 1
        if stack:
            add(position, start - 1, answer_of[stack[-1][1]])
        position = start
        stack.append((start + (1 << (bits - length)) - 1, value_id))
    while stack:
        last, open_id = stack.pop()
        add(position, last, answer_of[open_id])
        position = last + 1


def _rows(table: Table, ranges: Ranges | None) -> list[tuple[int, int, int]]:
    """(start, prefix length, value id) of the entries meeting `ranges`, sorted; for one
    range of a table without an overlay, sliced from its arrays."""
    if table.delta or ranges is None or len(ranges) != 1:
        rows = [(start, length, value_id) for length, start, value_id in _entries(table, ranges)]
    else:
        [(low, high)] = ranges
        rows = []
        bits = table.bits
        for length, level in table.levels.items():
            # networks of one length are aligned and disjoint: the one holding `low` starts
            # at `low` cut to the length, and the others start inside the range
            first = bisect_left(level.starts, low >> (bits - length) << (bits - length))
            end = bisect_right(level.starts, high, first)
            rows += zip(level.starts[first:end], repeat(length), level.values[first:end])
    rows.sort()
    return rows


def _low(piece: tuple[int, int, Answer]) -> int:
    return piece[0]
