"""A listing leaves DNS when its expiry passes, before any expiry sweep ends it in the store.

The expiry sweep (`ListingStore.expire_due`, a worker's job every `tester.sweep_interval`) is
what ends an expired listing in the database; a DNS node must not answer it meanwhile. Here
no worker runs: the node hides the listing by itself, writing nothing (the zone serial stays,
the listing stays unended), on SQLite and PostgreSQL, with dnspython asking a running node.
A secondary that took the zone while the listing was in it does not keep it either.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import dns.asyncquery
import dns.message
import dns.query
import dns.rcode
import dns.xfr
import dns.zone
import pytest
from sqlalchemy import Engine

from dnsbl.addresses import parse_network
from dnsbl.config import Settings, load_settings
from dnsbl.dns.server import DnsServer
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.models import utcnow
from dnsbl.node.node import run_dns_node
from tests.conftest import ZONE, zone_config
from tests.dns_support import answers, ask, eventually

DEADLINE = 30.0  # seconds any change may take to show (generous: the node polls every 0.05 s)


@dataclass
class Node:
    server: DnsServer
    store: ListingStore


@pytest.fixture
async def node(engine: Engine, database_url: str) -> AsyncIterator[Node]:
    """A DNS node (`run_dns_node`) following the database; no worker, so no expiry sweep."""
    settings: Settings = load_settings(
        None,
        database_url=database_url,
        zones=[zone_config()],
        dns={"listen": ["127.0.0.1:0"], "transfer_peers": ["127.0.0.1"], "sync_interval": 0.05},
    )
    store = ListingStore(engine)
    store.ensure_zones(settings.zone_names)
    store.add(ZONE, [Entry(parse_network("10.0.0.1"))], actor="test")  # never expires
    server = DnsServer(settings.zones, settings.dns)
    started = asyncio.Event()
    task = asyncio.create_task(run_dns_node(settings, engine, started=started, server=server))
    try:
        await asyncio.wait_for(started.wait(), DEADLINE)
        yield Node(server, store)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _name(address: str) -> str:
    return ".".join(reversed(address.split("."))) + "." + ZONE


async def _listed(node: Node, address: str) -> bool:
    return answers(await ask(node.server, _name(address)), "A") == ["127.0.0.2"]


async def _unlisted(node: Node, address: str) -> bool:
    return (await ask(node.server, _name(address))).rcode() == dns.rcode.NXDOMAIN


async def _list_expiring(
    node: Node, address: str, while_listed: Callable[[], Awaitable[None]] | None = None
) -> datetime:
    """List `address` to expire in a few seconds, see the node answer it (and run
    `while_listed`) before it expires; returns the expiry. A machine too slow to do that in
    time gets a longer lead, not a failure (how soon a node follows a write is the business
    of other tests)."""
    lead = 2.0
    while lead < 100:
        expires = utcnow() + timedelta(seconds=lead)
        entry = Entry(parse_network(address), reason="short", expires_at=expires)
        await asyncio.to_thread(node.store.add, ZONE, [entry], actor="test")
        while utcnow() < expires:
            if await _listed(node, address):
                if while_listed is not None:
                    await while_listed()
                if utcnow() < expires:
                    return expires
                break
            await asyncio.sleep(0.02)
        lead *= 2
    pytest.fail(f"the node never answered {address} before its expiry")


def _ended_at(store: ListingStore, address: str) -> list[datetime | None]:
    return [
        listing.ended_at
        for listing in listings_containing(store.engine, address, active_only=False)
        if listing.network == address + "/32"
    ]


async def test_an_expiring_listing_goes_nxdomain_before_any_sweep(node: Node) -> None:
    expires = await _list_expiring(node, "10.0.0.9")
    serial = node.store.serial(ZONE)
    await eventually(lambda: _unlisted(node, "10.0.0.9"), "the expired listing leaves DNS")
    assert utcnow() >= expires
    assert await _listed(node, "10.0.0.1")  # the listing that does not expire stays
    # nothing was written: no sweep ended it, and the zone is at the serial of the last write
    assert node.store.serial(ZONE) == serial
    assert _ended_at(node.store, "10.0.0.9")[-1] is None
    soa = await ask(node.server, ZONE, "SOA")
    assert soa.answer[0][0].serial == serial


async def test_a_listing_written_already_expired_is_never_answered(node: Node) -> None:
    past = utcnow() - timedelta(seconds=5)
    entries = [
        Entry(parse_network("10.0.0.7"), expires_at=past),
        Entry(parse_network("10.0.0.8")),  # the same write: once it shows, the write was read
    ]
    await asyncio.to_thread(node.store.add, ZONE, entries, actor="test")
    await eventually(lambda: _listed(node, "10.0.0.8"), "the write shows in DNS")
    assert await _unlisted(node, "10.0.0.7")


async def test_a_secondary_does_not_keep_a_listing_that_expired(node: Node) -> None:
    host, port = node.server.endpoints[0]

    async def transfer(zone: dns.zone.Zone) -> None:
        query, _ = dns.xfr.make_query(zone)  # AXFR into an empty zone, else IXFR from its serial
        await asyncio.to_thread(
            dns.query.inbound_xfr, host, zone, query=query, port=port, timeout=5
        )

    secondary = dns.zone.Zone(ZONE)

    async def take_the_zone() -> None:
        nonlocal secondary
        secondary = dns.zone.Zone(ZONE)
        await transfer(secondary)

    await _list_expiring(node, "10.0.0.9", take_the_zone)
    assert secondary.find_rdataset("9.0.0.10", "A")[0].to_text() == "127.0.0.2"
    at = secondary.get_soa().serial
    await eventually(lambda: _unlisted(node, "10.0.0.9"), "the expired listing leaves DNS")
    assert node.store.serial(ZONE) == at  # hidden without a new serial: nothing to transfer

    # The next write's serial: the secondary catches up from the serial it holds.
    await asyncio.to_thread(node.store.add, ZONE, [Entry(parse_network("10.0.0.3"))], actor="t")
    await eventually(lambda: _listed(node, "10.0.0.3"), "the next write shows in DNS")
    await transfer(secondary)
    assert secondary.get_soa().serial > at
    assert secondary.find_rdataset("3.0.0.10", "A")[0].to_text() == "127.0.0.2"
    assert secondary.get_rdataset("9.0.0.10", "A") is None
    assert secondary.find_rdataset("1.0.0.10", "A")[0].to_text() == "127.0.0.2"
