"""One address family's space as *segments*: sorted, disjoint runs of addresses with one answer.

A segment's answer is the tuple of values `ZoneIndex.lookup` gives every address in it, so
categories, exclusions, longest-prefix match and the RFC 5782 test addresses are all accounted
for, exactly. `dnsbl.index.records` walks the label tree over them.

The whole IPv4 space of a large zone is not held at once: its segments are made a /8 at a
time (a *block*), when the walk comes to it, and only the last block is kept. A transfer of
ten million listings so holds some forty thousand segments at a time, not ten million. What
the apex needs of every /8 — nothing, one answer, or mixed — is read from the index's arrays
(`_Blocks.answer_of`), which is exact except that a /8 tiled by smaller networks of one answer
counts as mixed; that is harmless wherever the apex has no wildcard (see `answer_of`).
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

MIXED: None = None  # a range whose addresses do not all share one answer
EMPTY: Answer = ()
BLOCK_BITS = 24  # an IPv4 block is a /8: the children of the apex


def specials(family: int) -> list[int]:
    """The RFC 5782 test addresses of `family`, which `lookup` answers before any table."""
    found = [TEST_LISTED[family], TEST_UNLISTED[family]]
    if family == 6:
        found.append(TEST_UNLISTED_MAPPED)
    return sorted(found)


class Segments:
    """One family's segments, and what a range of addresses answers (see the module).

    `ranges`: only the answers inside these (low, high) ranges are needed, and all of them are
    made at once; elsewhere the segments may be missing or wrong. Without `ranges`, IPv4 is
    made a block at a time and IPv6 (whose zones are small) at once.
    """

    def __init__(
        self, index: ZoneIndex, family: int, bits: int, ranges: Ranges | None = None
    ) -> None:
        self.family = family
        self.bits = bits
        self.interned: dict[Answer, Answer] = {EMPTY: EMPTY}
        self.blocks: _Blocks | None = None
        self.whole: Run | None = None
        if ranges is None and family == 4:
            # read a block at a time from the arrays: the overlay folded in first
            self.index = index.compacted() if index.overlay_size else index
            self.blocks = _Blocks(self)
        else:
            self.index = index
            self.whole = self.made(ranges)
        self._cached: tuple[int, Run] | None = None

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

    def run_of(self, address: int) -> Run:
        """The segments of the block holding `address` (all of them, where not in blocks)."""
        if self.whole is not None:
            return self.whole
        block = address >> BLOCK_BITS
        if self._cached is None or self._cached[0] != block:
            low = block << BLOCK_BITS
            high = low + (1 << BLOCK_BITS) - 1
            self._cached = (block, self.made([(low, high)], (low, high)))
        return self._cached[1]

    def answer(self, low: int, high: int) -> Answer | None:
        """The one answer of every address in [low, high], or `MIXED`."""
        if self.blocks is not None and low >> BLOCK_BITS != high >> BLOCK_BITS:
            return self.blocks.answer_between(low, high)
        lows, highs, answers = self.run_of(low)
        i = bisect_left(highs, low)
        if i == len(highs) or lows[i] > high:
            return EMPTY
        if lows[i] <= low and highs[i] >= high:
            return answers[i]
        return MIXED

    def children(self, low: int, child_bits: int, count: int) -> dict[int, Answer | None]:
        """The answer of each child of the node at `low` that meets a segment (others: none)."""
        if self.blocks is not None and child_bits >= BLOCK_BITS:
            return self.blocks.children(low, child_bits, count)
        high = low + (count << child_bits) - 1
        lows, highs, answers = self.run_of(low)
        found: dict[int, Answer | None] = {}
        i = bisect_left(highs, low)
        while i < len(lows) and lows[i] <= high:
            seg_low, seg_high = lows[i], highs[i]
            first = (max(seg_low, low) - low) >> child_bits
            last = (min(seg_high, high) - low) >> child_bits
            for child in range(first, last + 1):
                child_low = low + (child << child_bits)
                child_high = child_low + (1 << child_bits) - 1
                whole = seg_low <= child_low and seg_high >= child_high
                # Segments are disjoint: a child met by two of them has two answers.
                found[child] = MIXED if child in found or not whole else answers[i]
            i += 1
        return found

    def span(self, low: int, high: int) -> tuple[Run, int, int]:
        """The run holding [low, high] (inside one block) and the indexes of its segments
        that meet it: [first, end)."""
        run = self.run_of(low)
        lows, highs, _ = run
        return run, bisect_left(highs, low), bisect_right(lows, high)


class _Blocks:
    """What each IPv4 /8 answers as a whole, from the index's arrays (see `answer_of`)."""

    def __init__(self, segments: Segments) -> None:
        self.segments = segments
        index = segments.index
        tables = [table for (_, family), table in index.tables.items() if family == 4]
        self.table: Table | None = tables[0] if len(tables) == 1 else None
        self.exact = len(tables) > 1
        self.values = index.values
        self.special_blocks = {address >> BLOCK_BITS for address in specials(4)}

    def answer_of(self, block: int) -> Answer | None:
        """What the /8 `block` answers: `EMPTY` (no address listed), one answer, or `MIXED`.

        Read from the arrays without making the block's segments where that is exact: no
        entry meets it, or one entry covers it and nothing inside it answers otherwise. Where
        an exclusion, a test address or several categories are involved, the segments are
        made. A /8 tiled by smaller networks of one answer is called `MIXED`: the walk then
        writes its wildcard under it instead of beside it, the same record, and only a
        wildcard at the apex (which needs IPv6 listings everywhere: never for such a zone)
        would count it differently.
        """
        low = block << BLOCK_BITS
        high = low + (1 << BLOCK_BITS) - 1
        if self.exact or block in self.special_blocks or self.table is None:
            return self._made_answer(block, low, high)
        covering: int | None = None
        inside: set[int] = set()
        for length in self.table.lengths:  # longest first
            level = self.table.levels[length]
            if length > 32 - BLOCK_BITS:
                first = bisect_left(level.starts, low)
                end = bisect_left(level.starts, high + 1, first)
                if end > first:
                    inside.update(level.values[first:end])
            elif covering is None:
                covering = level.find(low >> (32 - length) << (32 - length) if length else 0)
        if EXCLUDED in inside or covering == EXCLUDED:
            return self._made_answer(block, low, high)
        if covering is None:
            return MIXED if inside else EMPTY
        value = self.values[covering]
        if inside - {covering} or value is None:
            return MIXED
        answer = (value,)
        return self.segments.interned.setdefault(answer, answer)

    def _made_answer(self, block: int, low: int, high: int) -> Answer | None:
        lows, highs, answers = self.segments.run_of(low)
        if not lows:
            return EMPTY
        if len(lows) == 1 and lows[0] == low and highs[0] == high:
            return answers[0]
        return MIXED

    def answer_between(self, low: int, high: int) -> Answer | None:
        """The one answer of [low, high], which spans whole blocks, or `MIXED`."""
        answers = {
            self.answer_of(block) for block in range(low >> BLOCK_BITS, (high >> BLOCK_BITS) + 1)
        }
        return answers.pop() if len(answers) == 1 else MIXED

    def children(self, low: int, child_bits: int, count: int) -> dict[int, Answer | None]:
        """`Segments.children` for children of whole blocks (the apex's)."""
        per_child = 1 << (child_bits - BLOCK_BITS)
        found: dict[int, Answer | None] = {}
        for child in range(count):
            first = (low >> BLOCK_BITS) + child * per_child
            answers = {self.answer_of(block) for block in range(first, first + per_child)}
            if answers != {EMPTY}:
                found[child] = answers.pop() if len(answers) == 1 else MIXED
        return found


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
