"""Answering who asked for a job once it ends: nominations, delist requests and self-tests.

A job that listed by its verdict answers everyone waiting on it. A dry job (a self-test, a
dry run) answers only the requests that asked for a test listing nothing: a nomination or a
delist request that joined it (the queue holds one job per host) is handed to a normal job
instead — a test under the once-a-day rule, a forced retest — since a dry verdict changed
nothing on the list. A self-test that found the host open schedules its grace test first, so
that nominations handed over wait for that one — also when it proves the host open late
(`confirm_late`: its messages arrived after the wait window).
"""

from __future__ import annotations

from sqlalchemy import Engine, select, update

from dnsbl.config import Settings
from dnsbl.db import writer
from dnsbl.models.relay import DelistRequest, Job, Nomination, RelayTest
from dnsbl.relay.delisting import settle_delist_requests
from dnsbl.relay.jobs import JobView, enqueue, get_job
from dnsbl.relay.nominations import settle_nominations
from dnsbl.relay.schedule import SCHEDULER, next_allowed_test
from dnsbl.relay.self_tests import schedule_grace_test
from dnsbl.relay.states import (
    DRY_JOBS,
    DelistStatus,
    JobKind,
    NominationKind,
    NominationStatus,
    Verdict,
)
from dnsbl.relay.verdicts import confirm_late_arrivals


def answer_requests(
    engine: Engine,
    settings: Settings,
    job: JobView,
    *,
    test_id: int | None,
    verdict: Verdict,
    refusal: str | None = None,
) -> None:
    """Give the requests answered by a finished job their outcome (`refusal`: refused by
    policy when it came to run); hand a dry job's others to a normal job."""
    if job.kind in DRY_JOBS and refusal is None:
        if job.kind == JobKind.SELF_TEST and verdict == Verdict.CONFIRMED:
            schedule_grace_test(engine, settings, job)
        _hand_over(engine, settings, job)
    settle_nominations(engine, job.id, test_id=test_id, verdict=verdict, refusal=refusal)
    settle_delist_requests(engine, job.id, test_id=test_id, verdict=verdict)


def confirm_late(engine: Engine, settings: Settings) -> list[int]:
    """Confirm the suspicious tests whose messages arrived late (`confirm_late_arrivals`),
    and schedule the grace test of each self-test among them; the tests' ids."""
    confirmed = confirm_late_arrivals(engine, settings)
    if not confirmed:
        return confirmed
    with engine.connect() as conn:
        job_ids = list(
            conn.scalars(
                select(Job.id)
                .join(RelayTest, RelayTest.job_id == Job.id)
                .where(RelayTest.id.in_(confirmed), Job.kind == JobKind.SELF_TEST)
            )
        )
    for job_id in job_ids:
        job = get_job(engine, job_id)
        if job is not None:
            schedule_grace_test(engine, settings, job)
    return confirmed


def _hand_over(engine: Engine, settings: Settings, job: JobView) -> None:
    nominations = (
        Nomination.job_id == job.id,
        Nomination.kind == NominationKind.NOMINATION,
        Nomination.status == NominationStatus.QUEUED,
    )
    delists = (DelistRequest.job_id == job.id, DelistRequest.status == DelistStatus.PENDING)
    with engine.connect() as conn:
        waiting = conn.scalar(select(Nomination.id).where(*nominations).limit(1))
        pending = conn.scalar(select(DelistRequest.id).where(*delists).limit(1))
    if waiting is not None:
        due = next_allowed_test(engine, settings, job.target)
        test = enqueue(engine, JobKind.TEST, job.target, actor=SCHEDULER, run_after=due)
        with writer(engine).begin() as conn:
            conn.execute(update(Nomination).where(*nominations).values(job_id=test.id))
    if pending is not None:
        retest = enqueue(engine, JobKind.RETEST, job.target, actor=SCHEDULER, forced=True)
        with writer(engine).begin() as conn:
            conn.execute(update(DelistRequest).where(*delists).values(job_id=retest.id))
