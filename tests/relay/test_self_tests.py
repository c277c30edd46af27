"""Self-tests and dry runs against fake mail servers on 127.0.0.x, with the worker running.

A self-test lists nothing whatever it finds; one that finds the host open schedules a grace
test, which lists the host if it still relays then and not if it was fixed meanwhile; a host
already listed gets no grace test. A dry run lists nothing and schedules nothing. The limits:
the requester's own address only, policy, one test of a host at a time and per
`tester.min_test_interval`, one self-test per address per hour. Someone else's nomination
that joins a self-test's job is handed to a normal test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.errors import AddressError, NotYourAddress, PolicyRefused, RateLimited
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.store import ListingStore
from dnsbl.relay.evidence import FormOutcome, get_test
from dnsbl.relay.jobs import active_job, get_job
from dnsbl.relay.nominations import get_nomination, submit_nomination
from dnsbl.relay.self_tests import SelfTestView, get_self_test, submit_self_test, summary
from dnsbl.relay.verdicts import relay_listings
from dnsbl.relay.worker import run_worker
from tests.api_fixtures import add_listing
from tests.relay_lab import (  # noqa: F401 (fixtures)
    FakeHost,
    hosts_fixture,
    lab_settings,
    settled,
    worker_fixture,
)

GRACE_HOURS = 2 / 3600  # two seconds


@pytest.fixture
def lab(database_url: str) -> Settings:
    # min_test_interval 0: the grace test may follow its self-test seconds later
    return lab_settings(database_url, self_test_grace_hours=GRACE_HOURS, min_test_interval=0)


@contextlib.asynccontextmanager
async def _running(engine: Engine, lab: Settings) -> AsyncIterator[None]:
    """The worker and its collector, started once the test has set the stage."""
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_worker(lab, engine, started=started, stop=stop))
    await asyncio.wait_for(started.wait(), 10)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _done(engine: Engine, self_test_id: int) -> SelfTestView:
    await settled(engine, [self_test_id])
    view = get_self_test(engine, self_test_id)
    assert view is not None
    return view


async def _grace_decided(engine: Engine, self_test_id: int, timeout: float = 60) -> SelfTestView:
    async with asyncio.timeout(timeout):
        while True:
            view = get_self_test(engine, self_test_id)
            assert view is not None and view.grace is not None
            if view.grace.verdict is not None:
                return view
            await asyncio.sleep(0.1)


async def test_an_open_relay_is_listed_by_its_grace_test_only(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost], worker: asyncio.Event
) -> None:
    hosts("127.0.0.60", "open")
    asked = submit_self_test(engine, lab, "127.0.0.60")
    assert asked.request.kind == "self-test" and asked.request.status == "queued"
    view = await _done(engine, asked.request.id)
    assert view.request.verdict == "confirmed"
    assert view.test is not None and view.test.dry_run and view.test.listed_as == []
    outcomes = {form.form: form.outcome for form in view.forms}
    assert FormOutcome.RELAYED in outcomes.values()
    assert {a.form for a in view.test.arrivals} <= {
        f for f, o in outcomes.items() if o == FormOutcome.RELAYED
    }
    assert all(form.mail_from is not None and form.rcpt_to for form in view.forms)
    # the grace test is scheduled (not run yet, or just run): nothing listed by the self-test
    assert view.grace is not None
    assert "a normal relay test is scheduled" in summary(view) or view.grace.verdict
    decided = await _grace_decided(engine, asked.request.id)
    assert decided.grace is not None and decided.grace.verdict == "confirmed"
    [listing] = relay_listings(engine, "127.0.0.60")
    assert f"#{decided.grace.test_id}" in (listing.reason or "")
    assert "it was listed" in summary(decided)
    job = get_job(engine, decided.grace.job_id)
    assert job is not None and job.kind == "grace-test" and not job.forced


async def test_a_relay_fixed_before_its_grace_test_is_not_listed(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost]
) -> None:
    host = hosts("127.0.0.61", "open")
    asked = submit_self_test(engine, lab, "127.0.0.61")
    async with _running(engine, lab):
        view = await _done(engine, asked.request.id)
    assert view.request.verdict == "confirmed" and view.grace is not None
    # with no worker running, the grace test cannot come before the fix
    host.behaviour = "closed"  # the operator fixes the relay within the grace period
    async with _running(engine, lab):
        decided = await _grace_decided(engine, asked.request.id)
    assert decided.grace is not None and decided.grace.verdict == "closed"
    assert relay_listings(engine, "127.0.0.61") == []
    assert "it was not listed" in summary(decided)


async def test_a_listed_host_gets_no_grace_and_a_closed_self_test_changes_nothing(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost]
) -> None:
    hosts("127.0.0.62", "open")
    hosts("127.0.0.63", "closed")
    ListingStore(engine).ensure_zones(lab.zone_names)
    add_listing(engine, "127.0.0.62")
    add_listing(engine, "127.0.0.63")
    opened = submit_self_test(engine, lab, "127.0.0.62").request.id
    closed = submit_self_test(engine, lab, "127.0.0.63").request.id
    async with _running(engine, lab):
        open_view, closed_view = await _done(engine, opened), await _done(engine, closed)
    assert open_view.request.verdict == "confirmed"
    assert open_view.grace is None and "listed already" in (open_view.grace_note or "")
    assert active_job(engine, "127.0.0.62") is None
    # a closed self-test does not delist: a listed host leaves by its removal path
    assert closed_view.request.verdict == "closed"
    assert all(f.outcome == FormOutcome.REFUSED for f in closed_view.forms)
    assert len(listings_containing(engine, "127.0.0.63")) == 1
    assert "Nothing was listed" in summary(closed_view)


async def test_a_dry_run_lists_nothing_and_schedules_nothing(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost], worker: asyncio.Event
) -> None:
    hosts("127.0.0.64", "open")
    dry = submit_nomination(engine, lab, "127.0.0.64", "key:1", dry_run=True)
    assert dry.kind == "dry-run"
    await settled(engine, [dry.id])
    done = get_nomination(engine, dry.id)
    assert done is not None and done.verdict == "confirmed" and done.grace_job_id is None
    test = get_test(engine, done.test_id or 0)
    assert test is not None and test.dry_run and test.arrivals and test.transcript
    assert relay_listings(engine, "127.0.0.64") == []
    assert active_job(engine, "127.0.0.64") is None
    # a later nomination is not answered by the dry run's verdict: it gets a real test
    real = submit_nomination(engine, lab, "127.0.0.64", "alice")
    assert real.id != dry.id and real.kind == "nomination"
    await settled(engine, [real.id])
    assert len(relay_listings(engine, "127.0.0.64")) == 1


async def test_a_nomination_joining_a_self_test_gets_a_normal_test(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost]
) -> None:
    hosts("127.0.0.65", "closed")
    asked = submit_self_test(engine, lab, "127.0.0.65")
    joined = submit_nomination(engine, lab, "127.0.0.65", "alice")  # the queue holds one job
    assert joined.id != asked.request.id
    async with _running(engine, lab):
        await settled(engine, [asked.request.id, joined.id])
    mine, theirs = get_nomination(engine, asked.request.id), get_nomination(engine, joined.id)
    assert mine is not None and theirs is not None
    assert mine.verdict == theirs.verdict == "closed"
    assert theirs.test_id != mine.test_id  # a test of its own, which could have listed
    theirs_test = get_test(engine, theirs.test_id or 0)
    assert theirs_test is not None and not theirs_test.dry_run


def test_the_limits(engine: Engine, database_url: str) -> None:
    lab = lab_settings(database_url, never_test=["127.0.0.99/32"], min_test_interval=3600)
    with pytest.raises(NotYourAddress, match=r"only the address the request comes from"):
        submit_self_test(engine, lab, "127.0.0.66", "127.0.0.67")
    with pytest.raises(AddressError):
        submit_self_test(engine, lab, "testclient")
    # a dual-stack listener sees an IPv4 client as IPv4-mapped: it is that IPv4 address
    with pytest.raises(NotYourAddress, match=r"\(127\.0\.0\.66\)"):
        submit_self_test(engine, lab, "::ffff:127.0.0.66", "127.0.0.67")
    with pytest.raises(PolicyRefused, match="never-test"):
        submit_self_test(engine, lab, "127.0.0.99")
    with pytest.raises(PolicyRefused, match="outside testable networks"):
        submit_self_test(engine, lab, "10.1.2.3")
    first = submit_self_test(engine, lab, "127.0.0.66", "127.0.0.66")
    with pytest.raises(RateLimited, match="one self-test per address per hour") as hourly:
        submit_self_test(engine, lab, "127.0.0.66")
    assert 3500 < hourly.value.retry_after <= 3600
    # a host with a test queued is not free: neither a self-test nor a dry run runs beside it
    submit_nomination(engine, lab, "127.0.0.67", "alice")
    with pytest.raises(RateLimited, match="already waiting") as busy:
        submit_self_test(engine, lab, "127.0.0.67")
    assert busy.value.retry_after >= 60
    with pytest.raises(RateLimited, match="already waiting"):
        submit_nomination(engine, lab, "127.0.0.67", "key:1", dry_run=True)
    # a host tested within min_test_interval is not free either
    from dnsbl.relay.evidence import set_verdict, start_test

    set_verdict(engine, start_test(engine, "127.0.0.68", job_id=None, forced=False), "closed", "")
    with pytest.raises(RateLimited, match="tested less than 3600 s ago") as recent:
        submit_self_test(engine, lab, "127.0.0.68")
    assert 3500 < recent.value.retry_after <= 3600
    assert get_self_test(engine, first.request.id) is not None
    assert get_self_test(engine, 9999) is None


def test_self_tests_count_toward_the_limits_on_new_tests(engine: Engine, database_url: str) -> None:
    lab = lab_settings(database_url, nominations_per_window=2)
    submit_self_test(engine, lab, "127.0.0.70")
    submit_nomination(engine, lab, "127.0.0.71", "alice")
    with pytest.raises(RateLimited, match="limit 2, from everyone"):
        submit_self_test(engine, lab, "127.0.0.72")


def test_a_self_test_proved_open_late_gets_its_grace_test(engine: Engine, lab: Settings) -> None:
    from dnsbl.models import utcnow
    from dnsbl.relay.answers import answer_requests, confirm_late
    from dnsbl.relay.collector import Arrival
    from dnsbl.relay.evidence import record_arrivals, record_probe, set_verdict, start_test
    from dnsbl.relay.jobs import claim, finish
    from dnsbl.relay.tester.battery import EnvelopeForm
    from dnsbl.relay.tester.probe import FormResult, ProbeReport

    ListingStore(engine).ensure_zones(lab.zone_names)
    asked = submit_self_test(engine, lab, "127.0.0.73")
    [job] = claim(engine, "w", limit=1, lease_seconds=60, max_attempts=3)
    test_id = start_test(engine, job.target, job_id=job.id, forced=False, dry_run=True)
    form = FormResult(EnvelopeForm("null-sender", "<>", "<rt-late@relaytest.example>"), "late1")
    form.rcpt_reply, form.data_reply, form.accepted = "250 ok", "250 queued", True
    now = utcnow()
    record_probe(engine, test_id, ProbeReport(job.target, now, now, "accepted", None, forms=[form]))
    set_verdict(engine, test_id, "suspicious", "no test message arrived")
    assert finish(engine, job.id, "w", test_id=test_id)
    answer_requests(engine, lab, job, test_id=test_id, verdict="suspicious")
    view = get_self_test(engine, asked.request.id)
    assert view is not None and view.request.verdict == "suspicious" and view.grace is None
    assert confirm_late(engine, lab) == []
    record_arrivals(engine, [Arrival("late1", job.target, "", [], utcnow(), "Subject: x")])
    assert confirm_late(engine, lab) == [test_id]
    late = get_self_test(engine, asked.request.id)
    assert late is not None and late.request.verdict == "confirmed"
    assert late.grace is not None and late.grace.status == "waiting"
    assert relay_listings(engine, job.target) == []  # the late proof lists nothing by itself
