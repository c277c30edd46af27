"""Zone records: a standard zone built from the index answers A queries as the index does.

Checked two ways: an in-Python resolver that applies RFC 4592 wildcard rules (closest
encloser, empty non-terminals) to the records, for many random indexes; and a real NSD loaded
with a zone file of the records, queried over UDP with dnspython.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from dnsbl.addresses import address_text, parse_network, reverse_name
from dnsbl.config import ZoneSettings
from dnsbl.index.records import Record, txt_rdata, zone_records
from dnsbl.index.txt_template import render_txt
from dnsbl.index.values import ValueDefaults
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.rows import ListingRow
from tests.conftest import ZONE, need_program, zone_config

SETTINGS = ZoneSettings(**zone_config(txt="Listed $"))


class WildcardResolver:
    """Answers A/TXT from a set of records the way an authoritative server does (RFC 4592)."""

    def __init__(self, records: Iterable[Record], zone: str) -> None:
        self.zone = zone
        self.data: dict[str, dict[str, set[str]]] = {}
        self.exists: set[str] = {zone}
        for owner, rtype, _, rdata in records:
            self.data.setdefault(owner, {}).setdefault(rtype, set()).add(rdata)
            name = owner
            while name != zone:
                self.exists.add(name)
                name = name.split(".", 1)[1]

    def resolve(self, qname: str, rtype: str) -> set[str] | None:
        """The rdata set (possibly empty: NODATA), or None for NXDOMAIN."""
        if qname in self.exists:
            return self.data.get(qname, {}).get(rtype, set())
        encloser = qname
        while encloser not in self.exists:
            encloser = encloser.split(".", 1)[1]
        source = "*." + encloser
        if source in self.exists:
            return self.data.get(source, {}).get(rtype, set())
        return None


def _row(
    text: str,
    category: str = "c",
    *,
    excluded: bool = False,
    code: str | None = None,
    txt: str | None = None,
) -> tuple[str, int, int, int, bool, str | None, str | None]:
    net = parse_network(text)
    return (category, net.family, net.first, net.prefixlen, excluded, code, txt)


def _index(*rows: tuple[str, int, int, int, bool, str | None, str | None]) -> ZoneIndex:
    listing_rows = [ListingRow(*each) for each in rows]
    return ZoneIndex.build(ZONE, 1, listing_rows, ValueDefaults(txt="Listed $"))


def _expected(index: ZoneIndex, address: int, family: int) -> set[str]:
    return {value.code for value in index.lookup(family, address)}


def _probe_addresses(index: ZoneIndex, rng: random.Random, count: int) -> list[tuple[int, int]]:
    """Addresses at and around every entry's edges, plus random ones."""
    probes: list[tuple[int, int]] = []
    for _, net, _ in index.entries():
        top = (1 << net.bits) - 1
        for address in (net.first, net.last, net.first - 1, net.last + 1):
            if 0 <= address <= top:
                probes.append((net.family, address))
        probes.append((net.family, rng.randint(net.first, net.last)))
    probes += [(4, rng.getrandbits(32)) for _ in range(count)]
    probes += [(4, int(ipaddress.IPv4Address(a))) for a in ("127.0.0.1", "127.0.0.2")]
    probes += [(6, int(ipaddress.IPv6Address(a))) for a in ("::1", "::ffff:7f00:2")]
    return probes


def _name(family: int, address: int) -> str:
    return reverse_name(
        ipaddress.ip_address(address) if family == 6 else ipaddress.IPv4Address(address), ZONE
    )


def _assert_same_answers(
    index: ZoneIndex, records: list[Record], probes: list[tuple[int, int]]
) -> None:
    resolver = WildcardResolver(records, ZONE)
    for family, address in probes:
        got = resolver.resolve(_name(family, address), "A") or set()
        assert got == _expected(index, address, family), address_text(family, address)


def test_single_addresses_become_names_and_octet_prefixes_wildcards() -> None:
    index = _index(
        _row("192.0.2.1"), _row("10.0.0.0/8", code="127.0.0.4"), _row("172.16.5.0/24", txt="")
    )
    records = list(zone_records(index, SETTINGS))
    owners = {(owner, rtype) for owner, rtype, _, _ in records}
    assert ("1.2.0.192." + ZONE, "A") in owners
    assert ("1.2.0.192." + ZONE, "TXT") in owners
    assert ("*.10." + ZONE, "A") in owners
    assert ("*.5.16.172." + ZONE, "A") in owners
    assert ("*.5.16.172." + ZONE, "TXT") not in owners
    txt = {
        rdata
        for owner, rtype, _, rdata in records
        if owner == "1.2.0.192." + ZONE and rtype == "TXT"
    }
    assert txt == {'"Listed 192.0.2.1"'}
    wildcard_txt = {
        rdata for owner, rtype, _, rdata in records if owner == "*.10." + ZONE and rtype == "TXT"
    }
    assert wildcard_txt == {'"Listed 10.0.0.0/8"'}
    assert all(ttl == SETTINGS.ttl for _, _, ttl, _ in records)


def test_the_test_address_is_listed_and_localhost_never() -> None:
    index = _index(_row("127.0.0.0/8"))
    records = list(zone_records(index, SETTINGS))
    resolver = WildcardResolver(records, ZONE)
    assert resolver.resolve("1.0.0.127." + ZONE, "A") is None
    assert resolver.resolve("2.0.0.127." + ZONE, "A") == {"127.0.0.2"}
    assert resolver.resolve("3.0.0.127." + ZONE, "A") == {"127.0.0.2"}
    assert resolver.resolve("9.9.9.127." + ZONE, "A") == {"127.0.0.2"}
    empty = list(zone_records(_index(), SETTINGS))
    v6_test = reverse_name(ipaddress.IPv6Address("::ffff:7f00:2"), ZONE)
    # with the zone's own code and text, as RFC 5782 §5 asks
    assert {(o, t) for o, t, _, _ in empty} == {
        (name, rtype) for name in ("2.0.0.127." + ZONE, v6_test) for rtype in ("A", "TXT")
    }


def test_an_exclusion_inside_a_wildcard_is_expanded_around() -> None:
    index = _index(
        _row("10.0.0.0/8"), _row("10.1.2.3", excluded=True), _row("10.9.0.0/16", excluded=True)
    )
    records = list(zone_records(index, SETTINGS))
    resolver = WildcardResolver(records, ZONE)
    assert resolver.resolve("3.2.1.10." + ZONE, "A") is None
    assert resolver.resolve("4.2.1.10." + ZONE, "A") == {"127.0.0.2"}
    assert resolver.resolve("4.4.9.10." + ZONE, "A") is None
    assert resolver.resolve("4.4.8.10." + ZONE, "A") == {"127.0.0.2"}
    # No wildcard at 10: its excluded child 9 could not be kept from it. So 254 wildcards
    # *.N.10, *.1.10, and the 255 other names of 10.1.2.0/24, and the two test addresses.
    assert sum(rtype == "A" for _, rtype, _, _ in records) == 254 + 1 + 255 + 2


def test_full_nodes_take_the_commonest_answer_as_their_wildcard() -> None:
    """Every address of a /24, and every /24 of a /16, listed with two answers: a wildcard with
    the commoner one (of equals, the first in address order), names for the others."""
    rows = [_row(f"10.1.1.{i}", code="127.0.0.3" if i % 5 == 0 else None) for i in range(256)]
    rows += [_row(f"10.2.{i}.0/24", code="127.0.0.4" if i % 2 else None) for i in range(256)]
    index = _index(*rows)
    records = list(zone_records(index, SETTINGS))
    a = {(owner, rdata) for owner, rtype, _, rdata in records if rtype == "A"}
    assert ("*.1.1.10." + ZONE, "127.0.0.2") in a
    assert ("5.1.1.10." + ZONE, "127.0.0.3") in a and ("6.1.1.10." + ZONE, "127.0.0.2") not in a
    assert ("*.2.10." + ZONE, "127.0.0.2") in a  # 128 of each: the first /24's answer
    assert ("*.1.2.10." + ZONE, "127.0.0.4") in a and ("*.2.2.10." + ZONE, "127.0.0.2") not in a
    # 10.1.1.0/24: a wildcard and 52 names; 10.2.0.0/16: a wildcard and 128 wildcards under
    # it; the two test addresses
    assert len(a) == (1 + 52) + (1 + 128) + 2
    _assert_same_answers(index, records, _probe_addresses(index, random.Random(7), 50))


def test_categories_answer_one_code_each() -> None:
    index = _index(
        _row("192.0.2.0/24", "a", code="127.0.0.3"), _row("192.0.2.7", "b", code="127.0.0.5")
    )
    resolver = WildcardResolver(zone_records(index, SETTINGS), ZONE)
    assert resolver.resolve("7.2.0.192." + ZONE, "A") == {"127.0.0.3", "127.0.0.5"}
    assert resolver.resolve("8.2.0.192." + ZONE, "A") == {"127.0.0.3"}


def test_ipv6_nibbles_and_labels_shared_with_ipv4() -> None:
    index = _index(
        _row("2001:db8::/32"),
        _row("2001:db8::1", excluded=True),
        _row("2000::/3", code="127.0.0.9"),
        _row("2.0.0.0/16", code="127.0.0.4"),
        _row("2001:db8:1::/50", code="127.0.0.6"),
    )
    records = list(zone_records(index, SETTINGS))
    rng = random.Random(3)
    probes = _probe_addresses(index, rng, 200)
    probes += [(4, rng.randint(0x02000000, 0x02FFFFFF)) for _ in range(300)]
    probes += [(6, rng.randint(0x2000 << 112, (0x4000 << 112) - 1)) for _ in range(300)]
    _assert_same_answers(index, records, probes)


def _random_rows(
    rng: random.Random,
) -> list[tuple[str, int, int, int, bool, str | None, str | None]]:
    rows = []
    base = rng.choice([0x0A000000, 0xC0000000, 0x02000000])
    for _ in range(rng.randint(1, 40)):
        length = rng.choice([8, 12, 16, 20, 23, 24, 25, 30, 31, 32, 32, 32])
        first = (base | rng.getrandbits(24)) >> (32 - length) << (32 - length)
        rows.append(
            (
                rng.choice("ab"),
                4,
                first,
                length,
                rng.random() < 0.25,
                rng.choice([None, "127.0.0.3", "127.0.0.4"]),
                rng.choice([None, "", "t $"]),
            )
        )
    for _ in range(rng.randint(0, 10)):
        length = rng.choice([3, 16, 32, 47, 48, 64, 127, 128])
        first = ((0x2001 << 112) | rng.getrandbits(112)) >> (128 - length) << (128 - length)
        rows.append(("a", 6, first, length, rng.random() < 0.25, None, None))
    return rows


def test_random_indexes_answer_alike() -> None:
    rng = random.Random(20261128)
    for _ in range(25):
        index = _index(*_random_rows(rng))
        _assert_same_answers(
            index, list(zone_records(index, SETTINGS)), _probe_addresses(index, rng, 100)
        )


def test_txt_rdata_quotes_escapes_and_splits() -> None:
    assert txt_rdata('say "hi" \\ ok') == '"say \\"hi\\" \\\\ ok"'
    assert txt_rdata("é") == '"\\195\\169"'
    assert txt_rdata("x" * 300) == f'"{"x" * 255}" "{"x" * 45}"'


# -- a real NSD -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _zone_file(records: Iterable[Record]) -> str:
    lines = [
        f"$ORIGIN {ZONE}.",
        "$TTL 2100",
        "@ SOA ns1.example.org. hostmaster.example.org. 1 3600 600 604800 300",
        "@ NS ns1.example.org.",
    ]
    lines += [f"{owner}. {ttl} IN {rtype} {rdata}" for owner, rtype, ttl, rdata in records]
    return "\n".join(lines) + "\n"


def test_nsd_serves_the_records_with_the_index_answers(tmp_path: Path) -> None:
    nsd = need_program("nsd")
    checkzone = need_program("nsd-checkzone")
    rng = random.Random(7)
    rows = [
        *_random_rows(rng),
        _row("198.51.100.0/24", txt='quote " and $'),
        _row("198.51.100.9", excluded=True),
        _row("2001:db8::/48"),
        _row("198.51.101.0/24", txt="whole $"),
    ]
    index = _index(*rows)
    zone_path = tmp_path / "zone"
    zone_path.write_text(_zone_file(zone_records(index, SETTINGS)))
    subprocess.run([checkzone, ZONE, str(zone_path)], check=True, capture_output=True)
    port = _free_port()
    (tmp_path / "nsd.conf").write_text(
        f'server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: ""\n'
        f'  chroot: ""\n  zonesdir: "{tmp_path}"\n  pidfile: "{tmp_path}/nsd.pid"\n'
        f'  database: ""\n  xfrdfile: "{tmp_path}/xfrd.state"\n'
        f'  zonelistfile: "{tmp_path}/zone.list"\n  logfile: "{tmp_path}/nsd.log"\n'
        "  server-count: 1\n  verbosity: 0\n"
        f"remote-control:\n  control-enable: no\nzone:\n  name: {ZONE}\n  zonefile: zone\n"
    )
    process = subprocess.Popen(
        [nsd, "-d", "-c", str(tmp_path / "nsd.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(port)
        for family, address in _probe_addresses(index, rng, 300)[:1500]:
            name = _name(family, address)
            reply = dns.query.udp(
                dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2
            )
            got = {rr.to_text() for rrset in reply.answer for rr in rrset}
            assert got == _expected(index, address, family), name
            if got:
                assert reply.rcode() == dns.rcode.NOERROR
        # Explicit names (the /24 has an exclusion) render the address; wildcards the network.
        for listed, text in (
            ("198.51.100.7", render_txt('quote " and $', "198.51.100.7")),
            ("198.51.101.7", "whole 198.51.101.0/24"),
        ):
            name = _name(4, parse_network(listed).first)
            reply = dns.query.udp(
                dns.message.make_query(name, "TXT"), "127.0.0.1", port=port, timeout=2
            )
            assert [b"".join(rr.strings).decode() for rrset in reply.answer for rr in rrset] == [
                text
            ]
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    query = dns.message.make_query(ZONE, dns.rdatatype.SOA)
    while True:
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            return
        except (OSError, dns.exception.Timeout):
            if time.monotonic() > deadline:
                pytest.fail("nsd did not start")
            time.sleep(0.1)
