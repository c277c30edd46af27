"""The job queue on SQLite and PostgreSQL: dedupe per target, leases, takeover, limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, update

from dnsbl.config import Settings
from dnsbl.db import writer
from dnsbl.errors import AddressError, PolicyRefused
from dnsbl.models import utcnow
from dnsbl.models.relay import RelayTest
from dnsbl.policy import add_policy_network
from dnsbl.relay.evidence import get_test, start_test
from dnsbl.relay.jobs import (
    claim,
    enqueue,
    fail,
    finish,
    get_job,
    list_jobs,
    postpone,
    queue_position,
    queue_summary,
    renew_lease,
)
from dnsbl.relay.schedule import ensure_sweep, next_allowed_test, schedule_retest
from tests.relay_lab import lab_settings


@pytest.fixture
def lab(database_url: str) -> Settings:
    return lab_settings(database_url)


def _claim(engine: Engine, owner: str, *, limit: int = 10, lease: float = 60.0, now=None):
    return claim(engine, owner, limit=limit, lease_seconds=lease, max_attempts=3, now=now)


def test_one_active_job_per_target(engine: Engine) -> None:
    first = enqueue(engine, "test", "192.0.2.1", actor="a")
    again = enqueue(engine, "retest", "192.0.2.1", actor="b")
    other = enqueue(engine, "test", "192.0.2.2", actor="a")
    assert again.id == first.id and other.id != first.id
    assert queue_summary(engine) == {"waiting": 2, "running": 0, "done": 0, "failed": 0}
    assert [job.target for job in list_jobs(engine)] == ["192.0.2.2", "192.0.2.1"]


def test_forced_request_upgrades_a_delayed_waiting_job(engine: Engine) -> None:
    later = utcnow() + timedelta(hours=20)
    job = enqueue(engine, "test", "192.0.2.1", actor="a", run_after=later)
    assert _claim(engine, "w1") == []
    forced = enqueue(engine, "retest", "192.0.2.1", actor="admin", forced=True)
    assert forced.id == job.id and forced.forced and forced.run_after < later
    assert [claimed.id for claimed in _claim(engine, "w1")] == [job.id]


def test_claim_leases_and_finish_frees_the_target(engine: Engine) -> None:
    job = enqueue(engine, "test", "192.0.2.1", actor="a")
    [claimed] = _claim(engine, "w1")
    assert (claimed.id, claimed.status, claimed.lease_owner, claimed.attempts) == (
        job.id,
        "running",
        "w1",
        1,
    )
    assert _claim(engine, "w2") == []  # running, lease in force: nobody else gets it
    # the target's one active job is running, so a new request joins it
    assert enqueue(engine, "test", "192.0.2.1", actor="b").id == job.id
    assert finish(engine, job.id, "w1", test_id=None)
    done = get_job(engine, job.id)
    assert done is not None and done.status == "done" and done.lease_owner is None
    assert enqueue(engine, "test", "192.0.2.1", actor="b").id != job.id


def test_a_dead_workers_job_is_taken_over_after_its_lease(engine: Engine) -> None:
    job = enqueue(engine, "test", "192.0.2.1", actor="a")
    [first] = _claim(engine, "worker-that-dies", lease=30)
    test_id = start_test(engine, "192.0.2.1", job_id=job.id, forced=False)
    # the first worker dies here: it never renews nor finishes
    assert _claim(engine, "second") == []
    after_lease = utcnow() + timedelta(seconds=31)
    [second] = _claim(engine, "second", now=after_lease)
    assert second.id == first.id and second.lease_owner == "second" and second.attempts == 2
    abandoned = get_test(engine, test_id)
    assert abandoned is not None and abandoned.verdict == "untestable"
    # the first worker, back from the dead, cannot overwrite the takeover
    assert not renew_lease(engine, job.id, "worker-that-dies", 30)
    assert not finish(engine, job.id, "worker-that-dies")
    assert finish(engine, job.id, "second")


def test_a_job_whose_lease_keeps_running_out_fails(engine: Engine) -> None:
    job = enqueue(engine, "test", "192.0.2.1", actor="a")
    now = utcnow()
    for attempt in range(3):
        now += timedelta(seconds=61)
        assert [c.id for c in _claim(engine, f"w{attempt}", now=now)] == [job.id]
    assert _claim(engine, "w9", now=now + timedelta(seconds=61)) == []
    failed = get_job(engine, job.id)
    assert (
        failed is not None and failed.status == "failed" and "3 times" in (failed.last_error or "")
    )


def test_fail_retries_then_gives_up(engine: Engine) -> None:
    job = enqueue(engine, "test", "192.0.2.1", actor="a")
    _claim(engine, "w")
    assert fail(engine, job.id, "w", "boom", max_attempts=2, retry_in=0) == "waiting"
    _claim(engine, "w", now=utcnow() + timedelta(seconds=1))
    assert fail(engine, job.id, "w", "boom again", max_attempts=2) == "failed"
    assert fail(engine, job.id, "w", "not mine any more", max_attempts=2) is None
    assert queue_summary(engine)["failed"] == 1


def test_claim_takes_due_jobs_in_order_up_to_the_limit(engine: Engine) -> None:
    ids = [enqueue(engine, "test", f"192.0.2.{n}", actor="a").id for n in range(1, 6)]
    assert queue_position(engine, ids[0]) == 1 and queue_position(engine, ids[4]) == 5
    assert [job.id for job in _claim(engine, "w", limit=2)] == ids[:2]
    assert queue_position(engine, ids[2]) == 1 and queue_position(engine, ids[0]) is None
    assert [job.id for job in _claim(engine, "w", limit=10)] == ids[2:]


def test_postpone_puts_back_without_counting_an_attempt(engine: Engine) -> None:
    job = enqueue(engine, "test", "192.0.2.1", actor="a")
    _claim(engine, "w")
    later = utcnow() + timedelta(hours=1)
    assert postpone(engine, job.id, "w", later, "too soon")
    waiting = get_job(engine, job.id)
    assert waiting is not None and (waiting.status, waiting.attempts) == ("waiting", 0)
    assert _claim(engine, "w") == []


def test_once_a_day_unless_forced(engine: Engine, lab: Settings) -> None:
    assert next_allowed_test(engine, lab, "192.0.2.1") <= utcnow()
    test_id = start_test(engine, "192.0.2.1", job_id=None, forced=False)
    allowed = next_allowed_test(engine, lab, "192.0.2.1")
    assert allowed > utcnow() + timedelta(hours=23)
    delayed = schedule_retest(engine, lab, "192.0.2.1", actor="scheduler", forced=False)
    assert delayed.run_after >= allowed - timedelta(seconds=1) and not delayed.forced
    forced = schedule_retest(engine, lab, "192.0.2.1", actor="admin")
    assert forced.id == delayed.id and forced.forced and forced.run_after <= utcnow()
    with writer(engine).begin() as conn:  # the test was two days ago
        conn.execute(
            update(RelayTest)
            .where(RelayTest.id == test_id)
            .values(started_at=utcnow() - timedelta(days=2))
        )
    assert next_allowed_test(engine, lab, "192.0.2.1") <= utcnow()


def test_retest_refused_by_policy(engine: Engine, lab: Settings) -> None:
    with pytest.raises(PolicyRefused, match="outside testable networks"):
        schedule_retest(engine, lab, "10.1.2.3", actor="admin")
    add_policy_network(engine, "192.0.2.0/28", "never-test", "customer asked", "admin")
    with pytest.raises(PolicyRefused, match="never-test"):
        schedule_retest(engine, lab, "192.0.2.3", actor="admin")
    with pytest.raises(AddressError):
        schedule_retest(engine, lab, "not-an-ip", actor="admin")
    assert queue_summary(engine)["waiting"] == 0


def test_one_sweep_at_a_time(engine: Engine) -> None:
    first = ensure_sweep(engine)
    assert ensure_sweep(engine).id == first.id
    [claimed] = _claim(engine, "w")
    assert claimed.kind == "expire"
    finish(engine, first.id, "w")
    second = ensure_sweep(engine, delay=300)
    assert second.id != first.id and second.run_after > utcnow() + timedelta(seconds=250)


def test_concurrent_workers_never_claim_the_same_job(engine: Engine) -> None:
    from concurrent.futures import ThreadPoolExecutor

    for n in range(40):
        enqueue(engine, "test", f"192.0.2.{n}", actor="a")

    def worker(name: str) -> list[int]:
        mine: list[int] = []
        while batch := _claim(engine, name, limit=3):
            mine += [job.id for job in batch]
        return mine

    with ThreadPoolExecutor(4) as pool:
        claimed = list(pool.map(worker, ["w1", "w2", "w3", "w4"]))
    every = [job_id for ids in claimed for job_id in ids]
    assert len(every) == len(set(every)) == 40


def test_an_admins_retest_jumps_the_queue(engine: Engine) -> None:
    first = enqueue(engine, "test", "192.0.2.1", actor="a")
    forced = enqueue(engine, "retest", "192.0.2.9", actor="admin", forced=True)
    assert queue_position(engine, forced.id) == 1 and queue_position(engine, first.id) == 2
    assert [job.id for job in _claim(engine, "w", limit=1)] == [forced.id]
