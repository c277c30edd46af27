"""Pieces of the whole-loop tests: a DNS node following the database, and waiting for things.

`dns_node` serves the zones the verdicts write to, fed by a zone follower as a real node is;
`dns_until` asks it with a real DNS client (over UDP) for an address of either family, by the
name RFC 5782 gives it (`d.c.b.a.ZONE`, or 32 nibbles for IPv6). `api_running` serves the API
as `dnsbl api` does, and `client_from` asks it from a given loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.message
import dns.name
import dns.reversename
import httpx
import pytest
from sqlalchemy import Engine

from api.server import run_api
from dnsbl.config import Settings, TesterSettings, load_settings
from dnsbl.dns.server import DnsServer
from dnsbl.listings.store import ListingStore
from dnsbl.node.loader import ZoneFollower
from dnsbl.relay.delisting import DelistRequestView, get_delist_request
from dnsbl.relay.evidence import RelayTestView, get_test
from dnsbl.relay.jobs import get_job
from tests.conftest import ZONE, zone_config
from tests.smtp_fakes import free_port


def loop_settings(database_url: str, tester: TesterSettings, **dns: object) -> Settings:
    """Settings for a whole loop: the lab's tester, one zone, DNS on a free port."""
    return load_settings(
        None,
        database_url=database_url,
        zones=[zone_config()],
        dns={"listen": ["127.0.0.1:0"], **dns},
        tester=tester.model_dump(),
    )


_REVERSE_ROOTS = (dns.reversename.ipv4_reverse_domain, dns.reversename.ipv6_reverse_domain)


def listing_name(address: str, zone: str = ZONE) -> str:
    """The name a DNSBL client asks for `address` in `zone`."""
    reverse = dns.reversename.from_address(address)
    root = next(r for r in _REVERSE_ROOTS if reverse.is_subdomain(r))
    return reverse.relativize(root).concatenate(dns.name.from_text(zone)).to_text()


async def dns_rcode_and_a(server: DnsServer, address: str) -> tuple[int, list[str]]:
    host, port = server.endpoints[0]
    query = dns.message.make_query(listing_name(address), "A")
    reply = await dns.asyncquery.udp(query, host, port=port, timeout=2)
    answers = [item.to_text() for rrset in reply.answer for item in rrset]
    return reply.rcode(), answers


async def dns_until(server: DnsServer, address: str, rcode: int, timeout: float = 30) -> list[str]:
    """Ask until the answer has `rcode`; its A records."""
    async with asyncio.timeout(timeout):
        while True:
            got, answers = await dns_rcode_and_a(server, address)
            if got == rcode:
                return answers
            await asyncio.sleep(0.1)


async def answered(engine: Engine, request_id: int, timeout: float = 90) -> DelistRequestView:
    """The delist request once it has its outcome."""
    async with asyncio.timeout(timeout):
        while True:
            view = get_delist_request(engine, request_id)
            assert view is not None
            if view.status not in ("pending", "retesting"):
                return view
            await asyncio.sleep(0.2)


async def job_test(engine: Engine, job_id: int, timeout: float = 90) -> RelayTestView:
    """The relay test that answered a job, once the job is done."""
    async with asyncio.timeout(timeout):
        while True:
            job = get_job(engine, job_id)
            assert job is not None and job.status != "failed", job
            if job.status == "done" and job.test_id is not None:
                test = get_test(engine, job.test_id)
                assert test is not None
                return test
            await asyncio.sleep(0.2)


@pytest.fixture
async def dns_node(engine: Engine, lab_settings: Settings) -> AsyncIterator[DnsServer]:
    """A DNS server on a free port answering `lab_settings`' zones from the database."""
    ListingStore(engine).ensure_zones(lab_settings.zone_names)
    server = DnsServer(lab_settings.zones, lab_settings.dns)
    follower = ZoneFollower(engine, lab_settings.zones, server.publish, 0.1)
    await asyncio.to_thread(follower.load_all)
    await server.start()
    following = asyncio.create_task(follower.run())
    yield server
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)
    await server.stop()


@contextlib.asynccontextmanager
async def api_running(settings: Settings, engine: Engine) -> AsyncIterator[str]:
    """The API as `dnsbl api` serves it (uvicorn; X-Forwarded-For from `api.trusted_proxies` only)
    on a free port of 127.0.0.1, in this event loop; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = settings.api.model_copy(update={"listen": f"127.0.0.1:{port}", "public_url": url})
    task = asyncio.create_task(run_api(settings.model_copy(update={"api": api}), engine))
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    assert not task.done(), task
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        yield url
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def client_from(address: str, base_url: str) -> httpx.AsyncClient:
    """An HTTP client whose requests come from `address` (a host of the lab, say)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=30)
