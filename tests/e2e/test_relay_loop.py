"""The whole relay loop against real Postfix: nominate → test → listed in DNS → fixed → delisted.

An open Postfix relay on 127.0.0.10 and a closed one on 127.0.0.11 (tests/postfix_lab.py) route
the collector domain to the collector that `run_worker` runs in-process. A DNS server fed by a
zone follower answers the zone the verdicts write to, and a real DNS client asks it. Midway the
two are chained into a multi-stage relay (the open one hands the collector's mail to the other,
which relays for it), so the second stage is listed as the relay's output.
"""

from __future__ import annotations

import asyncio

import dns.rcode
import pytest
from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.dns.server import DnsServer
from dnsbl.relay.delisting import file_delist_request
from dnsbl.relay.evidence import get_test
from dnsbl.relay.nominations import get_nomination, submit_nomination
from dnsbl.relay.schedule import schedule_retest
from dnsbl.relay.verdicts import relay_listings
from dnsbl.relay.worker import run_worker
from tests.conftest import PG_URL, ZONE
from tests.e2e import loop
from tests.e2e.loop import answered, dns_rcode_and_a, dns_until, job_test, loop_settings
from tests.postfix_lab import (
    CLOSED_ADDRESS,
    COLLECTOR_DOMAIN,
    OPEN_ADDRESS,
    SMTP_PORT,
    PostfixLab,
    postfix_fixture,  # noqa: F401 (the postfix fixture)
)
from tests.relay_lab import settled

pytestmark = pytest.mark.e2e
dns_node = loop.dns_node  # the fixture, made visible to this module's tests


def _settings(database_url: str, lab: PostfixLab) -> Settings:
    tester = lab.tester_settings(wait_window=15, lease_seconds=60, poll_interval=0.1)
    return loop_settings(database_url, tester)


def _chain(lab: PostfixLab) -> None:
    """Route the open relay's collector mail through the closed one, which relays for it."""
    transport = lab.open.config_dir.parent / "transport"
    transport.write_text(f"{COLLECTOR_DOMAIN} smtp:[{CLOSED_ADDRESS}]:{SMTP_PORT}\n")
    lab.open.reload()
    lab.closed.set(mynetworks=f"{CLOSED_ADDRESS}/32 {OPEN_ADDRESS}/32")
    lab.closed.reload()


@pytest.fixture
def lab_settings(database_url: str, postfix: PostfixLab) -> Settings:
    return _settings(database_url, postfix)


# One run is enough (Postfix takes seconds to start): on PostgreSQL when there is one.
@pytest.mark.parametrize("database_url", ["postgresql" if PG_URL else "sqlite"], indirect=True)
async def test_nominate_list_fix_delist(
    engine: Engine, lab_settings: Settings, postfix: PostfixLab, dns_node: DnsServer
) -> None:
    started, stop = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_worker(lab_settings, engine, started=started, stop=stop))
    try:
        await asyncio.wait_for(started.wait(), 10)
        opened = submit_nomination(engine, lab_settings, OPEN_ADDRESS, "e2e@lab")
        closed = submit_nomination(engine, lab_settings, CLOSED_ADDRESS, "e2e@lab")
        await settled(engine, [opened.id, closed.id], timeout=120)

        open_view = get_nomination(engine, opened.id)
        closed_view = get_nomination(engine, closed.id)
        assert open_view is not None and closed_view is not None
        open_test = get_test(engine, open_view.test_id or 0)
        assert open_view.verdict == "confirmed", (open_test, postfix.open.log())
        assert closed_view.verdict == "closed", get_test(engine, closed_view.test_id or 0)
        assert open_test is not None and open_test.listed_as == [f"{ZONE} open-relay"]
        assert {arrival.delivered_by for arrival in open_test.arrivals} == {OPEN_ADDRESS}
        assert open_test.banner and open_test.banner.startswith("220 open.lab.example")
        [listing] = relay_listings(engine, OPEN_ADDRESS)
        assert f"#{open_test.id}" in (listing.reason or "")
        assert relay_listings(engine, CLOSED_ADDRESS) == []

        # listed in DNS: the open relay answers 127.0.0.2, the closed one is not there
        assert await dns_until(dns_node, OPEN_ADDRESS, dns.rcode.NOERROR) == ["127.0.0.2"]
        assert (await dns_rcode_and_a(dns_node, CLOSED_ADDRESS))[0] == dns.rcode.NXDOMAIN

        # multi-stage: the open relay now hands the collector's mail to the closed one,
        # which relays for it; an admin's retest lists the second stage as the output
        await asyncio.to_thread(_chain, postfix)
        retest_job = schedule_retest(engine, lab_settings, OPEN_ADDRESS, actor="admin")
        chained = await job_test(engine, retest_job.id)
        assert chained.verdict == "confirmed", (chained, postfix.open.log(), postfix.closed.log())
        assert {arrival.delivered_by for arrival in chained.arrivals} == {CLOSED_ADDRESS}
        assert sorted(chained.listed_as) == [f"{ZONE} open-relay", f"{ZONE} relay-output"]
        [output] = relay_listings(engine, CLOSED_ADDRESS)
        assert output.category == "relay-output"
        assert await dns_until(dns_node, CLOSED_ADDRESS, dns.rcode.NOERROR) == ["127.0.0.3"]

        # the operator fixes the relay and asks out; the forced retest finds it closed
        await asyncio.to_thread(postfix.open.close_relay)
        request = file_delist_request(engine, lab_settings, OPEN_ADDRESS, "postmaster@lab", True)
        outcome = await answered(engine, request.id)
        retest = get_test(engine, outcome.test_id or 0)
        assert outcome.status == "delisted", retest
        assert retest is not None and retest.verdict == "closed" and retest.forced
        assert relay_listings(engine, OPEN_ADDRESS) == []
        assert relay_listings(engine, CLOSED_ADDRESS) == []  # its output goes with it
        await dns_until(dns_node, OPEN_ADDRESS, dns.rcode.NXDOMAIN)
        await dns_until(dns_node, CLOSED_ADDRESS, dns.rcode.NXDOMAIN)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
        await asyncio.to_thread(postfix.open.open_relay)
