"""Greylisting: a held test goes back to the queue, comes back, and sends its envelopes again.

Fake hosts on 127.0.0.x greylist as postgrey does (450 to a new client/sender/recipient
triplet until a delay has passed) in front of an open relay, a closed one, or forever; the
worker and its collector run in-process. Real Postfix behind Debian's postgrey is in
tests/e2e/test_hidden_relays.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.relay.evidence import RelayTestView, tests_for
from dnsbl.relay.jobs import JobView, active_job, get_job, list_jobs
from dnsbl.relay.nominations import get_nomination, submit_nomination
from dnsbl.relay.schedule import next_allowed_test, schedule_retest
from dnsbl.relay.tester.tokens import find_token
from dnsbl.relay.verdicts import relay_listings
from dnsbl.relay.worker import Worker, run_worker
from tests.relay_lab import (  # noqa: F401 (fixtures)
    FakeHost,
    hosts_fixture,
    lab_settings,
    settled,
    worker_fixture,
)


@pytest.fixture
def lab(database_url: str) -> Settings:
    return lab_settings(database_url, greylist_retry=1.5, wait_window=1.0)


async def _held(engine: Engine, address: str, timeout: float = 30.0) -> JobView:
    """The job of `address` once it is back in the queue waiting out greylisting."""
    async with asyncio.timeout(timeout):
        while True:
            job = active_job(engine, address)
            if (
                job is not None
                and (job.status, job.attempts) == ("waiting", 0)
                and (job.last_error or "").startswith("greylisted:")
            ):
                return job
            await asyncio.sleep(0.05)


def _variant(lab: Settings, **tester: Any) -> Settings:
    """`lab` (its port and collector, which the `hosts` use) with other tester settings."""
    return lab.model_copy(update={"tester": lab.tester.model_copy(update=tester)})


async def _settle_with_worker(engine: Engine, settings: Settings, nominations: list[int]) -> None:
    """Run a worker and its collector under `settings` until the nominations are done."""
    started, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_worker(settings, engine, started=started, stop=stop))
    try:
        await asyncio.wait_for(started.wait(), 10)
        await settled(engine, nominations)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _only_test(engine: Engine, address: str) -> RelayTestView:
    [test] = tests_for(engine, address)  # one test: its retries are sessions of it
    return test


async def test_a_greylisting_open_relay_is_confirmed_after_the_retry(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost], worker: asyncio.Event
) -> None:
    host = hosts("127.0.0.50", "greylist", greylist_delay=1.0)
    nomination = submit_nomination(engine, lab, "127.0.0.50", "tester@lab")

    job = await _held(engine, "127.0.0.50")
    waiting = _only_test(engine, "127.0.0.50")
    assert waiting.verdict is None and waiting.retries == 0 and waiting.retry_at is not None
    assert job.run_after == waiting.retry_at
    during = get_nomination(engine, nomination.id)
    assert during is not None and during.status == "testing" and during.queue_position is None
    # the wait counts no attempt; a new nomination of the host joins it
    again = submit_nomination(engine, lab, "127.0.0.50", "someone@lab")
    assert again.id == nomination.id

    await settled(engine, [nomination.id])
    done = get_nomination(engine, nomination.id)
    assert done is not None and done.verdict == "confirmed"
    test = _only_test(engine, "127.0.0.50")
    assert done.test_id == test.id
    assert test.retries == 1 and test.retry_at is None
    assert test.reason is not None and test.reason.endswith("after 1 greylisting retry")
    assert relay_listings(engine, "127.0.0.50") != []
    # both sessions are in the evidence, the retry's after the first
    transcript = test.transcript or ""
    first, _, second = transcript.partition("greylisting retry 1 of at most 2")
    assert "450 4.2.0" in first and "connecting to 127.0.0.50" in first
    assert "connecting to 127.0.0.50" in second and "250 " in second
    # the same envelopes, from the same client: the arrived tokens are those held at first
    held_tokens = {find_token(rcpt) for _client, _sender, rcpt in host.seen.greylisted}
    assert test.arrivals and {arrival.token for arrival in test.arrivals} <= held_tokens
    assert {client for client, _sender, _rcpt in host.seen.greylisted} == {test.client_address}
    finished = get_job(engine, job.id)
    assert finished is not None and finished.status == "done" and finished.attempts == 1
    # the test counts once against the one-test-a-day limit, from its first session
    allowed = next_allowed_test(engine, lab, "127.0.0.50")
    assert allowed == test.started_at + timedelta(seconds=lab.tester.min_test_interval)


async def test_a_greylisting_closed_relay_is_closed_not_untestable(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost], worker: asyncio.Event
) -> None:
    hosts("127.0.0.51", "greylist-closed", greylist_delay=1.0)
    nomination = submit_nomination(engine, lab, "127.0.0.51", "tester@lab")
    await settled(engine, [nomination.id])
    done = get_nomination(engine, nomination.id)
    test = _only_test(engine, "127.0.0.51")
    assert done is not None and done.verdict == "closed", test
    assert test.retries == 1
    assert "554 5.7.1 Relay access denied" in (test.transcript or "").split("greylisting retry")[1]


async def test_a_host_that_never_lets_go_is_untestable_after_the_last_retry(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost]
) -> None:
    quick = _variant(lab, greylist_retry=0.5, greylist_attempts=2, wait_window=0.5)
    host = hosts("127.0.0.52", "greylist-forever")
    nomination = submit_nomination(engine, quick, "127.0.0.52", "tester@lab")
    await _settle_with_worker(engine, quick, [nomination.id])
    done = get_nomination(engine, nomination.id)
    test = _only_test(engine, "127.0.0.52")
    assert done is not None and done.verdict == "untestable"
    assert test.retries == 2
    assert test.reason is not None and "after 2 greylisting retries" in test.reason
    assert "greylisting or a full queue" in test.reason
    # each greylisted envelope was sent three times: once, then once per retry
    sent = Counter(host.seen.greylisted)
    assert set(sent.values()) == {3}


async def test_no_retries_leaves_a_greylisted_host_untestable(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost]
) -> None:
    never = _variant(lab, greylist_attempts=0)
    hosts("127.0.0.53", "greylist", greylist_delay=60)
    nomination = submit_nomination(engine, never, "127.0.0.53", "tester@lab")
    worker = Worker(engine, never, name="w")
    await worker.claim_and_start()
    await worker.wait_idle()
    done = get_nomination(engine, nomination.id)
    assert done is not None and done.verdict == "untestable"
    assert _only_test(engine, "127.0.0.53").retries == 0


async def test_the_wait_holds_no_worker_slot(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost]
) -> None:
    one_slot = _variant(lab, concurrency=1, greylist_retry=2.0)
    hosts("127.0.0.54", "greylist", greylist_delay=1.0)
    hosts("127.0.0.55", "open")
    greylisted = submit_nomination(engine, one_slot, "127.0.0.54", "tester@lab")
    plain = submit_nomination(engine, one_slot, "127.0.0.55", "tester@lab")
    await _settle_with_worker(engine, one_slot, [greylisted.id, plain.id])
    held, other = _only_test(engine, "127.0.0.54"), _only_test(engine, "127.0.0.55")
    assert (held.verdict, other.verdict) == ("confirmed", "confirmed")
    # one slot: the other host was tested while the first waited out its greylisting
    assert held.started_at < other.started_at
    assert other.finished_at is not None and held.finished_at is not None
    assert other.finished_at < held.finished_at


async def test_an_admin_retest_meanwhile_keeps_the_greylisting_time(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost], worker: asyncio.Event
) -> None:
    hosts("127.0.0.56", "greylist", greylist_delay=1.0)
    nomination = submit_nomination(engine, lab, "127.0.0.56", "tester@lab")
    job = await _held(engine, "127.0.0.56")
    retest = schedule_retest(engine, lab, "127.0.0.56", actor="admin")
    assert retest.id == job.id and retest.forced
    assert retest.run_after == job.run_after  # not pulled forward
    await settled(engine, [nomination.id])
    assert _only_test(engine, "127.0.0.56").verdict == "confirmed"
    assert [j.id for j in list_jobs(engine) if j.target == "127.0.0.56"] == [job.id]


async def test_a_policy_refusal_meanwhile_ends_the_waiting_test(
    engine: Engine, lab: Settings, hosts: Callable[..., FakeHost], worker: asyncio.Event
) -> None:
    from dnsbl.policy import add_policy_network

    host = hosts("127.0.0.57", "greylist", greylist_delay=1.0)
    nomination = submit_nomination(engine, lab, "127.0.0.57", "tester@lab")
    await _held(engine, "127.0.0.57")
    sent = len(host.seen.greylisted)
    add_policy_network(engine, "127.0.0.57", "never-test", "opted out", "admin")
    await settled(engine, [nomination.id])
    view = get_nomination(engine, nomination.id)
    assert view is not None and view.status == "refused"
    test = _only_test(engine, "127.0.0.57")
    assert test.verdict == "untestable" and test.finished_at is not None
    assert test.reason == "refused by policy: on the never-test list (127.0.0.57/32: opted out)"
    assert len(host.seen.greylisted) == sent  # nothing sent again
