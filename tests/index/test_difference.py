"""The IXFR difference from the changes: exactly what differs between the two whole zones.

`zone_difference` only reads the names that hold the changed networks; checked against
`zone_records` of both whole zones over random zones and changes (hypothesis): nested CIDRs,
exclusions, several categories, IPv6 beside IPv4 (including names the two share), networks
wider than one label.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsbl.addresses import parse_network
from dnsbl.config import ZoneSettings
from dnsbl.index.difference import CLIMB_LIMIT, zone_difference
from dnsbl.index.records import top_labels, zone_records
from dnsbl.index.values import ValueDefaults
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow
from tests.conftest import ZONE, zone_config

SETTINGS = ZoneSettings(**zone_config(txt="Listed $"))

# Listings crowd a few networks so that they nest, exclude each other and share /24s; 2.1.x.x
# and 2123::/16 share the names 1.2.ZONE … (single-digit octets are nibbles too).
_V4_BASES = [0x0A000000, 0xC0A80000, 0x02000000, 0x02010203]
_V6_BASES = [0x2001 << 112, 0x2123 << 112, 0x2100 << 112]


def _v4(base: int, bits: int, length: int) -> tuple[int, int, int]:
    spread = 24 if base & 0xFFFF == 0 else 8
    first = (base | bits & ((1 << spread) - 1)) >> (32 - length) << (32 - length)
    return 4, first, length


def _v6(base: int, bits: int, length: int) -> tuple[int, int, int]:
    first = (base | bits & ((1 << 112) - 1)) >> (128 - length) << (128 - length)
    return 6, first, length


_networks = st.one_of(
    st.builds(
        _v4,
        st.sampled_from(_V4_BASES),
        st.integers(0, 2**24 - 1),
        st.sampled_from([7, 8, 12, 16, 20, 23, 24, 25, 30, 31, 32, 32, 32]),
    ),
    st.builds(
        _v6,
        st.sampled_from(_V6_BASES),
        st.integers(0, 2**112 - 1),
        st.sampled_from([3, 8, 16, 32, 47, 48, 64, 127, 128]),
    ),
)
_rows = st.builds(
    lambda category, network, excluded, code, txt: ListingRow(
        category, *network, excluded, code, txt
    ),
    st.sampled_from("abc"),
    _networks,
    st.booleans(),
    st.sampled_from([None, "127.0.0.3", "127.0.0.4"]),
    st.sampled_from([None, "", "t $"]),
)


def _index(rows: list[ListingRow]) -> ZoneIndex:
    return ZoneIndex.build(ZONE, 1, rows, ValueDefaults(txt="Listed $"))


def _assert_difference(old: ZoneIndex, new: ZoneIndex) -> None:
    """Both ways of finding the names: followed up from each network, and (for a change of
    many networks) the top-level labels they touch."""
    assert new.changed is not None
    whole_old = set(zone_records(old, SETTINGS))
    whole_new = set(zone_records(new, SETTINGS))
    for climb_limit in (CLIMB_LIMIT, 0):
        found = zone_difference(old, new, SETTINGS, new.changed[1], climb_limit)
        assert found == (whole_old - whole_new, whole_new - whole_old)


# Each example renders both whole zones twice (~0.6 s on the CI machine at its slowest): 80
# of them keep this test near 50 s of the suite's run, where 150 took 96 s.
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(_rows, min_size=1, max_size=30),
    removed=st.sets(st.integers(0, 29), max_size=10),
    added=st.lists(_rows, max_size=6),
)
def test_the_difference_is_what_differs_between_the_whole_zones(
    rows: list[ListingRow], removed: set[int], added: list[ListingRow]
) -> None:
    old = _index(rows)
    changes = [ChangeRecord(2, ChangeAction.REMOVE, rows[i]) for i in removed if i < len(rows)]
    changes += [ChangeRecord(2, ChangeAction.ADD, row) for row in added]
    _assert_difference(old, old.with_changes(2, changes))


def test_one_address_in_a_crowded_zone() -> None:
    """The common case of a large zone: single addresses, one listed and one delisted, in /24s
    that were empty, crowded, or hold the one address alone."""
    rng = random.Random(1995)
    addresses = sorted({0x0A000000 | rng.getrandbits(18) for _ in range(3000)})
    rows = [ListingRow("c", 4, address, 32, False, None, None) for address in addresses]
    old = _index(rows)
    for added, removed in [(0x0A3F0001, addresses[0]), (addresses[5] + 1, addresses[6])]:
        changes = [
            ChangeRecord(2, ChangeAction.ADD, ListingRow("c", 4, added, 32, False, None, None)),
            ChangeRecord(2, ChangeAction.REMOVE, rows[addresses.index(removed)]),
        ]
        _assert_difference(old, old.with_changes(2, changes))


def test_an_apex_that_may_hold_a_wildcard_needs_the_whole_zone() -> None:
    old = _index([ListingRow("c", 4, 0xC0000201, 32, False, None, None)])
    new = old.with_changes(
        2, [ChangeRecord(2, ChangeAction.ADD, ListingRow("c", 6, 0xF << 124, 4, False, None, None))]
    )
    assert zone_difference(old, new, SETTINGS, [parse_network("f000::/4")]) is None
    assert top_labels(parse_network("10.0.0.0/7")) == {"10", "11"}
    assert top_labels(parse_network("2000::/3")) == {"2", "3"}
