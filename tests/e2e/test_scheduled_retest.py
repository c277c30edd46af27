"""A relay that is fixed leaves the list by the periodic schedule alone, with no one asking.

Against real Postfix (tests/postfix_lab.py): the open relay on 127.0.0.10 is nominated, tested
and listed by `run_worker`, and a DNS node (`run_dns_node`) answers it; then the relay is
fixed (closed). Nobody asks for a delisting or forces a retest: the worker's periodic schedule
(`schedule_periodic`) queues a retest once `tester.retest_interval` has passed since the
newest test, a retest that is not forced (so `tester.min_test_interval` holds), and its
"closed" verdict ends the listing, which DNS then answers NXDOMAIN. Both intervals are made
tiny here; the retests that come while the relay is still open only confirm it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import dns.rcode
import pytest
from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.dns.server import DnsServer
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.store import ListingStore
from dnsbl.node.node import run_dns_node
from dnsbl.relay.evidence import RelayTestView, tests_for
from dnsbl.relay.jobs import list_jobs
from dnsbl.relay.nominations import get_nomination, submit_nomination
from dnsbl.relay.verdicts import relay_listings
from dnsbl.relay.worker import run_worker
from tests.conftest import PG_URL
from tests.e2e.loop import dns_until, loop_settings
from tests.postfix_lab import OPEN_ADDRESS, PostfixLab, postfix_fixture  # noqa: F401
from tests.relay_lab import settled

pytestmark = pytest.mark.e2e
DEADLINE = 30.0  # seconds for DNS to follow a change


@pytest.fixture
def settings(database_url: str, postfix: PostfixLab) -> Settings:
    tester = postfix.tester_settings(
        wait_window=10,
        lease_seconds=60,
        poll_interval=0.1,
        retest_interval=2.0,  # a listed relay is retested 2 s after its newest test
        min_test_interval=1.0,  # and may be, without forcing, 1 s after it
        sweep_interval=0.5,  # the worker runs the schedule this often
    )
    return loop_settings(database_url, tester, sync_interval=0.1)


@pytest.fixture
async def dns_node(engine: Engine, settings: Settings) -> AsyncIterator[DnsServer]:
    ListingStore(engine).ensure_zones(settings.zone_names)
    server = DnsServer(settings.zones, settings.dns)
    started = asyncio.Event()
    task = asyncio.create_task(run_dns_node(settings, engine, started=started, server=server))
    await asyncio.wait_for(started.wait(), DEADLINE)
    yield server
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _closed_test(engine: Engine) -> RelayTestView:
    """The first test of the relay to find it closed (a few scheduled retests at most), once
    its job is done too (the verdict is written a moment before the job is finished)."""
    async with asyncio.timeout(300):
        while True:
            closed = [t for t in tests_for(engine, OPEN_ADDRESS) if t.verdict == "closed"]
            finished = {job.test_id for job in list_jobs(engine, "done", limit=1000)}
            if closed and closed[-1].id in finished:
                return closed[-1]
            await asyncio.sleep(0.2)


# One run is enough (Postfix takes seconds to start): on PostgreSQL when there is one.
@pytest.mark.parametrize("database_url", ["postgresql" if PG_URL else "sqlite"], indirect=True)
async def test_a_scheduled_retest_delists_a_relay_that_was_fixed(
    engine: Engine, settings: Settings, postfix: PostfixLab, dns_node: DnsServer
) -> None:
    started, stop = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, engine, started=started, stop=stop))
    try:
        await asyncio.wait_for(started.wait(), DEADLINE)
        nomination = submit_nomination(engine, settings, OPEN_ADDRESS, "e2e@lab")
        await settled(engine, [nomination.id], timeout=120)
        view = get_nomination(engine, nomination.id)
        assert view is not None and view.verdict == "confirmed", postfix.open.log()
        assert [listing.category for listing in relay_listings(engine, OPEN_ADDRESS)] == [
            "open-relay"
        ]
        await dns_until(dns_node, OPEN_ADDRESS, dns.rcode.NOERROR, DEADLINE)

        # The operator fixes the relay, and asks nobody.
        await asyncio.to_thread(postfix.open.close_relay)
        closed = await _closed_test(engine)

        assert not closed.forced
        jobs = list_jobs(engine, limit=1000)
        [job] = [job for job in jobs if job.test_id == closed.id]
        assert (job.kind, job.forced, job.created_by) == ("retest", False, "scheduler")
        # nothing forced, and every retest was the schedule's
        assert not any(job.forced for job in jobs)
        assert {job.created_by for job in jobs if job.kind == "retest"} == {"scheduler"}
        assert relay_listings(engine, OPEN_ADDRESS) == []
        [ended, *_] = listings_containing(engine, OPEN_ADDRESS, active_only=False)
        assert f"#{closed.id}" in (ended.end_reason or ""), ended.end_reason
        await dns_until(dns_node, OPEN_ADDRESS, dns.rcode.NXDOMAIN, DEADLINE)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)
        await asyncio.to_thread(postfix.open.open_relay)
