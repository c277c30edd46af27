"""Delist requests on SQLite and PostgreSQL: preconditions, limits, and the retest that decides."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from dnsbl.addresses import parse_network
from dnsbl.config import Settings
from dnsbl.errors import ConfirmationRequired, NotListedError, RateLimited
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.manual import list_entries
from dnsbl.listings.rows import Source
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.models.relay import DelistRequest
from dnsbl.relay.delisting import DelistRequestView, file_delist_request, get_delist_request
from dnsbl.relay.evidence import get_test, set_verdict, start_test
from dnsbl.relay.jobs import list_jobs
from dnsbl.relay.nominations import submit_nomination
from dnsbl.relay.verdicts import apply_verdict, relay_listings
from tests.conftest import ZONE
from tests.relay_lab import (  # noqa: F401 (fixtures)
    FakeHost,
    hosts_fixture,
    lab_settings,
    settled,
    worker_fixture,
)


@pytest.fixture
def lab(database_url: str) -> Settings:
    return lab_settings(database_url, delists_per_address=2, delists_per_requester=3)


def _listed(engine: Engine, settings: Settings, address: str, *outputs: str) -> int:
    from dnsbl.models import utcnow
    from dnsbl.relay.evidence import ArrivalView

    ListingStore(engine).ensure_zones(settings.zone_names)
    test_id = start_test(engine, address, job_id=None, forced=False)
    set_verdict(engine, test_id, "confirmed", "arrived")
    arrivals = [ArrivalView("f", "t", by, utcnow()) for by in (address, *outputs)]
    apply_verdict(engine, settings, test_id, address, "confirmed", arrivals)
    return test_id


def _finish_job(engine: Engine, request: DelistRequestView) -> None:
    from dnsbl.relay.jobs import claim, finish

    for job in claim(engine, "w", limit=10, lease_seconds=60, max_attempts=3):
        finish(engine, job.id, "w")


def test_preconditions(engine: Engine, lab: Settings) -> None:
    with pytest.raises(ConfirmationRequired):
        file_delist_request(engine, lab, "192.0.2.1", "op@example.net", confirmed_fixed=False)
    with pytest.raises(NotListedError):
        file_delist_request(engine, lab, "192.0.2.1", "op@example.net", confirmed_fixed=True)
    # a manual listing is an admin's decision, not a relay test's: no retest gets it out
    entry = Entry(parse_network("192.0.2.1"), reason="admin")
    store = ListingStore(engine)
    store.ensure_zones([ZONE])
    list_entries(store, ZONE, [entry], actor="admin", source=Source.MANUAL)
    with pytest.raises(NotListedError):
        file_delist_request(engine, lab, "192.0.2.1", "op@example.net", confirmed_fixed=True)


def test_a_request_queues_a_forced_retest(engine: Engine, lab: Settings) -> None:
    _listed(engine, lab, "192.0.2.1")
    request = file_delist_request(
        engine, lab, "192.0.2.1", "op@example.net", True, "fixed mynetworks"
    )
    assert (request.status, request.test_id, request.note) == ("pending", None, "fixed mynetworks")
    [job] = list_jobs(engine)
    assert (job.kind, job.target, job.forced) == ("retest", "192.0.2.1", True)
    # asking again while it is pending answers with the same request
    again = file_delist_request(engine, lab, "192.0.2.1", "someone@else", True)
    assert again.id == request.id
    assert get_delist_request(engine, 999) is None


def test_requests_are_rate_limited(engine: Engine, lab: Settings) -> None:
    _listed(engine, lab, "192.0.2.1")
    for _ in range(2):
        request = file_delist_request(engine, lab, "192.0.2.1", "op@example.net", True)
        _finish_job(engine, request)
    with pytest.raises(RateLimited) as per_address:
        file_delist_request(engine, lab, "192.0.2.1", "other@example.net", True)
    assert per_address.value.retry_after > 0
    for n in (2, 3):
        _listed(engine, lab, f"192.0.2.{n}")
    request = file_delist_request(engine, lab, "192.0.2.2", "op@example.net", True)
    _finish_job(engine, request)
    with pytest.raises(RateLimited):
        file_delist_request(engine, lab, "192.0.2.3", "op@example.net", True)  # 4th of op's


def test_a_request_for_a_relay_output_retests_its_input(engine: Engine, lab: Settings) -> None:
    _listed(engine, lab, "192.0.2.1", "198.51.100.7")
    request = file_delist_request(engine, lab, "198.51.100.7", "isp@example.net", True)
    [job] = list_jobs(engine)
    assert job.target == "192.0.2.1" and job.forced
    assert request.address == "198.51.100.7"


async def test_retest_decides_the_request(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost], worker: asyncio.Event
) -> None:
    relay = hosts("127.0.0.50", "open")
    nomination = submit_nomination(engine, lab, "127.0.0.50", "tester@lab")
    await settled(engine, [nomination.id])
    assert relay_listings(engine, "127.0.0.50")
    # still open: it stays listed, and the request shows the new evidence
    still = file_delist_request(engine, lab, "127.0.0.50", "op@example.net", True)
    still = await _answered(engine, still.id)
    assert still.status == "still-listed" and still.test_id is not None
    retest = get_test(engine, still.test_id)
    assert retest is not None and retest.verdict == "confirmed" and retest.forced
    assert relay_listings(engine, "127.0.0.50")
    # fixed: the next request's retest finds it closed and it leaves the list
    relay.behaviour = "closed"
    fixed = file_delist_request(engine, lab, "127.0.0.50", "op@example.net", True)
    fixed = await _answered(engine, fixed.id)
    assert fixed.status == "delisted" and fixed.finished_at is not None
    closed = get_test(engine, fixed.test_id or 0)
    assert closed is not None and closed.verdict == "closed"
    assert relay_listings(engine, "127.0.0.50") == []
    [ended, *_] = listings_containing(engine, "127.0.0.50", active_only=False)
    assert f"relay test #{closed.id}" in (ended.end_reason or "")


async def _answered(engine: Engine, request_id: int) -> DelistRequestView:
    async with asyncio.timeout(60):
        while True:
            view = get_delist_request(engine, request_id)
            assert view is not None
            if view.status not in ("pending", "retesting"):
                return view
            await asyncio.sleep(0.1)


def test_request_rows_keep_the_requester(engine: Engine, lab: Settings) -> None:
    from sqlalchemy import select

    _listed(engine, lab, "192.0.2.1")
    file_delist_request(engine, lab, "192.0.2.1", "op@example.net", True)
    with engine.connect() as conn:
        assert conn.scalar(select(DelistRequest.requester)) == "op@example.net"
