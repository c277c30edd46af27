"""Query names of a blocklist zone: the address or address prefix a name stands for.

Below the apex, `d.c.b.a` (decimal octets) names an IPv4 address and 32 hex nibbles an IPv6
address, least significant first (RFC 5782). Fewer labels name a prefix: an empty non-terminal
when some listed address lies under it, else nothing. A name of one to four single-digit labels
reads both ways (an IPv4 prefix and an IPv6 nibble prefix), so both are asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple

from dnsbl.index.values import Value
from dnsbl.index.zone_index import ZoneIndex

# Strict forms only: "01" is a different DNS name from "1" and names nothing.
OCTETS: dict[bytes, int] = {str(i).encode(): i for i in range(256)}
NIBBLES: dict[bytes, int] = {c.encode(): int(c, 16) for c in "0123456789abcdef"}


class NameState(IntEnum):
    """What a name under a zone is: absent, an existing name without records, or listed."""

    NXDOMAIN = 0
    NODATA = 1
    LISTED = 2


class NameLookup(NamedTuple):
    """What one name is, with the address and values when it is listed."""

    state: NameState
    family: int = 0
    address: int = 0
    values: tuple[Value, ...] = ()


NOT_FOUND = NameLookup(NameState.NXDOMAIN)
EMPTY_NON_TERMINAL = NameLookup(NameState.NODATA)


def readings(labels: Sequence[bytes]) -> list[tuple[int, int, int]]:
    """Every (family, first address, prefix length) that `labels` can name.

    `labels` are lowercase and relative to the zone, leftmost first (the least significant
    octet or nibble first).
    """
    found: list[tuple[int, int, int]] = []
    count = len(labels)
    if 0 < count <= 4:
        octets = [OCTETS.get(label) for label in labels]
        if None not in octets:
            start = 0
            for octet in reversed(octets):
                start = start << 8 | octet  # type: ignore[operator]
            found.append((4, start << 8 * (4 - count), 8 * count))
    if 0 < count <= 32:
        nibbles = [NIBBLES.get(label) for label in labels]
        if None not in nibbles:
            start = 0
            for nibble in reversed(nibbles):
                start = start << 4 | nibble  # type: ignore[operator]
            found.append((6, start << 4 * (32 - count), 4 * count))
    return found


def look_up(index: ZoneIndex, labels: Sequence[bytes]) -> NameLookup:
    """What the name `labels` is (relative to the zone, at least one label)."""
    exists = False
    for family, start, length in readings(labels):
        if length == (32 if family == 4 else 128):
            values = index.lookup(family, start)
            if values:
                return NameLookup(NameState.LISTED, family, start, values)
        elif not exists:
            exists = index.has_names_under(family, start, length)
    return EMPTY_NON_TERMINAL if exists else NOT_FOUND
