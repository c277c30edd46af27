"""Malformed and unusual packets get FORMERR, NOTIMP or REFUSED, or are dropped; never a crash."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import dns.exception
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from dnsbl.config import DnsSettings
from dnsbl.dns.answers import Responder
from dnsbl.dns.server import DnsServer
from dnsbl.dns.wire import answer_fast
from tests.dns_support import ZONE, answers, ask, make_index, raw_udp, row, running, zone_settings

pytestmark = pytest.mark.usefixtures("dns_engine")  # each engine in turn


def _query(name: str = "2.0.0.127." + ZONE, rdtype: str = "A", **kwargs: object) -> bytes:
    message = dns.message.make_query(name, rdtype, id=0x1234, **kwargs)  # type: ignore[arg-type]
    return message.to_wire()


GOOD = _query()
QUESTION_END = len(GOOD)


def _header(flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack(">HHHHHH", 0x1234, flags, qd, an, ns, ar)


def _rcode(reply: bytes) -> int:
    return reply[3] & 0x0F


FORMERR_CASES = {
    "trailing junk": GOOD + b"\x00\x00junk",
    "truncated question": GOOD[:-3],
    "header only": _header(),
    "no question": _header(qd=0),
    "two questions": _header(qd=2) + GOOD[12:] + GOOD[12:],
    "label runs past the end": _header() + b"\x3f" + b"a" * 10,
    "compression loop": _header() + b"\xc0\x0c\x00\x01\x00\x01",
    "pointer forward": _header() + b"\xc0\x20\x00\x01\x00\x01" + b"\x00" * 30,
    "two OPT records": _header(ar=2) + GOOD[12:] + (b"\x00\x00\x29\x04\xd0" + b"\x00" * 6) * 2,
    "OPT not at the root": _header(ar=1) + GOOD[12:] + b"\x01a\x00\x00\x29\x04\xd0" + b"\x00" * 6,
    "OPT length past the end": _header(ar=1)
    + GOOD[12:]
    + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x09",
}


@pytest.fixture
async def server() -> DnsServer:  # type: ignore[misc]
    async with running([make_index([row("10.0.0.1")])]) as server:
        yield server


@pytest.mark.parametrize("packet", FORMERR_CASES.values(), ids=FORMERR_CASES.keys())
async def test_formerr(server: DnsServer, packet: bytes) -> None:
    reply = await raw_udp(server, packet)
    assert reply is not None
    assert reply[:2] == b"\x12\x34" and reply[2] & 0x80
    assert _rcode(reply) == dns.rcode.FORMERR


@pytest.mark.parametrize("packet", [b"", b"\x12", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"])
async def test_too_short_to_answer_is_dropped(server: DnsServer, packet: bytes) -> None:
    assert await raw_udp(server, packet) is None


async def test_a_response_is_never_answered(server: DnsServer) -> None:
    response = bytearray(GOOD)
    response[2] |= 0x80
    assert await raw_udp(server, bytes(response)) is None


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, 3, 15])
async def test_other_opcodes_are_notimp(server: DnsServer, opcode: int) -> None:
    packet = bytearray(GOOD)
    packet[2] = (packet[2] & 0x87) | opcode << 3
    reply = await raw_udp(server, bytes(packet))
    assert reply is not None and _rcode(reply) == dns.rcode.NOTIMP
    assert (reply[2] >> 3) & 0x0F == opcode


@pytest.mark.parametrize("rdclass", ["CH", "HS", "ANY"])
async def test_other_classes_are_refused(server: DnsServer, rdclass: str) -> None:
    reply = await raw_udp(server, _query(rdclass=rdclass))
    assert reply is not None and _rcode(reply) == dns.rcode.REFUSED


async def test_zone_transfer_over_udp(server: DnsServer) -> None:
    reply = await raw_udp(server, _query(ZONE, "AXFR"))
    assert reply is not None and _rcode(reply) == dns.rcode.REFUSED
    # IXFR over UDP (RFC 1995 §2): the current SOA alone; the client goes on over TCP.
    reply = await raw_udp(server, _query(ZONE, "IXFR"))
    assert reply is not None and _rcode(reply) == dns.rcode.NOERROR
    (soa,) = dns.message.from_wire(reply).answer
    assert soa.rdtype == dns.rdatatype.SOA


def _barrage(seed: int, count: int, bases: tuple[bytes, ...] = (GOOD,)) -> list[bytes]:
    """Random bytes, and good queries with random bytes flipped, cut or appended."""
    rng = random.Random(seed)
    packets = []
    for _ in range(count):
        kind = rng.randrange(4)
        if kind == 0:
            packets.append(rng.randbytes(rng.randrange(0, 80)))
        good = rng.choice(bases)
        if kind == 1:
            packet = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                packet[rng.randrange(len(packet))] = rng.randrange(256)
            packets.append(bytes(packet))
        elif kind == 2:
            packets.append(good[: rng.randrange(len(good))])
        elif kind == 3:
            packets.append(good + rng.randbytes(rng.randrange(1, 20)))
    return packets


def test_no_packet_makes_either_path_raise() -> None:
    server = DnsServer([zone_settings()], DnsSettings.model_validate({}))
    server.publish(make_index([row("10.0.0.1"), row("2001:db8::/32")]))
    responder: Responder = server.responder
    for packet in _barrage(1, 3000):
        answer_fast(packet, server.table, 1232, None)
        answer_fast(packet, server.table, 1232, 65535)
        responder.respond(packet, tcp=False, peer="127.0.0.1")
        responder.respond(packet, tcp=True, peer="127.0.0.1")


async def test_server_answers_after_a_barrage_over_udp(server: DnsServer) -> None:
    host, port = server.endpoints[0]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=(host, port)
    )
    try:
        for packet in _barrage(2, 400) + list(FORMERR_CASES.values()):
            transport.sendto(packet)
        await asyncio.sleep(0.05)
    finally:
        transport.close()
    reply = await ask(server, "1.0.0.10." + ZONE)
    assert answers(reply, "A") == ["127.0.0.2"]


async def test_twenty_thousand_mutations_over_udp(server: DnsServer) -> None:
    """Mutated queries in bursts, each burst followed by a probe: the server answers every
    probe, and every reply it sends parses."""
    host, port = server.endpoints[0]
    # Queries the native engine answers (and so sees mutated), and the general path's.
    common = tuple(
        _query("1.0.0.10." + ZONE, rdtype, use_edns=edns)
        for rdtype in ("A", "TXT", "ANY", "AAAA")
        for edns in (False, 0)
    )
    packets = _barrage(3, 20_000, (GOOD, *common))
    loop = asyncio.get_running_loop()
    replies = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        for burst in range(0, len(packets), 100):
            for packet in packets[burst : burst + 100]:
                await loop.sock_sendall(sock, packet)
            probe = dns.message.make_query("1.0.0.10." + ZONE, "A", id=0xD1CF).to_wire()
            await loop.sock_sendall(sock, probe)
            while True:
                reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), 30)
                replies += 1
                assert len(reply) >= 12 and reply[2] & 0x80
                if (reply[2] >> 3) & 0x0F:
                    continue  # another opcode's NOTIMP (dnspython reads UPDATE its own way)
                message = dns.message.from_wire(reply)
                if message.id == 0xD1CF:
                    assert answers(message, "A") == ["127.0.0.2"]
                    break
    assert replies > 1000


async def _tcp_exchange(server: DnsServer, data: bytes, replies: int) -> list[bytes]:
    host, port = server.endpoints[0]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        out = []
        for _ in range(replies):
            length = int.from_bytes(await reader.readexactly(2), "big")
            out.append(await reader.readexactly(length))
        return out
    finally:
        writer.close()


def _framed(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


async def test_several_queries_on_one_tcp_connection(server: DnsServer) -> None:
    names = ["1.0.0.10.", "2.0.0.10.", "", "2.0.0.127."]
    queries = [_query(name + ZONE, "A" if name else "SOA") for name in names]
    replies = await _tcp_exchange(server, b"".join(_framed(q) for q in queries), len(queries))
    rcodes = [dns.message.from_wire(r).rcode() for r in replies]
    assert rcodes == [dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NOERROR, dns.rcode.NOERROR]


async def test_bad_message_on_tcp_gets_formerr_and_the_connection_goes_on(
    server: DnsServer,
) -> None:
    data = _framed(FORMERR_CASES["trailing junk"]) + _framed(_query("1.0.0.10." + ZONE))
    bad, good = await _tcp_exchange(server, data, 2)
    assert _rcode(bad) == dns.rcode.FORMERR
    assert dns.message.from_wire(good).answer


async def _closed_by_server(server: DnsServer, data: bytes, close_after: bool) -> bytes:
    host, port = server.endpoints[0]
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    if close_after:
        writer.close()
        return b""
    try:
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


async def test_tcp_abuse_never_stops_the_server() -> None:
    async with running([make_index([row("10.0.0.1")])], tcp_idle_timeout=0.3) as server:
        await _closed_by_server(server, b"\x00", close_after=True)  # truncated length prefix
        await _closed_by_server(server, b"\x00\x64" + GOOD[:20], close_after=True)  # mid-message
        # An oversized message is refused by closing; so is an idle client, after the timeout.
        assert await _closed_by_server(server, b"\xff\xff" + b"\x00" * 100, False) == b""
        assert await _closed_by_server(server, b"", close_after=False) == b""
        assert await _closed_by_server(server, b"\x00\x40" + GOOD[:10], False) == b""
        for transport in (False, True):
            reply = await ask(server, "1.0.0.10." + ZONE, tcp=transport)
            assert answers(reply, "A") == ["127.0.0.2"]


def test_the_dns_package_never_loads_the_database_layer() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, dnsbl.dns, dnsbl.index.records\n"
        "for m in pkgutil.iter_modules(dnsbl.dns.__path__): importlib.import_module("
        "'dnsbl.dns.' + m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'"
        " or m in ('dnsbl.listings.store', 'dnsbl.models', 'dnsbl.db')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
