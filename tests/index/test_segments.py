"""Segments made for a range are those of the whole space cut to it, and what a range answers
read from the arrays (`Segments.answer_in`) is what its segments say.

Random zones (hypothesis) crowd a few /8s with nested networks, exclusions and categories,
networks of /8 and wider, the test addresses' 127/8, a network listed twice, and an overlay of
changes on top; the ranges asked about are prefixes of every length around them.
"""

from __future__ import annotations

from dataclasses import replace
from unittest.mock import patch

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsbl.addresses import parse_network
from dnsbl.index import segments
from dnsbl.index.segments import Segments
from dnsbl.index.values import ValueDefaults
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow
from tests.conftest import ZONE

_BLOCKS = [10, 11, 127, 200, 201]  # /8s the listings crowd (10/7 and 200/7 hold two each)
_LENGTHS = [6, 7, 8, 8, 9, 16, 24, 30, 31, 32, 32]

_rows = st.builds(
    lambda category, block, bits, length, excluded, code: ListingRow(
        category,
        4,
        (block << 24 | bits) >> (32 - length) << (32 - length),
        length,
        excluded,
        code,
        None,
    ),
    st.sampled_from("ab"),
    st.sampled_from(_BLOCKS),
    st.integers(0, 2**24 - 1) | st.sampled_from([0, 1, 2, 255, 2**24 - 1]),
    st.sampled_from(_LENGTHS),
    st.sampled_from([False, False, False, True]),  # exclusions: often the segments decide
    st.sampled_from([None, "127.0.0.3"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(_rows, max_size=25),
    changed=st.lists(_rows, max_size=4),
    one_category=st.booleans(),
    probes=st.lists(st.tuples(st.sampled_from(_BLOCKS), st.integers(0, 2**24 - 1)), max_size=6),
)
def test_ranges_answer_as_the_whole_space_says(
    rows: list[ListingRow],
    changed: list[ListingRow],
    one_category: bool,
    probes: list[tuple[int, int]],
) -> None:
    if one_category:  # one table; several are answered one table at a time
        rows = [replace(row, category="a") for row in rows]
        changed = [replace(row, category="a") for row in changed]
    index = ZoneIndex.build(ZONE, 1, rows, ValueDefaults(txt="Listed $"))
    changes = [ChangeRecord(2, ChangeAction.ADD, row) for row in changed]
    changes += [ChangeRecord(2, ChangeAction.REMOVE, row) for row in rows[:2]]
    if changes:
        index = index.with_changes(2, changes)
    whole = Segments(index, 4, 32, [(0, 2**32 - 1)])  # made at once, from the overlay as is
    with patch.object(segments, "AT_ONCE", 0):  # as for a large zone: a range at a time
        parts = Segments(index, 4, 32)
    addresses = [row.start for row in rows + changed] + [b << 24 | bits for b, bits in probes]
    for address in addresses:
        for length in range(0, 33, 1):
            low = address >> (32 - length) << (32 - length)
            high = low + (1 << (32 - length)) - 1
            assert parts.answer_in(low, high) == whole.answer(low, high), (low, length)
        low, high = address >> 8 << 8, address | 255
        run, first, end = whole.span(low, high)
        expected = [
            (max(run[0][i], low), min(run[1][i], high), run[2][i]) for i in range(first, end)
        ]
        made, first, end = parts.span(low, high)
        assert list(zip(*made, strict=True))[first:end] == expected


def _row(text: str, code: str | None = None, excluded: bool = False) -> ListingRow:
    network = parse_network(text)
    return ListingRow("a", 4, network.first, network.prefixlen, excluded, code, None)


def test_what_the_arrays_cannot_tell_is_asked_of_the_segments() -> None:
    """Networks that tile a range, or that deeper ones hide whole, leave it one answer."""
    ten = parse_network("10.0.0.0/8")
    zones = [
        # a /31 of another answer, both of its addresses listed as the /8 around it
        [_row("10.0.0.0/8"), _row("10.0.0.0/31", "127.0.0.3"), _row("10.0.0.0"), _row("10.0.0.1")],
        # two /9s tile the /8, and an excluded /24 is listed again whole
        [
            *(_row("10.0.0.0/9"), _row("10.128.0.0/9"), _row("10.1.1.0/24", excluded=True)),
            *(_row("10.1.1.0/25"), _row("10.1.1.128/25")),
        ],
    ]
    for rows in zones:
        index = ZoneIndex.build(ZONE, 1, rows, ValueDefaults(txt="Listed $"))
        whole = Segments(index, 4, 32, [(0, 2**32 - 1)])
        with patch.object(segments, "AT_ONCE", 0):
            answer = Segments(index, 4, 32).answer_in(ten.first, ten.last)
        assert answer == whole.answer(ten.first, ten.last)
        assert answer and len(answer) == 1
