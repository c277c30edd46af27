"""Segments made a /8 at a time are the segments of the whole space, and what the apex reads of
each /8 from the arrays (`_Blocks.answer_of`) is the truth, or `MIXED` where the truth is one
answer (never nothing for something, never a wrong answer).

Random zones (hypothesis) crowd a few /8s with nested networks, exclusions and categories,
networks of /8 and wider, the test addresses' 127/8, and an overlay of changes on top.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsbl.index.segments import BLOCK_BITS, EMPTY, MIXED, Segments
from dnsbl.index.values import ValueDefaults
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow
from tests.conftest import ZONE

_BLOCKS = [10, 11, 127, 200, 201]  # /8s the listings crowd (10/7 and 200/7 hold two each)
_LENGTHS = [6, 7, 8, 8, 9, 16, 24, 31, 32, 32]

_rows = st.builds(
    lambda category, block, bits, length, excluded, code: ListingRow(
        category,
        4,
        (block << BLOCK_BITS | bits) >> (32 - length) << (32 - length),
        length,
        excluded,
        code,
        None,
    ),
    st.sampled_from("ab"),
    st.sampled_from(_BLOCKS),
    st.integers(0, 2**BLOCK_BITS - 1),
    st.sampled_from(_LENGTHS),
    st.sampled_from([False, False, False, True]),  # exclusions send the apex to the segments
    st.sampled_from([None, "127.0.0.3"]),
)


def _index(rows: list[ListingRow], changed: list[ListingRow]) -> ZoneIndex:
    index = ZoneIndex.build(ZONE, 1, rows, ValueDefaults(txt="Listed $"))
    changes = [ChangeRecord(2, ChangeAction.ADD, row) for row in changed]
    changes += [ChangeRecord(2, ChangeAction.REMOVE, row) for row in rows[:2]]
    return index.with_changes(2, changes) if changes else index


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(_rows, max_size=25),
    changed=st.lists(_rows, max_size=4),
    one_category=st.booleans(),
)
def test_blocks_are_the_whole_space_and_the_apex_reads_them_right(
    rows: list[ListingRow], changed: list[ListingRow], one_category: bool
) -> None:
    if one_category:  # one table: the arrays are read; several: the segments are made
        rows = [replace(row, category="a") for row in rows]
        changed = [replace(row, category="a") for row in changed]
    index = _index(rows, changed)
    whole = Segments(index, 4, 32, [(0, 2**32 - 1)])  # made at once, from the overlay as is
    blocks = Segments(index, 4, 32)
    assert blocks.blocks is not None
    for block in sorted({*_BLOCKS, 12, 128}):
        low = block << BLOCK_BITS
        high = low + (1 << BLOCK_BITS) - 1
        lows, highs, answers = blocks.run_of(low)
        run, first, end = whole.span(low, high)
        expected = [
            (max(run[0][i], low), min(run[1][i], high), run[2][i]) for i in range(first, end)
        ]
        assert list(zip(lows, highs, answers, strict=True)) == expected
        truth = whole.answer(low, high)
        read = blocks.blocks.answer_of(block)
        assert read == truth or (read is MIXED and truth not in (MIXED, EMPTY)), block
