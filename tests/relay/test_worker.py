"""The worker against fake mail servers on 127.0.0.x, with the collector running in-process.

Open relays deliver their test messages to the collector and are listed; closed ones, accepting
ones that never deliver (suspicious) and silent addresses (untestable) are not. A multi-stage
relay's output is listed apart. Stopping a worker hands its jobs back; a failing probe is
retried and then given up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update

from dnsbl.config import Settings
from dnsbl.db import writer
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.store import ListingStore
from dnsbl.models import Listing, utcnow
from dnsbl.models.relay import RelayTest
from dnsbl.relay.evidence import get_test, tests_for
from dnsbl.relay.jobs import enqueue, get_job, list_jobs, queue_summary
from dnsbl.relay.nominations import get_nomination, submit_nomination
from dnsbl.relay.schedule import schedule_periodic
from dnsbl.relay.verdicts import relay_listings
from dnsbl.relay.worker import Worker
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
    return lab_settings(database_url)


async def test_verdicts_and_listings(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost], worker: asyncio.Event
) -> None:
    hosts("127.0.0.20", "open")
    hosts("127.0.0.21", "closed")
    hosts("127.0.0.22", "accept")
    # 127.0.0.23: nothing listens; 127.0.0.24: accepts the connection and never speaks

    async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    silent = await asyncio.start_server(tarpit, "127.0.0.24", lab.tester.port)
    addresses = ("127.0.0.20", "127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24")
    nominations = {
        address: submit_nomination(engine, lab, address, "tester@lab").id for address in addresses
    }
    try:
        await settled(engine, list(nominations.values()))
    finally:
        silent.close()
    verdicts = {a: get_nomination(engine, n).verdict for a, n in nominations.items()}  # type: ignore[union-attr]
    assert verdicts == {
        "127.0.0.20": "confirmed",
        "127.0.0.21": "closed",
        "127.0.0.22": "suspicious",
        "127.0.0.23": "untestable",
        "127.0.0.24": "untestable",
    }
    [relay] = relay_listings(engine, "127.0.0.20")
    view = get_nomination(engine, nominations["127.0.0.20"])
    assert view is not None and view.test_id is not None
    assert relay.category == "open-relay" and f"#{view.test_id}" in (relay.reason or "")
    assert relay.expires_at is not None
    assert relay.expires_at.replace(tzinfo=None) > (utcnow() + timedelta(days=29)).replace(
        tzinfo=None
    )
    test = get_test(engine, view.test_id)
    assert test is not None
    assert test.listed_as == [f"{ZONE} open-relay"]
    assert test.arrivals and {a.delivered_by for a in test.arrivals} == {"127.0.0.20"}
    assert "RCPT TO:" in (test.transcript or "") and test.banner and test.ehlo_reply
    assert set(test.accepted_forms) >= {a.form for a in test.arrivals}
    for address in ("127.0.0.21", "127.0.0.22", "127.0.0.23"):
        assert relay_listings(engine, address) == []
    [suspicious] = tests_for(engine, "127.0.0.22")
    assert suspicious.accepted_forms and not suspicious.arrivals and suspicious.listed_as == []
    [untestable] = tests_for(engine, "127.0.0.23")
    assert untestable.reason
    assert queue_summary(engine)["done"] >= 4


async def test_multi_stage_relay_output_is_listed_apart(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost], worker: asyncio.Event
) -> None:
    hosts("127.0.0.30", "open", output="127.0.0.31")
    nomination = submit_nomination(engine, lab, "127.0.0.30", "tester@lab")
    await settled(engine, [nomination.id])
    done = get_nomination(engine, nomination.id)
    assert done is not None and done.verdict == "confirmed"
    [relay] = relay_listings(engine, "127.0.0.30")
    [output] = relay_listings(engine, "127.0.0.31")
    assert (relay.category, output.category) == ("open-relay", "relay-output")
    test = get_test(engine, done.test_id or 0)
    assert test is not None and {a.delivered_by for a in test.arrivals} == {"127.0.0.31"}
    assert sorted(test.listed_as) == [f"{ZONE} open-relay", f"{ZONE} relay-output"]


async def test_stopping_hands_the_job_back(engine: Engine, lab: Settings) -> None:
    entered = asyncio.Event()

    async def hanging_probe(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        await asyncio.sleep(3600)

    job = enqueue(engine, "test", "127.0.0.40", actor="t")
    stop = asyncio.Event()
    first = Worker(engine, lab, name="first", probe=hanging_probe)
    task = asyncio.create_task(first.run(stop))
    await asyncio.wait_for(entered.wait(), 10)
    assert get_job(engine, job.id).status == "running"  # type: ignore[union-attr]
    stop.set()
    await asyncio.wait_for(task, 10)
    back = get_job(engine, job.id)
    assert back is not None and back.status == "waiting" and back.attempts == 0
    # the abandoned test stays as evidence, closed
    [abandoned] = tests_for(engine, "127.0.0.40")
    assert abandoned.finished_at is None or abandoned.verdict == "untestable"


async def test_a_failing_probe_is_retried_then_given_up(engine: Engine, database_url: str) -> None:
    lab = lab_settings(database_url, max_attempts=2)
    calls = 0

    async def broken_probe(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        raise RuntimeError("probe exploded")

    nomination = submit_nomination(engine, lab, "127.0.0.41", "tester@lab")
    worker = Worker(engine, lab, name="w", probe=broken_probe)
    await worker.claim_and_start()
    await worker.wait_idle()
    [job] = list_jobs(engine)
    assert job.status == "waiting" and "probe exploded" in (job.last_error or "")
    with writer(engine).begin() as conn:  # skip the retry delay
        from dnsbl.models.relay import Job

        conn.execute(update(Job).values(run_after=utcnow()))
    await worker.claim_and_start()
    await worker.wait_idle()
    assert calls == 2
    assert get_job(engine, job.id).status == "failed"  # type: ignore[union-attr]
    view = get_nomination(engine, nomination.id)
    assert view is not None and (view.status, view.verdict) == ("done", "untestable")
    # both attempts' tests stay as evidence, closed with the error
    attempts = tests_for(engine, "127.0.0.41")
    assert len(attempts) == 2
    assert all(t.verdict == "untestable" and "probe exploded" in (t.reason or "") for t in attempts)


async def test_policy_checked_again_when_the_job_runs(engine: Engine, lab: Settings) -> None:
    from dnsbl.policy import add_policy_network

    nomination = submit_nomination(engine, lab, "127.0.0.42", "tester@lab")
    add_policy_network(engine, "127.0.0.42", "never-test", "opted out", "admin")

    async def no_probe(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a refused host must not be probed")

    worker = Worker(engine, lab, name="w", probe=no_probe)
    await worker.claim_and_start()
    await worker.wait_idle()
    view = get_nomination(engine, nomination.id)
    assert view is not None and view.status == "refused"
    assert "opted out" in (view.refusal_reason or "")


def test_periodic_retests_and_sweeps(engine: Engine, lab: Settings) -> None:
    from dnsbl.addresses import parse_network
    from dnsbl.listings.store import Entry
    from dnsbl.relay.evidence import link_listings, set_verdict, start_test

    test_id = start_test(engine, "192.0.2.7", job_id=None, forced=False)
    set_verdict(engine, test_id, "confirmed", "arrived")
    store = ListingStore(engine)
    store.ensure_zones([ZONE])
    result = store.add(
        ZONE,
        [Entry(parse_network("192.0.2.7"), category="open-relay", reason=f"test #{test_id}")],
        actor="t",
        source="relay-test",
    )
    link_listings(engine, test_id, result.listing_ids)
    assert schedule_periodic(engine, lab) == 0  # tested just now
    with writer(engine).begin() as conn:
        conn.execute(update(RelayTest).values(started_at=utcnow() - timedelta(days=8)))
    assert schedule_periodic(engine, lab) == 1
    kinds = sorted((job.kind, job.target) for job in list_jobs(engine))
    assert kinds == [("expire", "expiry"), ("retest", "192.0.2.7")]
    # an expired listing is ended by the sweep
    with writer(engine).begin() as conn:
        conn.execute(update(Listing).values(expires_at=utcnow() - timedelta(seconds=1)))
    worker = Worker(engine, lab, name="w")

    async def sweep_only() -> None:
        from dnsbl.relay.jobs import claim

        [sweep] = [j for j in claim(engine, "w", limit=1, lease_seconds=10, max_attempts=3)]
        assert sweep.kind == "expire"
        await worker.run_job(sweep)

    asyncio.run(sweep_only())
    assert relay_listings(engine, "192.0.2.7") == []
    [ended] = listings_containing(store.engine, "192.0.2.7", active_only=False)
    assert ended.end_reason == "expired"


async def test_a_periodic_retest_waits_out_the_day(engine: Engine, lab: Settings) -> None:
    from dnsbl.relay.evidence import set_verdict, start_test

    earlier = start_test(engine, "127.0.0.43", job_id=None, forced=False)
    set_verdict(engine, earlier, "confirmed", "arrived")
    job = enqueue(engine, "retest", "127.0.0.43", actor="scheduler")  # not forced

    async def no_probe(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("tested twice within a day")

    worker = Worker(engine, lab, name="w", probe=no_probe)
    await worker.claim_and_start()
    await worker.wait_idle()
    waiting = get_job(engine, job.id)
    assert waiting is not None and waiting.status == "waiting" and waiting.attempts == 0
    assert waiting.run_after > utcnow() + timedelta(hours=23)
    assert [test.id for test in tests_for(engine, "127.0.0.43")] == [earlier]


async def test_a_probe_that_overruns_is_cut_off(engine: Engine, database_url: str) -> None:
    lab = lab_settings(database_url, session_timeout=0.1)

    async def stuck_probe(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(3600)

    import dnsbl.relay.worker as worker_module

    nomination = submit_nomination(engine, lab, "127.0.0.44", "tester@lab")
    grace, worker_module._PROBE_GRACE = worker_module._PROBE_GRACE, 0.1
    try:
        worker = Worker(engine, lab, name="w", probe=stuck_probe)
        await worker.claim_and_start()
        await worker.wait_idle()
    finally:
        worker_module._PROBE_GRACE = grace
    view = get_nomination(engine, nomination.id)
    assert view is not None and (view.status, view.verdict) == ("done", "untestable")
    [test] = tests_for(engine, "127.0.0.44")
    assert test.finished_at is not None and "did not end" in (test.reason or "")


async def test_a_worker_refuses_to_start_with_an_unknown_relay_zone(
    engine: Engine, database_url: str
) -> None:
    from dnsbl.errors import UnknownZoneError

    lab = lab_settings(database_url, list_zones=["nowhere.example"])
    with pytest.raises(UnknownZoneError):
        await Worker(engine, lab, name="w").run(asyncio.Event())


async def test_a_worker_that_lost_its_lease_drops_its_result(
    engine: Engine, database_url: str
) -> None:
    from dnsbl.models.relay import Job

    lab = lab_settings(database_url, lease_seconds=0.3)
    probing = asyncio.Event()

    async def slow_probe(*args: Any, **kwargs: Any) -> Any:
        probing.set()
        await asyncio.sleep(3600)

    nomination = submit_nomination(engine, lab, "127.0.0.45", "tester@lab")
    worker = Worker(engine, lab, name="slow", probe=slow_probe)
    await worker.claim_and_start()
    await asyncio.wait_for(probing.wait(), 10)
    with writer(engine).begin() as conn:  # another worker took the job over
        conn.execute(update(Job).values(lease_owner="other"))
    await asyncio.wait_for(worker.wait_idle(), 10)
    [job] = list_jobs(engine)
    assert (job.status, job.lease_owner) == ("running", "other")
    view = get_nomination(engine, nomination.id)
    assert view is not None and view.status == "testing"


async def test_concurrency_is_bounded(engine: Engine, database_url: str) -> None:
    lab = lab_settings(database_url, concurrency=2)
    running = peak = 0

    async def counting_probe(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        raise RuntimeError("no host here")

    for n in range(6):
        enqueue(engine, "test", f"127.0.0.{70 + n}", actor="t")
    stop = asyncio.Event()
    worker = Worker(engine, lab, name="w", probe=counting_probe)
    task = asyncio.create_task(worker.run(stop))
    async with asyncio.timeout(30):  # until all six were tried once and wait for a retry
        while any(
            job.attempts == 0 or job.status == "running"
            for job in list_jobs(engine)
            if job.kind == "test"
        ):
            await asyncio.sleep(0.05)
    stop.set()
    await task
    assert peak == 2
