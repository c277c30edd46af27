"""Helpers for the DNS server tests: zones, indexes, a running server, and a dnspython client."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import dns.asyncquery
import dns.edns
import dns.message
import dns.rdatatype

from dnsbl.addresses import Network, parse_network
from dnsbl.config import DnsSettings, ZoneSettings
from dnsbl.dns.server import DnsServer
from dnsbl.index.values import ValueDefaults
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow

ZONE = "bl.example.org"
TXT = "Listed: see https://bl.example.org/lookup/$"


def zone_settings(name: str = ZONE, **overrides: Any) -> ZoneSettings:
    fields: dict[str, Any] = {
        "name": name,
        "ns": ["ns1.example.org", "ns2.example.org"],
        "hostmaster": "hostmaster.example.org",
        "ttl": 2100,
        "negative_ttl": 300,
        "refresh": 3600,
        "retry": 600,
        "expire": 604800,
        "txt": TXT,
        "categories": {"open-relay": "127.0.0.2", "relay-output": "127.0.0.3"},
    }
    fields.update(overrides)
    return ZoneSettings(**fields)


def row(
    network: str,
    category: str = "manual",
    *,
    code: str | None = None,
    txt: str | None = None,
    excluded: bool = False,
) -> ListingRow:
    """An index row for `network` (as `ZoneIndex.build` takes them)."""
    net = parse_network(network)
    return ListingRow(category, net.family, net.first, net.prefixlen, excluded, code, txt)


def change(
    action: str,
    network: str | Network,
    category: str = "manual",
    *,
    code: str | None = None,
    txt: str | None = None,
    excluded: bool = False,
) -> ChangeRecord:
    """A change log entry for `network` (as `ZoneIndex.with_changes` takes them)."""
    net = parse_network(network) if isinstance(network, str) else network
    listing = ListingRow(category, net.family, net.first, net.prefixlen, excluded, code, txt)
    return ChangeRecord(0, ChangeAction(action), listing)


def make_index(
    rows: Iterable[ListingRow], serial: int = 1, zone: ZoneSettings | None = None
) -> ZoneIndex:
    zone = zone or zone_settings()
    return ZoneIndex.build(zone.name, serial, rows, ValueDefaults.of(zone))


@asynccontextmanager
async def running(
    indexes: Iterable[ZoneIndex] = (),
    zones: list[ZoneSettings] | None = None,
    **dns: Any,
) -> AsyncIterator[DnsServer]:
    """A started server on 127.0.0.1 (a free port) publishing `indexes`, answering with the
    engine DNSBL_DNS__ENGINE names (the `dns_engine` fixture sets it), else the default."""
    dns.setdefault("listen", ["127.0.0.1:0"])
    dns.setdefault("engine", os.environ.get("DNSBL_DNS__ENGINE", "auto"))
    dns.setdefault("transfer_peers", ["127.0.0.1"])
    limits = {
        key: dns.pop(key) for key in ("tcp_idle_timeout", "tcp_max_connections") if key in dns
    }
    server = DnsServer(zones or [zone_settings()], DnsSettings(**dns), **limits)
    for index in indexes:
        server.publish(index)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def ask(
    server: DnsServer,
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    edns: int | None = 0,
    payload: int = 1232,
    rd: bool = True,
    source: str | None = None,
    options: list[dns.edns.Option] | None = None,
) -> dns.message.Message:
    """Query `server` with dnspython over UDP or TCP, from `source` (a loopback address such
    as 127.0.0.7: any of 127.0.0.0/8 works without setup) when given."""
    query = dns.message.make_query(
        name,
        rdtype,
        use_edns=edns if edns is not None else False,
        payload=payload,
        options=options,
    )
    if not rd:
        query.flags &= ~dns.flags.RD
    host, port = server.endpoints[0]
    if tcp:
        return await dns.asyncquery.tcp(query, host, port=port, timeout=3, source=source)
    return await dns.asyncquery.udp(query, host, port=port, timeout=3, source=source)


def answers(message: dns.message.Message, rdtype: str) -> list[str]:
    """The text of every record of `rdtype` in the answer section, in order."""
    wanted = dns.rdatatype.from_text(rdtype)
    return [rd.to_text() for rrset in message.answer if rrset.rdtype == wanted for rd in rrset]


_PROBE_ID = 0xD1CE  # no packet the tests send as they are carries this id


async def raw_udp(server: DnsServer, packet: bytes) -> bytes | None:
    """Send `packet` as it is; its reply, or None when the server dropped it.

    A probe query follows it from the same socket: the server answers a socket's datagrams
    in the order they come, so when the first reply back is the probe's, `packet` got none.
    No waiting out a window: a slow run only takes longer."""
    host, port = server.endpoints[0]
    probe = dns.message.make_query(ZONE, "SOA", id=_PROBE_ID).to_wire()
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        await loop.sock_sendall(sock, packet)
        await loop.sock_sendall(sock, probe)
        reply = await asyncio.wait_for(loop.sock_recv(sock, 65535), 30)
    if reply[:2] == _PROBE_ID.to_bytes(2, "big") and reply[2] & 0x80:
        return None
    return reply


async def udp_flood(
    server: DnsServer,
    name: str,
    source: str,
    count: int,
    options: list[dns.edns.Option] | None = None,
) -> list[dns.message.Message]:
    """Send `count` identical A queries for `name` from `source` (with EDNS `options`), then
    a probe (an SOA query: another answer class, so answered if the network has not flooded
    that one within the rate limit's window); the replies that came before the probe's.
    The server answers one socket's datagrams in order, so no dropped reply is waited out."""
    host, port = server.endpoints[0]
    loop = asyncio.get_running_loop()
    replies: list[dns.message.Message] = []
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        for n in range(count):
            query = dns.message.make_query(
                name, "A", id=n, use_edns=0 if options else False, options=options
            )
            await loop.sock_sendall(sock, query.to_wire())
        probe = dns.message.make_query(ZONE, "SOA", id=_PROBE_ID)
        await loop.sock_sendall(sock, probe.to_wire())
        while True:
            reply = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(sock, 4096), 30))
            if reply.id == _PROBE_ID:
                return replies
            replies.append(reply)


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, deadline: float = 30.0
) -> None:
    """Poll `check` until it holds; fail naming `what` after `deadline` seconds."""
    limit = time.monotonic() + deadline
    while not await check():
        assert time.monotonic() < limit, f"not within {deadline:g} s: {what}"
        await asyncio.sleep(0.05)


def handed_to_python(server: DnsServer) -> int | None:
    """How many UDP datagrams the native engine has handed to the Python path so far; None
    under the Python engine (which decides everything in Python)."""
    return server.native.handed if server.native is not None else None
