"""AXFR/IXFR to transfer peers only, and NOTIFY on a new serial, over real sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable

import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.xfr
import dns.zone
import pytest
from dnslib import DNSRecord

from dnsbl.dns import transfer
from dnsbl.dns.server import DnsServer
from dnsbl.dns.transfer import txt_rdata_from_text
from dnsbl.dns.zones import ZoneTable
from dnsbl.index.single_addresses import single_addresses
from tests.dns_support import ZONE, ask, change, make_index, row, running, zone_settings

pytestmark = pytest.mark.usefixtures("dns_engine")  # each engine in turn

ROWS = [row("10.0.0.1"), row("192.0.2.0/24", "relay-output", txt="Net $"), row("2001:db8::1")]


def _xfr(server: DnsServer, **kwargs: object) -> list[dns.message.Message]:
    host, port = server.endpoints[0]
    return list(dns.query.xfr(host, ZONE, port=port, timeout=5, lifetime=30, **kwargs))  # type: ignore[arg-type]


def _records(messages: list[dns.message.Message]) -> list[dns.rrset.RRset]:
    return [rrset for message in messages for rrset in message.answer]


async def test_axfr_to_a_peer() -> None:
    async with running([make_index(ROWS, serial=12)]) as server:
        messages = await asyncio.to_thread(_xfr, server)
        records = _records(messages)
        assert records[0].rdtype == records[-1].rdtype == dns.rdatatype.SOA
        assert records[0][0].serial == records[-1][0].serial == 12
        zone = dns.zone.Zone(ZONE)
        # dnspython's own AXFR client builds the same zone a secondary would.
        host, port = server.endpoints[0]
        await asyncio.to_thread(dns.query.inbound_xfr, host, zone, port=port, timeout=5)
        assert [ns.to_text() for ns in zone.find_rdataset("@", "NS")] == [
            "ns1.example.org.",
            "ns2.example.org.",
        ]
        assert zone.find_rdataset("1.0.0.10", "A")[0].to_text() == "127.0.0.2"
        assert zone.find_rdataset("*.2.0.192", "A")[0].to_text() == "127.0.0.3"
        assert zone.find_rdataset("*.2.0.192", "TXT")[0].to_text() == '"Net 192.0.2.0/24"'
        v6 = "1." + "0." * 23 + "8.b.d.0.1.0.0.2"
        assert zone.find_rdataset(v6, "A")[0].to_text() == "127.0.0.2"
        assert server.counts[(ZONE, "AXFR", "NOERROR")] == 2  # dns.query.xfr and inbound_xfr


async def test_big_zone_takes_several_messages() -> None:
    rows = [row(f"10.{i // 256}.{i % 256}.1", txt="x" * 80 + " $") for i in range(1500)]
    async with running([make_index(rows, serial=3)]) as server:
        messages = await asyncio.to_thread(_xfr, server)
        assert len(messages) > 1
        assert all(len(message.to_wire()) <= 65535 for message in messages)
        records = _records(messages)
        assert records[0].rdtype == records[-1].rdtype == dns.rdatatype.SOA
        a_records = [r for r in records if r.rdtype == dns.rdatatype.A]
        assert len(a_records) == 1502  # and 127.0.0.2, ::ffff:7f00:2


async def test_axfr_refused_to_others_and_over_udp() -> None:
    async with running([make_index(ROWS)], transfer_peers=["192.0.2.0/24", "::1"]) as server:
        for tcp in (True, False):
            for rdtype in ("AXFR", "IXFR"):
                reply = await ask(server, ZONE, rdtype, tcp=tcp, edns=None)
                assert reply.rcode() == dns.rcode.REFUSED
                assert not reply.answer


async def test_axfr_of_a_name_below_the_apex_is_refused() -> None:
    async with running([make_index(ROWS)]) as server:
        reply = await ask(server, "10." + ZONE, "AXFR", tcp=True, edns=None)
        assert reply.rcode() == dns.rcode.REFUSED


def _ixfr_query(serial: int) -> dns.message.Message:
    query = dns.message.make_query(ZONE, "IXFR")
    soa = dns.rrset.from_text(ZONE + ".", 0, "IN", "SOA", f". . {serial} 0 0 0 0")
    query.authority.append(soa)
    return query


async def test_ixfr() -> None:
    async with running([make_index(ROWS, serial=20)]) as server:
        host, port = server.endpoints[0]
        current = await dns.asyncquery.tcp(_ixfr_query(20), host, port=port, timeout=5)
        assert [r.rdtype for r in current.answer] == [dns.rdatatype.SOA]
        assert current.answer[0][0].serial == 20
        messages = await asyncio.to_thread(_xfr, server, rdtype=dns.rdatatype.IXFR, serial=15)
        records = _records(messages)
        assert records[0][0].serial == records[-1][0].serial == 20
        assert any(r.rdtype == dns.rdatatype.A for r in records)


async def _axfr_zone(server: DnsServer) -> dns.zone.Zone:
    zone = dns.zone.Zone(ZONE)
    host, port = server.endpoints[0]
    await asyncio.to_thread(dns.query.inbound_xfr, host, zone, port=port, timeout=5)
    return zone


def _text(zone: dns.zone.Zone) -> list[str]:
    return sorted(zone.to_text().splitlines())


async def test_ixfr_sends_the_difference_that_makes_the_new_zone() -> None:
    # 300 more names under 172.*, which the changes do not touch
    base = make_index([*ROWS, *(row(f"172.16.{i >> 8}.{i & 255}") for i in range(300))], serial=20)
    value = {"code": "127.0.0.2", "txt": "Listed $"}
    steps = [
        [
            change("add", "10.0.0.2", "open-relay", **value),
            change("add", "10.1.0.0/16", "open-relay", **value),
            change("add", "10.1.2.3", "open-relay", excluded=True),
        ],
        [
            change("remove", "10.0.0.1"),
            change("add", "2001:db8::/48", "open-relay", **value),
        ],
    ]
    async with running([base]) as server:
        secondary = await _axfr_zone(server)  # at serial 20, as a secondary holds it
        index = base
        for serial, changes in enumerate(steps, 21):
            index = index.with_changes(serial, changes)
            server.publish(index)
        host, port = server.endpoints[0]
        # On the wire: the new SOA, the secondary's SOA, deletions, the new SOA, additions.
        raw = await dns.asyncquery.tcp(
            _ixfr_query(20), host, port=port, timeout=5, one_rr_per_rrset=True
        )
        soas = [r[0].serial for r in raw.answer if r.rdtype == dns.rdatatype.SOA]
        assert soas[:2] == [22, 20] and soas[-1] == 22
        # the names under 10.* and 2.* that changed (the excluded 10.1.2.3 costs its 255
        # neighbours), not the 600 records under 172.*
        assert len(raw.answer) < 600
        # dnspython's IXFR client applies it to the zone at 20 and gets what an AXFR gives.
        query, _ = dns.xfr.make_query(secondary)
        await asyncio.to_thread(
            dns.query.inbound_xfr, host, secondary, query=query, port=port, timeout=5
        )
        assert _text(secondary) == _text(await _axfr_zone(server))
        assert secondary.get_rdataset("1.0.0.10", "A") is None
        assert secondary.find_rdataset("2.0.0.10", "A")[0].to_text() == "127.0.0.2"
        # A serial this node never published (or no longer holds) gets the whole zone.
        whole = await dns.asyncquery.tcp(
            _ixfr_query(7), host, port=port, timeout=5, one_rr_per_rrset=True
        )
        assert whole.answer[1].rdtype != dns.rdatatype.SOA


class _Secondary:
    """A UDP socket on 127.0.0.1 that records the NOTIFY messages it gets."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    async def receive(self, timeout: float = 30) -> tuple[dns.message.Message, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        data, peer = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65535), timeout)
        return dns.message.from_wire(data), peer

    async def acknowledge(self, message: dns.message.Message, peer: tuple[str, int]) -> None:
        response = dns.message.make_response(message)
        await asyncio.get_running_loop().sock_sendto(self.sock, response.to_wire(), peer)


@pytest.fixture
def secondary() -> _Secondary:  # type: ignore[misc]
    secondary = _Secondary()
    yield secondary
    secondary.sock.close()


async def test_notify_on_a_new_serial(secondary: _Secondary) -> None:
    async with running(
        [make_index(ROWS, serial=1)], notify=[f"127.0.0.1:{secondary.port}"]
    ) as server:
        at_start, peer = await secondary.receive()  # once it answers
        assert at_start.answer[0][0].serial == 1
        await secondary.acknowledge(at_start, peer)
        server.publish(make_index(ROWS, serial=1))  # the same serial: nothing to tell
        server.publish(make_index(ROWS, serial=2))
        message, peer = await secondary.receive()
        assert message.opcode() == dns.opcode.NOTIFY
        assert message.flags & dns.flags.AA
        assert message.question[0].name.to_text() == ZONE + "."
        assert message.question[0].rdtype == dns.rdatatype.SOA
        assert message.answer[0][0].serial == 2
        await secondary.acknowledge(message, peer)
        server.publish(make_index(ROWS, serial=3))
        later, _ = await secondary.receive()
        assert later.answer[0][0].serial == 3


async def test_notify_is_retried_until_acknowledged(secondary: _Secondary) -> None:
    async with running([], notify=[f"127.0.0.1:{secondary.port}"]) as server:
        server.notifier.timeout = 0.2
        server.publish(make_index(ROWS, serial=5))
        first, _ = await secondary.receive()
        second, peer = await secondary.receive()  # the first went unanswered
        assert first.answer[0][0].serial == second.answer[0][0].serial == 5
        assert first.id != second.id
        await secondary.acknowledge(second, peer)
        # Acknowledged: serial 5 is not sent again. Were the answer missed, the notifier would
        # try 5 a third time before it turned to the newer serial; so the next NOTIFY to come
        # carries 6, however long it takes.
        server.publish(make_index(ROWS, serial=6))
        following, _ = await secondary.receive(timeout=30)
        assert following.answer[0][0].serial == 6


@pytest.mark.parametrize(
    ("text", "rdata"),
    [
        ('"Listed 10.0.0.1"', b"\x0fListed 10.0.0.1"),
        ('"a" "b"', b"\x01a\x01b"),
        ('"say \\"hi\\" \\\\ \\233"', b'\x0csay "hi" \\ \xe9'),
        ("bare", b"\x04bare"),
    ],
)
def test_txt_rdata_from_zone_text(text: str, rdata: bytes) -> None:
    assert txt_rdata_from_text(text) == rdata


def test_the_history_for_ixfr_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import dnsbl.dns.zones as zones

    monkeypatch.setattr(zones, "HISTORY", 5)
    monkeypatch.setattr(zones, "HISTORY_OVERLAY", 20)
    table = zones.ZoneTable([zone_settings()])
    index = make_index(ROWS, serial=1)
    table.publish(index)
    for serial in range(2, 10):
        added = change("add", f"10.9.0.{serial}", code="127.0.0.2", txt="")
        index = index.with_changes(serial, [added])
        zone, _ = table.publish(index)
    # the last five at most, and of those the newest whose overlays (serial n has n - 1
    # entries) hold twenty at most: 5 + 6 + 7
    assert [kept.serial for kept in zone.history] == [6, 7, 8]
    assert transfer.changed_since(zone, 6) is not None
    assert transfer.changed_since(zone, 5) is None


def _transferred(messages: Iterable[bytes]) -> list[str]:
    """Every record of a transfer's messages as zone text, sorted (order is free in AXFR)."""
    return sorted(
        rrset.to_text() for wire in messages for rrset in dns.message.from_wire(wire).answer
    )


_SINGLES = [
    [row("10.0.0.1"), row("10.0.0.2", code="127.0.0.4", txt=""), row("192.0.2.7", txt="Net $")],
    [row("127.0.0.2", code="127.0.0.9"), row("127.0.0.1"), row("1.2.3.4", txt="$$ and $")],
    [row("1.2.3.4", txt="x" * 250 + " $"), row("1.2.3.5", excluded=True), row("9.9.9.9")],
    [],
    # not single addresses: the general walk, which the fast path must not take
    [row(f"10.1.1.{i}") for i in range(256)],
    [row("10.0.0.1"), row("2001:db8::1")],
    [row("10.0.0.1"), row("10.0.1.0/24")],
    [row("10.0.0.1"), row("10.0.0.3", "relay-output")],
]


@pytest.mark.parametrize("number", range(len(_SINGLES)))
def test_a_zone_of_single_addresses_transfers_what_its_records_say(number: int) -> None:
    zone, _ = ZoneTable([zone_settings()]).publish(make_index(_SINGLES[number], serial=5))
    assert zone.index is not None
    assert (single_addresses(zone.index) is not None) == (number < 4)  # the fast path taken
    query = DNSRecord.question(ZONE, "AXFR")
    records = transfer.default_records(zone.index, zone.settings)
    general = transfer.axfr_messages(query, zone, records)
    assert _transferred(transfer.zone_axfr(query, zone)) == _transferred(general)


def test_single_addresses_are_recognised_with_an_overlay_too() -> None:
    index = make_index([row("10.0.0.1")]).with_changes(2, [change("add", "10.0.0.9")])
    found = single_addresses(index)
    assert found is not None
    assert [address for address, _ in found.v4()] == [0x0A000001, 0x0A000009, 0x7F000002]
    assert single_addresses(make_index([row(f"10.1.1.{i}") for i in range(256)])) is None
