"""A listing made over REST answers in DNS, and goes when it is ended.

The API and a DNS node share one database (SQLite and PostgreSQL) as under `dnsbl serve`; the
node follows the change log every `dns.sync_interval` (0.2 s here), so a change shows within
a poll or two; how soon is measured in bench/, not asserted here. The DNS node's query counter
and readiness feed the API's /metrics and /readyz.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from api.app import create_app
from dnsbl.apikeys import create_key
from dnsbl.config import load_settings
from dnsbl.dns.server import DnsServer
from dnsbl.node.metrics import NodeCollector, NodeStats
from dnsbl.node.node import follower_for, run_dns_node
from tests.conftest import ZONE, zone_config
from tests.dns_support import answers, ask

pytestmark = pytest.mark.e2e
NAME = "99.2.0.192." + ZONE


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Poll `check` until it holds; fail after `timeout` seconds (a generous deadline)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"DNS did not follow the change in {timeout:g} s"
        await asyncio.sleep(0.02)


async def test_rest_listing_answers_in_dns(engine: Engine, database_url: str) -> None:
    settings = load_settings(
        None,
        database_url=database_url,
        zones=[zone_config()],
        dns={"listen": ["127.0.0.1:0"], "sync_interval": 0.2},
    )
    key = create_key(engine, "admin").key
    server = DnsServer(settings.zones, settings.dns)
    follower = follower_for(settings, engine, server)
    started = asyncio.Event()
    collector = NodeCollector(lambda: NodeStats.of(server, follower))
    app = create_app(settings, engine, dns_ready=started.is_set, collectors=[collector])
    node = asyncio.create_task(
        run_dns_node(settings, engine, started=started, server=server, follower=follower)
    )
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        await asyncio.wait_for(started.wait(), 30)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            assert (await client.get("/readyz")).json()["checks"]["dns_index"] == "ok"
            assert (await ask(server, NAME)).rcode() == 3  # NXDOMAIN before
            created = await client.post(
                "/v1/admin/listings",
                headers=headers,
                json={"zone": ZONE, "network": "192.0.2.99", "reason": "spam run"},
            )
            assert created.status_code == 201, created.text

            async def listed() -> bool:
                return answers(await ask(server, NAME), "A") == ["127.0.0.2"]

            await _until(listed)
            txt = answers(await ask(server, NAME, "TXT"), "TXT")
            assert txt == ['"Listed: see https://bl.example.org/lookup/192.0.2.99"']

            ended = await client.post(
                f"/v1/admin/listings/{created.json()['id']}/end",
                headers=headers,
                json={"reason": "cleaned up"},
            )
            assert ended.status_code == 200

            async def gone() -> bool:
                return (await ask(server, NAME)).rcode() == 3

            await _until(gone)
            metrics = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families((await client.get("/metrics")).text)
                for sample in family.samples
            }
            nxdomain = (
                ("engine", server.engine),
                ("qtype", "A"),
                ("rcode", "NXDOMAIN"),
                ("zone", ZONE),
            )
            assert metrics[("dnsbl_dns_queries_total", nxdomain)] >= 2
            serial = float(follower.indexes[ZONE].serial)
            assert metrics[("dnsbl_index_serial", (("zone", ZONE),))] == serial
            assert metrics[("dnsbl_database_serial", (("zone", ZONE),))] == serial
    finally:
        node.cancel()
        await asyncio.gather(node, return_exceptions=True)
