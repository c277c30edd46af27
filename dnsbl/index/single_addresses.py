"""A zone of nothing but single IPv4 addresses, as its records show it: one name per address.

Large zones are mostly that: millions of listed /32s in one category. For them the label walk
of `dnsbl.index.records` (segments, children, wildcards) always comes to the same result — an
explicit name for every listed address and nothing else — and costs most of a zone
transfer's time. `single_addresses` recognises such a zone and hands back its sorted arrays,
so that a transfer can encode the records straight from them (`dnsbl.dns.transfer`).

A zone qualifies when IPv4 has one table holding only /32 entries, IPv6 has none, and no /24
has all 256 addresses listed (there the walk would write a wildcard). The RFC 5782 test
addresses are answered as the walk answers them: 127.0.0.2 (and ::ffff:7f00:2) always, with
the zone's own listing if it has one; 127.0.0.1 never.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dnsbl.index.values import NEVER_LISTED, TEST_LISTED, Value
from dnsbl.index.zone_index import ZoneIndex

_FULL_OCTET = bytes(range(256))


@dataclass(frozen=True, slots=True)
class SingleAddresses:
    """The listed addresses of a zone of single IPv4 addresses, and the test addresses."""

    starts: Any  # array('I'), sorted
    value_ids: array[int]
    values: tuple[Value | None, ...]  # by id; None: an exclusion, which has no name
    tests: tuple[tuple[int, int, tuple[Value, ...]], ...]  # (family, address, answer)

    def v4(self) -> Iterator[tuple[int, Value]]:
        """(address, value) of every listed IPv4 address, in address order, 127.0.0.2 with the
        answer the zone gives it."""
        values = self.values
        test4 = TEST_LISTED[4]
        never = NEVER_LISTED[4]
        pending = [(address, answer) for family, address, answer in self.tests if family == 4]
        for address, value_id in zip(self.starts, self.value_ids, strict=True):
            if pending and address >= test4:
                yield from ((test4, tested) for tested in pending.pop()[1])
                if address == test4:
                    continue
            value = values[value_id]
            if value is not None and address not in never:
                yield address, value
        for _, answer in pending:
            yield from ((test4, tested) for tested in answer)

    def v6_tests(self) -> Iterator[tuple[int, Value]]:
        """(address, value) of the IPv6 test address that is always listed."""
        for family, address, answer in self.tests:
            if family == 6:
                for value in answer:
                    yield address, value


def single_addresses(index: ZoneIndex) -> SingleAddresses | None:
    """`index` as single addresses, or None when it holds anything else (see the module)."""
    tables = [(family, table) for (_, family), table in index.tables.items()]
    if any(family == 6 for family, _ in tables) or len(tables) > 1:
        return None
    if index.overlay_size:
        index = index.compacted()
        tables = [(family, table) for (_, family), table in index.tables.items()]
    starts: Any = array("I")
    value_ids = array("B")
    if tables:
        levels = tables[0][1].levels
        if set(levels) - {32}:
            return None
        if 32 in levels:
            starts, value_ids = levels[32].starts, levels[32].values
    # The last octet of each address, as bytes: a /24 listed whole has its 256 in a row.
    low = starts.tobytes()[::4] if sys.byteorder == "little" else starts.tobytes()[3::4]
    if _FULL_OCTET in low:
        return None
    tests = tuple(
        (family, TEST_LISTED[family], index.lookup(family, TEST_LISTED[family]))
        for family in (4, 6)
    )
    return SingleAddresses(starts, value_ids, index.values, tests)
