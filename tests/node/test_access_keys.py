"""DNS nodes on one database share an access key's quota and see its revocation.

Two nodes are `run_dns_node` in this process, each with its own server and key follower; a
`dnsbl dns` of two processes counts over both. Keys are issued as `dnsbl accesskey create`
does, and queried from a source outside the allow list.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from sqlalchemy import Engine

from dnsbl.access import keys
from dnsbl.addresses import parse_network
from dnsbl.config import load_settings
from dnsbl.db import make_engine
from dnsbl.dns.server import DnsServer
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.node.node import run_dns_node
from tests.conftest import ZONE, write_config, zone_config
from tests.dns_support import answers, ask, eventually
from tests.node.test_node import _process

DEADLINE = 30.0  # seconds a change may take to reach a node (they sync keys every second)
OUTSIDE = "127.0.0.9"


@asynccontextmanager
async def _node(engine: Engine, database_url: str) -> AsyncIterator[DnsServer]:
    access = {"allow": ["127.0.0.1/32"], "keys": True}
    settings = load_settings(
        None,
        database_url=database_url,
        zones=[zone_config(access=access)],
        dns={"listen": ["127.0.0.1:0"], "sync_interval": 0.05},
    )
    server = DnsServer(settings.zones, settings.dns)
    started = asyncio.Event()
    task = asyncio.create_task(run_dns_node(settings, engine, started=started, server=server))
    try:
        await asyncio.wait_for(started.wait(), DEADLINE)
        yield server
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_two_nodes_share_a_quota_and_a_revocation(engine: Engine, database_url: str) -> None:
    store = ListingStore(engine)
    store.ensure_zones([ZONE])
    store.add(ZONE, [Entry(parse_network("10.0.0.1"))], actor="test")
    issued = keys.create(engine, "partner-a", daily_quota=4)
    name = f"1.0.0.10.{issued.key}.{ZONE}"
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(_node(engine, database_url))
        second = await stack.enter_async_context(_node(engine, database_url))
        plain = await ask(first, f"1.0.0.10.{ZONE}", source=OUTSIDE)
        assert plain.rcode() == dns.rcode.REFUSED
        for server in (first, first, second):
            assert answers(await ask(server, name, source=OUTSIDE), "A") == ["127.0.0.2"]

        async def used(count: int) -> bool:
            (info,) = await asyncio.to_thread(keys.list_all, engine)
            return info.used_today == count

        await eventually(lambda: used(3), "both nodes' use in the database")
        # One left today, for either node; once it is answered and shared, both say so.
        assert answers(await ask(second, name, source=OUTSIDE), "A") == ["127.0.0.2"]
        await eventually(lambda: used(4), "the last query's use in the database")
        for server in (first, second):

            async def over(server: DnsServer = server) -> bool:
                reply = await ask(server, name, source=OUTSIDE)
                return answers(reply, "A") == ["127.255.255.255"]

            await eventually(over, "over quota on both nodes")

        keys.revoke(engine, "partner-a")
        for server in (first, second):

            async def refused(server: DnsServer = server) -> bool:
                reply = await ask(server, name, source=OUTSIDE)
                return reply.rcode() == dns.rcode.REFUSED

            await eventually(refused, "the revoked key refused on both nodes")


@pytest.mark.e2e
def test_a_dns_group_counts_a_key_over_its_processes(tmp_path: Path, sqlite_url: str) -> None:
    """`dnsbl dns` with two answering processes: each counts on its own row, the day's use is
    their sum, and a revocation reaches both."""
    config = write_config(tmp_path / "dnsbl.toml", sqlite_url)
    config.write_text(
        config.read_text() + '[zones.access]\nallow = ["127.0.0.1/32"]\nkeys = true\n'
    )
    engine = make_engine(sqlite_url)
    issued = keys.create(engine, "partner-a")
    name = f"2.0.0.127.{issued.key}.{ZONE}"
    env = {"DNSBL_DNS__PROCESSES": "2"}
    with _process(config, "dns", tmp_path / "dns.log", env) as (process, port):

        def ask_keyed() -> dns.message.Message:
            query = dns.message.make_query(name, "A")
            return dns.query.udp(query, "127.0.0.1", port=port, timeout=3, source=OUTSIDE)

        for _ in range(20):
            assert answers(ask_keyed(), "A") == ["127.0.0.2"]
        deadline = time.monotonic() + DEADLINE
        while keys.list_all(engine)[0].used_today != 20:
            assert time.monotonic() < deadline, "the group's use never reached the database"
            time.sleep(0.1)
        keys.revoke(engine, "partner-a")
        while ask_keyed().rcode() != dns.rcode.REFUSED:
            assert time.monotonic() < deadline + DEADLINE, "the revocation never reached DNS"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0
    engine.dispose()
