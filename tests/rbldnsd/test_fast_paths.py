"""The reader's fast paths (blocks of addresses, single-address lines, singles and the
units of ranges and CIDRs as arrays) agree with the general parser taking every line as
units, one by one: the same entries, ties and problems."""

from __future__ import annotations

from array import array
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsbl.rbldnsd import data as data_module
from dnsbl.rbldnsd import singles as singles_module
from dnsbl.rbldnsd.data import DatasetType, LineProblem, RbldnsdData
from dnsbl.rbldnsd.singles import Singles, sorted_distinct
from dnsbl.rbldnsd.syntax import BadLine

# Few addresses, so that lines meet: the same address twice, inside a range or a CIDR.
_ADDRESSES = st.sampled_from(
    [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "10.0.1.7",
        "11.1.2.3",
        "200.1.1.1",
        "010.0.0.1",  # leading zero: the general way
        "256.0.0.1",  # bad octet
        "10.0.0",  # a /24
        "10.0/16",
        "10.0.0.0/30",
        "10.0.0.0/31",
        "10.0.0.1-3",
        "10.0.0.2-10.0.1.1",
        "9.255.255.255-10.0.0.1",
        "11.1.2.3/32",
        "bogus",
        "2001:db8::1",
    ]
)
_VALUES = st.sampled_from(
    ["", " :3", ":3", " :127.0.0.4:text $", "\t:5:", " some text", " # comment", " ;x", " :300"]
)
_BLANKS = st.sampled_from(["", " ", "\t", "  ", " \t", "\r"])
_ENTRY = st.builds(
    lambda blank, bang, address, value, trail: f"{blank}{bang}{address}{value}{trail}",
    _BLANKS,
    st.sampled_from(["", "", "", "!", "! "]),
    _ADDRESSES,
    _VALUES,
    _BLANKS,
)
_PLAIN = st.builds(lambda blank, address: f"{blank}{address}", _BLANKS, _ADDRESSES)
_OTHER = st.sampled_from(
    [":127.0.0.5:default $", ":6", "# comment", "; comment", "", "$1 one", "#$ odd", "  "]
)
_LINE = st.one_of(_PLAIN, _PLAIN, _ENTRY, _ENTRY, _OTHER)


def _general(files: list[list[str]], kind: DatasetType) -> RbldnsdData:
    """The files read by the general parser alone, line by line (no fast path), with every
    ip4set single address taken as the unit it is, in the order read (no arrays)."""
    data = RbldnsdData(kind)
    units = data._ip4set
    units.ranges = None  # every unit of a range or CIDR in the dict, none in arrays
    add_range = units.add_range

    def unit_by_unit(first: int, last: int, value: object) -> None:
        if first == last:
            units.add(first, value)  # type: ignore[arg-type]
        else:
            add_range(first, last, value)  # type: ignore[arg-type]

    setattr(units, "add_range", unit_by_unit)  # noqa: B010 -- this instance's only
    for i, lines in enumerate(files, 1):
        data.kind = kind
        data._default = data_module._GLOBAL_DEFAULT  # each file starts with rbldnsd's
        data._file_starts.append(data.lines)
        data._file_names.append(f"f{i}")
        for number, raw in enumerate(lines, 1):
            line = raw.strip(" \t\r\n")
            if not line or (line[0] in "#;" and not line.startswith("#$")):
                continue
            data._at = data.lines + number
            try:
                warning = data._line(line)
            except BadLine as exc:
                warning = str(exc)
            if warning:
                data.problems.append(LineProblem(f"f{i}", number, warning))
        data.lines += len(lines)
    return data


def _fast(files: list[list[str]], kind: DatasetType) -> RbldnsdData:
    data = RbldnsdData(kind)
    for i, lines in enumerate(files, 1):
        list(data.read(f"f{i}", [line + "\n" for line in lines]))
    return data


def _written(data: RbldnsdData) -> Counter[tuple[object, ...]]:
    """What an import of `data` writes (rank, value, family, prefix length, start), counted
    (asked once and last, as an import asks)."""
    found: Counter[tuple[object, ...]] = Counter()
    for rank, value, family, length, starts in data.packed_groups(last=True):
        for start in starts:
            found[(rank, value, family, length, start)] += 1
    return found


@pytest.mark.parametrize("block", [2, 5, 16384])
@settings(max_examples=150, deadline=None)
@given(files=st.lists(st.lists(_LINE, max_size=30), min_size=1, max_size=2))
def test_the_fast_paths_read_what_the_general_parser_reads(
    block: int, files: list[list[str]]
) -> None:
    saved = data_module._BLOCK
    data_module._BLOCK = block  # small blocks: many of plain addresses, and their edges
    try:
        for kind in (DatasetType.AUTO, DatasetType.IP4SET):
            fast, general = _fast(files, kind), _general(files, kind)
            assert fast.problems == general.problems
            assert fast.lines == general.lines
            assert _written(fast) == _written(general)
            assert fast.problems == general.problems  # and the duplicates found at the end
    finally:
        data_module._BLOCK = saved


def test_a_block_of_addresses_after_ranges_keeps_the_order_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blocks of plain addresses go in at C speed; a range between them still meets each one
    # in the order of the lines, however the blocks fall.
    lines = ["10.0.0.1", "10.0.0.2", "10.0.0.0/30 :4", "10.0.0.2", "10.0.0.3", ":5", "10.0.0.1"]
    for block in (1, 2, 3, 7):
        monkeypatch.setattr(data_module, "_BLOCK", block)
        assert _written(_fast([lines], DatasetType.IP4SET)) == _written(
            _general([lines], DatasetType.IP4SET)
        )


def test_singles_tell_apart_more_values_than_two_bytes_number() -> None:
    singles: Singles[object] = Singles()
    values = [object() for _ in range(70_000)]
    for i, value in enumerate(values):
        singles.add(0x0A000000 + i, value)
    singles.add(0x0A000000, values[0])
    found = {}
    for _, bucket, numbers in singles.buckets_taken():
        for address, given_values in singles.runs(bucket, numbers):
            found[address] = [value for _, value in given_values]
    assert found[0x0A000000] == [values[0], values[0]]
    assert found[0x0A000000 + 69_999] == [values[69_999]]
    assert len(found) == 70_000


def test_an_octet_of_a_few_values_is_picked_apart_by_value() -> None:
    lines = ["10.0.0.9", "10.0.0.2 :3", "10.0.0.1", ":5", "10.0.0.4", "10.0.0.3 :3", "11.0.0.1"]
    fast = _fast([lines], DatasetType.IP4SET)
    assert _written(fast) == _written(_general([lines], DatasetType.IP4SET))
    codes = {
        (value.code if value else None, start)
        for _, value, _, _, starts in fast.packed_groups()
        for start in starts
    }
    assert codes == {
        ("127.0.0.2", 0x0A000009),
        ("127.0.0.2", 0x0A000001),
        ("127.0.0.3", 0x0A000002),
        ("127.0.0.3", 0x0A000003),
        ("127.0.0.5", 0x0A000004),
        ("127.0.0.5", 0x0B000001),
    }


# Ranges and CIDRs of every level that meet: the same /24 or /16 twice, one inside another,
# adjacent ones from different lines, and single addresses inside them.
_NETWORKS = st.sampled_from(
    [
        "10.1.2.0/24",
        "10.1.3.0/24",
        "10.1.2",
        "10.1/16",
        "10.0/15",
        "10.1.0.0/23",
        "10.1.2.0-10.1.4.255",
        "10.1.1.128-10.1.3.3",
        "10/8",
        "10.0.0.0-11.255.255.255",
        "9.255.255.0-10.0.1.255",
        "10.1.2.0/25",
        "10.1.2.7",
        "10.1.3.9",
        "11.0.0.0/20",
        "11.0.16.0/20",
        "200.0.0.0/6",
    ]
)
_UNITS_LINE = st.one_of(
    st.builds(
        lambda bang, network, value: f"{bang}{network}{value}",
        st.sampled_from(["", "", "", "!"]),
        _NETWORKS,
        st.sampled_from(["", " :3", " :4:four", " :5", ""]),
    ),
    st.sampled_from([":127.0.0.6:six", ":3"]),
)


@settings(max_examples=300, deadline=None)
@given(files=st.lists(st.lists(_UNITS_LINE, max_size=40), min_size=1, max_size=2))
def test_units_of_ranges_as_arrays_answer_as_units_one_by_one(files: list[list[str]]) -> None:
    for kind in (DatasetType.AUTO, DatasetType.IP4SET):
        fast, general = _fast(files, kind), _general(files, kind)
        assert fast.problems == general.problems
        assert _written(fast) == _written(general)


@settings(max_examples=40, deadline=None)  # each sorts in a bitmap of 2 MB
@given(
    octet=st.integers(0, 255),
    lows=st.lists(
        st.sampled_from([0, 1, 7, 8, 255, 256, 1 << 23, (1 << 24) - 1])
        | st.integers(0, (1 << 24) - 1)
    ),
)
def test_a_large_bucket_sorted_in_a_bitmap_comes_out_as_sorted_distinct(
    octet: int, lows: list[int]
) -> None:
    bucket = array("I", [octet << 24 | low for low in lows])
    saved = singles_module._BITMAP_FROM
    singles_module._BITMAP_FROM = 0  # every bucket the bitmap way
    try:
        assert list(sorted_distinct(bucket)) == sorted(set(bucket))
    finally:
        singles_module._BITMAP_FROM = saved
