"""The job queue: tests, retests and expiry sweeps as rows, claimed by workers under a lease.

A worker claims due jobs in one short write transaction (`SELECT … FOR UPDATE SKIP LOCKED`
on PostgreSQL, so workers never wait on each other's rows; SQLite's `BEGIN IMMEDIATE` single
writer elsewhere), marks them running with a lease, and renews the lease while it works. A
worker that dies simply stops renewing: once the lease runs out the job is due again and
another worker takes it, up to `max_attempts` times. Finishing checks the lease owner, so a
worker that lost its lease cannot overwrite the work of the one that took over.

At most one job per target is waiting or running (a partial unique index), so a host is never
tested twice at once, and queueing a test of a host already queued returns the queued job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from dnsbl.db import begin_write, writer
from dnsbl.errors import DnsblError
from dnsbl.models import utcnow
from dnsbl.models.relay import Job, RelayTest
from dnsbl.relay.states import ACTIVE_JOB, JobKind, JobStatus, Verdict
from dnsbl.timestamps import aware, maybe_aware


class JobStatusError(DnsblError, ValueError):
    """Unknown job status."""


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as the API, the CLI and the worker see it."""

    id: int
    kind: JobKind
    target: str
    status: JobStatus
    forced: bool
    attempts: int
    run_after: datetime
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    created_at: datetime
    created_by: str | None
    finished_at: datetime | None
    test_id: int | None


_COLUMNS = (
    Job.id,
    Job.kind,
    Job.target,
    Job.status,
    Job.forced,
    Job.attempts,
    Job.run_after,
    Job.lease_owner,
    Job.lease_until,
    Job.last_error,
    Job.created_at,
    Job.created_by,
    Job.finished_at,
    Job.test_id,
)


def _view(row: Any) -> JobView:
    r = row._mapping
    return JobView(
        id=r["id"],
        kind=JobKind(r["kind"]),
        target=r["target"],
        status=JobStatus(r["status"]),
        forced=bool(r["forced"]),
        attempts=r["attempts"],
        run_after=aware(r["run_after"]),
        lease_owner=r["lease_owner"],
        lease_until=maybe_aware(r["lease_until"]),
        last_error=r["last_error"],
        created_at=aware(r["created_at"]),
        created_by=r["created_by"],
        finished_at=maybe_aware(r["finished_at"]),
        test_id=r["test_id"],
    )


def _active_job(conn: Connection, target: str) -> JobView | None:
    row = conn.execute(
        select(*_COLUMNS).where(Job.target == target, Job.status.in_(ACTIVE_JOB))
    ).first()
    return _view(row) if row is not None else None


def get_job(engine: Engine, job_id: int) -> JobView | None:
    with engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(Job.id == job_id)).first()
    return _view(row) if row is not None else None


def active_job(engine: Engine, target: str) -> JobView | None:
    """The job waiting or running for `target`, if any."""
    with engine.connect() as conn:
        return _active_job(conn, target)


def enqueue(
    engine: Engine,
    kind: JobKind,
    target: str,
    *,
    actor: str,
    forced: bool = False,
    run_after: datetime | None = None,
) -> JobView:
    """Queue a job, or return the one already waiting or running for `target`.

    A forced request upgrades a waiting job of the target to forced and due now, so an
    admin's retest is not held back by a queued test's 24-hour delay — but a test waiting out
    greylisting keeps its time: sent earlier, its envelopes would only be held again.
    """
    now = utcnow()
    due = run_after or now
    with begin_write(engine) as conn:
        existing = _active_job(conn, target)
        if existing is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(Job).values(
                            kind=kind,
                            target=target,
                            status=JobStatus.WAITING,
                            forced=forced,
                            run_after=due,
                            attempts=0,
                            created_at=now,
                            created_by=actor,
                        )
                    )
            except IntegrityError:
                pass  # another writer queued this target first: theirs is the job
            existing = _active_job(conn, target)
            assert existing is not None
            return existing
        if forced and existing.status == JobStatus.WAITING and not existing.forced:
            greylisted = conn.scalar(
                select(RelayTest.id).where(
                    RelayTest.job_id == existing.id,
                    RelayTest.finished_at.is_(None),
                    RelayTest.retry_at.is_not(None),
                )
            )
            when = aware(existing.run_after)
            conn.execute(
                update(Job)
                .where(Job.id == existing.id)
                .values(forced=True, run_after=when if greylisted else min(when, due))
            )
            return _active_job(conn, target) or existing
        return existing


def claim(
    engine: Engine,
    owner: str,
    *,
    limit: int,
    lease_seconds: float,
    max_attempts: int,
    now: datetime | None = None,
) -> list[JobView]:
    """Claim up to `limit` due jobs for `owner` under a lease of `lease_seconds`.

    Due: waiting with `run_after` passed, or running with a lease that ran out (its worker
    died). A job whose lease ran out `max_attempts` times is marked failed instead.
    """
    now = now or utcnow()
    until = now + timedelta(seconds=lease_seconds)
    due = or_(
        and_(Job.status == JobStatus.WAITING, Job.run_after <= now),
        and_(Job.status == JobStatus.RUNNING, Job.lease_until < now),
    )
    claimed: list[int] = []
    with writer(engine).begin() as conn:
        rows = conn.execute(
            select(Job.id, Job.status, Job.attempts)
            .where(due)
            .order_by(Job.forced.desc(), Job.run_after, Job.id)  # an admin's retest first
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for job_id, status, attempts in rows:
            if status == JobStatus.RUNNING:
                _abandon_tests(conn, job_id, now)
                if attempts >= max_attempts:
                    conn.execute(
                        update(Job)
                        .where(Job.id == job_id)
                        .values(
                            status=JobStatus.FAILED,
                            finished_at=now,
                            lease_owner=None,
                            lease_until=None,
                            last_error=f"lease ran out {attempts} times; given up",
                        )
                    )
                    continue
            conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    status=JobStatus.RUNNING,
                    lease_owner=owner,
                    lease_until=until,
                    attempts=Job.attempts + 1,
                )
            )
            claimed.append(job_id)
        views = [_view(r) for r in conn.execute(select(*_COLUMNS).where(Job.id.in_(claimed)))]
    return sorted(views, key=lambda view: (not view.forced, view.run_after, view.id))


def _abandon_tests(conn: Connection, job_id: int, now: datetime) -> None:
    """Close the unfinished tests of a job whose worker vanished (kept as evidence)."""
    conn.execute(
        update(RelayTest)
        .where(RelayTest.job_id == job_id, RelayTest.finished_at.is_(None))
        .values(
            finished_at=now,
            verdict=Verdict.UNTESTABLE,
            reason="the worker running this test stopped before it finished",
        )
    )


def _held(job_id: int, owner: str) -> ColumnElement[bool]:
    return and_(Job.id == job_id, Job.lease_owner == owner, Job.status == JobStatus.RUNNING)


def renew_lease(engine: Engine, job_id: int, owner: str, lease_seconds: float) -> bool:
    """Extend `owner`'s lease on a running job; False when the lease was lost."""
    with writer(engine).begin() as conn:
        done = conn.execute(
            update(Job)
            .where(_held(job_id, owner))
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )
    return bool(done.rowcount)


def finish(engine: Engine, job_id: int, owner: str, *, test_id: int | None = None) -> bool:
    """Mark a job done (with the relay test that answered it); False when the lease was lost."""
    with writer(engine).begin() as conn:
        done = conn.execute(
            update(Job)
            .where(_held(job_id, owner))
            .values(
                status=JobStatus.DONE,
                finished_at=utcnow(),
                test_id=test_id,
                lease_owner=None,
                lease_until=None,
            )
        )
    return bool(done.rowcount)


def fail(
    engine: Engine,
    job_id: int,
    owner: str,
    error: str,
    *,
    max_attempts: int,
    retry_in: float = 60.0,
) -> JobStatus | None:
    """Record a failed attempt: the job waits `retry_in` s, or fails after `max_attempts`.

    Returns the job's new status, or None when the lease had been lost.
    """
    with writer(engine).begin() as conn:
        attempts = conn.scalar(select(Job.attempts).where(_held(job_id, owner)))
        if attempts is None:
            return None
        now = utcnow()
        status = JobStatus.FAILED if attempts >= max_attempts else JobStatus.WAITING
        conn.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                status=status,
                last_error=error[:2000],
                run_after=now + timedelta(seconds=retry_in),
                finished_at=now if status == JobStatus.FAILED else None,
                lease_owner=None,
                lease_until=None,
            )
        )
    return status


def postpone(engine: Engine, job_id: int, owner: str, until: datetime, why: str) -> bool:
    """Put a claimed job back to wait until `until` without counting an attempt."""
    with writer(engine).begin() as conn:
        done = conn.execute(
            update(Job)
            .where(_held(job_id, owner))
            .values(
                status=JobStatus.WAITING,
                run_after=until,
                attempts=Job.attempts - 1,
                last_error=why,
                lease_owner=None,
                lease_until=None,
            )
        )
    return bool(done.rowcount)


def queue_position(engine: Engine, job_id: int) -> int | None:
    """1 for the next waiting job to run, and so on; None unless the job is waiting."""
    with engine.connect() as conn:
        job = conn.execute(
            select(Job.status, Job.forced, Job.run_after).where(Job.id == job_id)
        ).first()
        if job is None or job.status != JobStatus.WAITING:
            return None
        # The claim order: forced first, then by due time, then by age.
        same_class_before = and_(
            Job.forced == job.forced,
            or_(
                Job.run_after < job.run_after,
                and_(Job.run_after == job.run_after, Job.id < job_id),
            ),
        )
        before = same_class_before if job.forced else or_(Job.forced, same_class_before)
        ahead = conn.scalar(
            select(func.count()).select_from(Job).where(Job.status == JobStatus.WAITING, before)
        )
    return int(ahead or 0) + 1


def queue_summary(engine: Engine) -> dict[str, int]:
    """How many jobs are waiting, running, failed and done."""
    with engine.connect() as conn:
        counts = dict(conn.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    return {status.value: int(counts.get(status, 0)) for status in JobStatus}


def list_jobs(
    engine: Engine, status: str | None = None, limit: int = 50, offset: int = 0
) -> list[JobView]:
    """Jobs, newest first, optionally of one status."""
    query = select(*_COLUMNS).order_by(Job.id.desc()).limit(limit).offset(offset)
    if status is not None:
        if status not in set(JobStatus):
            choices = ", ".join(JobStatus)
            raise JobStatusError(f"job status {status!r} is not one of {choices}")
        query = query.where(Job.status == status)
    with engine.connect() as conn:
        return [_view(row) for row in conn.execute(query)]
