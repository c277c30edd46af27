"""Random zones and queries for the DNS property tests (the hot path's, the native engine's)."""

from __future__ import annotations

import ipaddress

import dns.flags
import dns.message
from hypothesis import strategies as st

from dnsbl.listings.rows import ListingRow as Row
from tests.dns_support import ZONE, row

CHILD = "v2." + ZONE
QTYPES = ["A", "TXT", "ANY", "AAAA", "MX", "SOA", "NS", "PTR"]
TEMPLATES = [None, "", "Listed $", "x" * 300 + " $ " + "y" * 40, "no address", "$$"]
CODES = [None, "127.0.0.3", "127.0.0.4"]


@st.composite
def zone_rows(draw: st.DrawFn) -> list[Row]:
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        family = draw(st.sampled_from([4, 6]))
        bits = 32 if family == 4 else 128
        length = draw(st.sampled_from([bits, bits, bits - 8, bits - 4, bits - 1, 16, 8, 4]))
        address = draw(st.integers(0, 2**bits - 1)) >> (bits - length) << (bits - length)
        network = ipaddress.ip_network((address, length))
        rows.append(
            row(
                str(network),
                draw(st.sampled_from(["manual", "open-relay", "relay-output"])),
                code=draw(st.sampled_from(CODES)),
                txt=draw(st.sampled_from(TEMPLATES)),
                excluded=draw(st.booleans()) and draw(st.booleans()),
            )
        )
    return rows


def near(rows: list[Row]) -> st.SearchStrategy[tuple[int, int]]:
    """Addresses inside or next to the listed networks, and anywhere."""
    anywhere = st.one_of(
        st.tuples(st.just(4), st.integers(0, 2**32 - 1)),
        st.tuples(st.just(6), st.integers(0, 2**128 - 1)),
        st.sampled_from([(4, 0x7F000002), (4, 0x7F000001), (6, 1), (6, 0xFFFF7F000002)]),
    )
    if not rows:
        return anywhere
    close = st.builds(
        lambda r, delta: (
            r.family,
            max(0, min(r.start + delta, 2 ** (32 if r.family == 4 else 128) - 1)),
        ),
        st.sampled_from(rows),
        st.integers(-2, 300),
    )
    return st.one_of(close, close, anywhere)


def query_name(family: int, address: int, labels: int, zone: str) -> str:
    if family == 4:
        parts = [str((address >> shift) & 255) for shift in (0, 8, 16, 24)]
    else:
        parts = list(format(address, "032x"))[::-1]
    return ".".join([*parts[len(parts) - labels :], zone]) if labels else zone


def mixed_case(name: str, mask: int) -> str:
    """`name` with the letters whose bit is set in `mask` in upper case."""
    return "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate(name))


@st.composite
def query(draw: st.DrawFn, rows: list[Row]) -> bytes:
    family, address = draw(near(rows))
    full = 4 if family == 4 else 32
    labels = draw(st.sampled_from([full, full, full, full - 1, 1, 0]))
    zone = draw(st.sampled_from([ZONE, ZONE, CHILD, "example.com"]))
    name = query_name(family, address, labels, zone)
    name = mixed_case(name, draw(st.sampled_from([0, 0, 2**200 - 1, 0x5A5A5A5A5A5A5A5A5A5A5A5A])))
    edns = draw(st.sampled_from([None, 0, 0, 1]))
    message = dns.message.make_query(
        name,
        draw(st.sampled_from(QTYPES)),
        use_edns=edns if edns is not None else False,
        payload=draw(st.sampled_from([512, 1232, 4096, 100])),
        id=draw(st.integers(0, 65535)),
    )
    if draw(st.booleans()):
        message.flags &= ~dns.flags.RD
    if draw(st.booleans()):
        message.flags |= dns.flags.CD | dns.flags.AD
    return message.to_wire()
