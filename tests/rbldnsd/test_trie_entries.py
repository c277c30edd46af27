"""The trie datasets' entries in typed arrays, against a dict that keeps each network's first."""

from __future__ import annotations

from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsbl.rbldnsd import trie_entries
from dnsbl.rbldnsd.data import DatasetType, RbldnsdData
from dnsbl.rbldnsd.trie_entries import TrieEntries

_VALUES = ["a", "b", "c", None]


def _networks(family: int) -> st.SearchStrategy[tuple[int, int]]:
    width = 32 if family == 4 else 128
    # Few distinct top bits and lengths: networks meet, share parts, and are given twice.
    tops = st.sampled_from([0, 1, (1 << 16) - 1])
    rest = st.sampled_from([0, 1, 2, 1 << (width - 17), (1 << (width - 16)) - 1])
    bits = st.sampled_from([0, 8, 16, 24, width - 1, width])

    def network(top: int, low: int, length: int) -> tuple[int, int]:
        first = top << (width - 16) | low
        return first >> (width - length) << (width - length) if length else 0, length

    return st.builds(network, tops, rest, bits)


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("whole", [1, 3, 1 << 18])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_trie_entries_keep_each_networks_first_and_report_the_others(
    family: int, whole: int, data: st.DataObject
) -> None:
    saved = trie_entries._WHOLE, trie_entries._CHUNK
    # A tiny `_WHOLE` splits every part, down to single addresses; a tiny `_CHUNK` moves a
    # part's entries a few at a time, from its end (the order within a piece turned round).
    trie_entries._WHOLE, trie_entries._CHUNK = whole, min(whole, 2)
    try:
        _check(family, data.draw(st.lists(st.tuples(_networks(family), st.sampled_from(_VALUES)))))
    finally:
        trie_entries._WHOLE, trie_entries._CHUNK = saved


def _check(family: int, given_: list[tuple[tuple[int, int], str | None]]) -> None:
    entries: TrieEntries[str] = TrieEntries(family)
    first: dict[tuple[int, int], str | None] = {}
    duplicates = []
    for line, ((start, bits), value) in enumerate(given_, 1):
        entries.add(start, bits, line, value)
        if (start, bits) in first:
            duplicates.append((line, start, bits))
        else:
            first[(start, bits)] = value
    assert len(entries) == len(given_)
    assert sorted(entries.resolve()) == duplicates
    kept: dict[tuple[int, int], str | None] = {}
    for _ in range(2):  # as often as asked
        kept.clear()
        for value, bits, starts in entries.groups():
            assert list(starts) == sorted(set(starts))
            for start in starts:
                assert (start, bits) not in kept
                kept[(start, bits)] = value
    assert kept == first


@pytest.mark.parametrize("lows", [True, False])
def test_ipv6_starts_are_a_sequence_of_ints(lows: bool) -> None:
    entries: TrieEntries[str] = TrieEntries(6)
    # Lower halves from the third on (the arrays of them made then), or none at all.
    addresses = [7 << 64, 1 << 64, (1 << 127) | 5, 3, (1 << 64) - 1]
    if not lows:
        addresses = [7 << 64, 1 << 64, 1 << 127, 0, 5 << 64]
    for line, address in enumerate(addresses, 1):
        entries.add(address, 128, line, "x")
    assert not list(entries.resolve())
    [(value, bits, starts)] = list(entries.groups())
    assert (value, bits, len(starts)) == ("x", 128, 5)
    assert list(starts) == sorted(addresses) == starts[:]
    assert starts[1:3] == sorted(addresses)[1:3]
    assert starts[-1] == max(addresses)
    assert bisect_left(starts, 1 << 64) == (2 if lows else 1)


def test_a_network_given_twice_is_named_by_its_own_file_and_line() -> None:
    data = RbldnsdData(DatasetType.IP4TRIE)
    for name, text in [("one", "10.0.0.0/8\n1.2.3.4\n"), ("two", "# x\n10/8 :3\n1.2.3.4\n")]:
        assert not list(data.read(name, text.splitlines()))
    data6 = RbldnsdData(DatasetType.IP6TSET)
    for name, text in [("six", "2001:db8:0:1\n2001:db8:0:1\n!2001:db8:0:1::5\n")]:
        assert not list(data6.read(name, text.splitlines()))
    assert len(list(data.entries())) == 2
    assert [str(problem) for problem in data.problems] == [
        "two:2: duplicated entry for 10.0.0.0/8 (the first one is kept)",
        "two:3: duplicated entry for 1.2.3.4/32 (the first one is kept)",
    ]
    # ip6tset merges a /64 given twice, as rbldnsd does: no warning.
    assert [(str(net), value and value.code) for net, value in data6.entries()] == [
        ("2001:db8:0:1::/64", "127.0.0.2"),
        ("2001:db8:0:1::5/128", None),
    ]
    assert not data6.problems
