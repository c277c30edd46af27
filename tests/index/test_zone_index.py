"""The zone index: longest-prefix match, exclusions, categories, overlays, compaction."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dnsbl.addresses import Network, parse_address, parse_network
from dnsbl.index.values import ValueDefaults
from dnsbl.index.zone_index import EXCLUDED, ZoneIndex
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow

DEFAULT_TXT = "Listed: $"


def row(
    text: str,
    category: str = "c",
    *,
    excluded: bool = False,
    code: str | None = None,
    txt: str | None = None,
):
    net = parse_network(text)
    return ListingRow(category, net.family, net.first, net.prefixlen, excluded, code, txt)


def _change(action: ChangeAction, listing: ListingRow) -> ChangeRecord:
    return ChangeRecord(0, action, listing)


def codes(index: ZoneIndex, address: str) -> list[str]:
    ip = parse_address(address)
    return [value.code for value in index.lookup(ip.version, int(ip))]


def build(*rows: ListingRow, categories: dict[str, str] | None = None) -> ZoneIndex:
    defaults = ValueDefaults(txt=DEFAULT_TXT, categories=categories or {})
    return ZoneIndex.build("bl.example.org", 7, rows, defaults)


def test_longest_prefix_wins_and_exclusions_stop_the_match() -> None:
    index = build(
        row("10.0.0.0/8", code="127.0.0.2"),
        row("10.1.0.0/16", excluded=True),
        row("10.1.2.0/24", code="127.0.0.4"),
        row("10.1.2.3", excluded=True),
    )
    assert codes(index, "10.200.0.1") == ["127.0.0.2"]
    assert codes(index, "10.1.9.9") == []
    assert codes(index, "10.1.2.4") == ["127.0.0.4"]
    assert codes(index, "10.1.2.3") == []
    assert codes(index, "11.0.0.1") == []


def test_one_value_per_category_that_lists_the_address() -> None:
    index = build(
        row("192.0.2.0/24", "open-relay"),
        row("192.0.2.7", "spam", code="127.0.0.5"),
        row("192.0.2.7", "open-relay", excluded=True),
    )
    assert codes(index, "192.0.2.7") == ["127.0.0.5"]
    assert codes(index, "192.0.2.8") == ["127.0.0.2"]


def test_codes_and_texts_fall_back_to_category_and_zone() -> None:
    index = build(
        row("192.0.2.1", "relay-output"),
        row("192.0.2.2", "x", txt=""),
        row("192.0.2.3", "x", txt="own $"),
        categories={"relay-output": "127.0.0.3"},
    )
    [output] = index.lookup(4, parse_network("192.0.2.1").first)
    assert (output.code, output.txt) == ("127.0.0.3", DEFAULT_TXT)
    [silent] = index.lookup(4, parse_network("192.0.2.2").first)
    assert silent.txt is None
    [own] = index.lookup(4, parse_network("192.0.2.3").first)
    assert own.txt == "own $"


def test_rfc5782_test_addresses() -> None:
    index = build()
    assert codes(index, "127.0.0.2") == ["127.0.0.2"]
    assert codes(index, "::ffff:7f00:2") == ["127.0.0.2"]
    assert codes(index, "127.0.0.1") == []
    assert codes(index, "::1") == []
    covered = build(row("127.0.0.0/8", code="127.0.0.9"))
    assert codes(covered, "127.0.0.1") == []
    assert codes(covered, "127.0.0.2") == ["127.0.0.9"]


def test_ipv6_prefixes() -> None:
    index = build(
        row("2001:db8::/32"),
        row("2001:db8:1::/48", excluded=True),
        row("2001:db8:1::5", code="127.0.0.6"),
    )
    assert codes(index, "2001:db8:ffff::1") == ["127.0.0.2"]
    assert codes(index, "2001:db8:1::4") == []
    assert codes(index, "2001:db8:1::5") == ["127.0.0.6"]
    assert codes(index, "2001:db9::1") == []


def test_empty_non_terminals() -> None:
    index = build(row("192.0.2.0/24"), row("198.51.100.7"), row("203.0.113.0/24", excluded=True))
    v4 = parse_network
    assert index.has_names_under(4, v4("192.0.0.0").first, 8)
    assert index.has_names_under(4, v4("198.51.100.0").first, 24)
    assert index.has_names_under(4, v4("198.51.0.0").first, 16)
    assert not index.has_names_under(4, v4("198.52.0.0").first, 16)
    assert not index.has_names_under(4, v4("203.0.113.0").first, 24)
    assert index.has_names_under(4, v4("127.0.0.0").first, 16)  # 127.0.0.2 is always there
    assert index.has_names_under(6, 0, 4)  # ::ffff:7f00:2 lies under ::/4


def test_changes_apply_as_an_overlay_and_compact_to_the_same_answers() -> None:
    base = build(row("10.0.0.0/8"), row("10.1.0.0/16", excluded=True))
    changed = base.with_changes(
        8,
        [
            _change(ChangeAction.REMOVE, row("10.1.0.0/16", excluded=True)),
            _change(ChangeAction.ADD, row("10.1.2.0/24", code="127.0.0.9", txt="")),
            _change(ChangeAction.ADD, row("172.16.0.0/12", excluded=True)),
        ],
    )
    assert changed.serial == 8 and base.serial == 7
    assert codes(base, "10.1.9.9") == [] and codes(changed, "10.1.9.9") == ["127.0.0.2"]
    assert codes(changed, "10.1.2.1") == ["127.0.0.9"]
    compact = changed.compacted()
    assert compact.overlay_size == 0 and changed.overlay_size == 3
    for address in ("10.1.9.9", "10.1.2.1", "10.2.3.4", "172.16.0.1", "11.1.1.1"):
        assert codes(compact, address) == codes(changed, address)
    removed_again = compact.with_changes(9, [_change(ChangeAction.REMOVE, row("10.1.2.0/24"))])
    assert codes(removed_again, "10.1.2.1") == ["127.0.0.2"]


def test_from_groups_matches_build() -> None:
    from dnsbl.listings.rows import LoadGroup

    groups = [
        LoadGroup(4, 32, "c", False, None, None, [parse_network("192.0.2.1").first]),
        LoadGroup(4, 32, "c", False, "127.0.0.4", None, [parse_network("192.0.2.0").first]),
        LoadGroup(4, 24, "c", True, None, None, [parse_network("192.0.2.0").first]),
    ]
    index = ZoneIndex.from_groups("z", 1, groups)
    assert codes(index, "192.0.2.1") == ["127.0.0.2"]
    assert codes(index, "192.0.2.0") == ["127.0.0.4"]
    assert codes(index, "192.0.2.2") == []


def _reference(entries: list[tuple[Network, int]], family: int, address: int) -> int | None:
    best: tuple[int, int] | None = None
    for net, value in entries:
        if net.contains(family, address) and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, value)
    return None if best is None else best[1]


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_lookup_agrees_with_a_brute_force_reference(rnd: random.Random) -> None:
    entries: dict[Network, int] = {}
    for _ in range(rnd.randint(1, 40)):
        length = rnd.choice([8, 12, 16, 20, 24, 28, 30, 32])
        first = (rnd.getrandbits(8) << 24 | rnd.getrandbits(24)) >> (32 - length) << (32 - length)
        entries[Network(4, first & 0x3FFFFFFF | 0x40000000, length)] = rnd.choice([EXCLUDED, 1, 2])
    values = {1: "127.0.0.2", 2: "127.0.0.3"}
    rows = [
        ListingRow("c", 4, n.first, n.prefixlen, v == EXCLUDED, values.get(v), None)
        for n, v in entries.items()
    ]
    index = ZoneIndex.build("z", 1, rows)
    items = list(entries.items())
    half = len(items) // 2
    overlaid = ZoneIndex.build("z", 1, rows[:half]).with_changes(
        2,
        [
            _change(
                ChangeAction.ADD,
                ListingRow("c", 4, n.first, n.prefixlen, v == 0, values.get(v), None),
            )
            for n, v in items[half:]
        ],
    )
    for _ in range(200):
        net, _ = rnd.choice(items)
        address = rnd.randint(net.first, net.last) if rnd.random() < 0.8 else rnd.getrandbits(32)
        want = _reference(items, 4, address)
        want_codes = [] if want in (None, EXCLUDED) else [values[want]]
        got = [v.code for v in index.lookup(4, address)]
        if address in (0x7F000001, 0x7F000002):
            continue
        assert got == want_codes
        assert [v.code for v in overlaid.lookup(4, address)] == want_codes
        assert [v.code for v in overlaid.compacted().lookup(4, address)] == want_codes
