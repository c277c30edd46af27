"""Nominations: anyone asks for a host to be tested; policy and limits decide whether it is.

A nomination is validated (one IP address), held to a per-submitter limit, checked against
policy (a refusal is recorded with its reason, then raised), deduplicated (a host already
queued or under test, or tested within `tester.min_test_interval`, answers with the existing
record), held to the limits on new tests whoever asks (per /24 or /48, and in all), and
queued as a test job. The worker settles it when the test has a verdict.

A dry run (an operator's) and a self-test (`dnsbl.relay.self_tests`) are nominations of other
kinds: the same test, queued by `queue_dry_test` as a job that lists nothing; the host must be
free to test now (nothing queued, not tested within `tester.min_test_interval`), or the
request is refused with the time it may be asked again.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, insert, or_, select, update
from sqlalchemy.orm import Session

from dnsbl.addresses import parse_address
from dnsbl.config import Settings
from dnsbl.db import writer
from dnsbl.errors import PolicyRefused, RateLimited
from dnsbl.models import utcnow
from dnsbl.models.relay import Job, Nomination, RelayTest
from dnsbl.relay.jobs import enqueue, queue_position
from dnsbl.relay.schedule import next_allowed_test, refusal_to_test, refuse_until_free
from dnsbl.relay.states import (
    ACTIVE_JOB,
    JobKind,
    JobStatus,
    NominationKind,
    NominationStatus,
    Verdict,
)
from dnsbl.timestamps import aware, maybe_aware


@dataclass(frozen=True, slots=True)
class NominationView:
    """A nomination as its submitter sees it.

    `status`: queued, testing, done or refused; `verdict` once done (confirmed, suspicious,
    closed or untestable); `queue_position` while queued (1 = next); `kind`: a nomination,
    or a self-test or dry run (which list nothing); `grace_job_id`: a self-test's grace test.
    """

    id: int
    address: str
    submitter: str
    note: str | None
    status: NominationStatus
    queue_position: int | None
    verdict: Verdict | None
    test_id: int | None
    created_at: datetime
    finished_at: datetime | None
    refusal_reason: str | None
    kind: NominationKind = NominationKind.NOMINATION
    grace_job_id: int | None = None


def submit_nomination(
    engine: Engine,
    settings: Settings,
    address: str,
    submitter: str,
    note: str | None = None,
    *,
    dry_run: bool = False,
) -> NominationView:
    """Nominate `address` for a relay test; a `dry_run` tests it and lists nothing.

    Raises `AddressError` (not one IP address), `RateLimited` (the submitter's limit; for a
    dry run also a host not free to test now) and `PolicyRefused` (policy forbids the test;
    the refusal is recorded first).
    """
    text = str(parse_address(address))
    _check_limit(engine, settings, submitter)
    kind = NominationKind.DRY_RUN if dry_run else NominationKind.NOMINATION
    refusal = refusal_to_test(engine, settings.tester, text)
    if refusal is not None:
        _insert(
            engine,
            text,
            submitter,
            note,
            status=NominationStatus.REFUSED,
            refusal_reason=refusal,
            kind=kind,
        )
        raise PolicyRefused(f"{text}: {refusal}")
    if dry_run:
        view = get_nomination(engine, queue_dry_test(engine, settings, text, submitter, kind, note))
        assert view is not None
        return view
    existing = _existing(engine, settings, text)
    if existing is not None:
        return existing
    _check_capacity(engine, settings, text)
    job = enqueue(
        engine,
        JobKind.TEST,
        text,
        actor=f"nomination:{submitter}",
        run_after=next_allowed_test(engine, settings, text),
    )
    nomination_id = _insert(
        engine, text, submitter, note, status=NominationStatus.QUEUED, job_id=job.id
    )
    view = get_nomination(engine, nomination_id)
    assert view is not None
    return view


def queue_dry_test(
    engine: Engine,
    settings: Settings,
    address: str,
    submitter: str,
    kind: NominationKind,
    note: str | None = None,
) -> int:
    """Queue a test of `address` that lists nothing (a self-test or a dry run), once policy
    has allowed it; returns the nomination's id.

    Raises `RateLimited` when the host is not free to test now (`refuse_until_free`) or the
    limits on new tests whoever asks are reached.
    """
    refuse_until_free(engine, settings, address)
    _check_capacity(engine, settings, address)
    job_kind = JobKind.SELF_TEST if kind == NominationKind.SELF_TEST else JobKind.DRY_RUN
    job = enqueue(engine, job_kind, address, actor=f"{kind}:{submitter}")
    if job.kind != job_kind:  # another request queued a test of the host a moment before
        refuse_until_free(engine, settings, address)
    return _insert(
        engine, address, submitter, note, status=NominationStatus.QUEUED, job_id=job.id, kind=kind
    )


def _check_limit(engine: Engine, settings: Settings, submitter: str) -> None:
    limit = settings.tester.nominations_per_submitter
    window = timedelta(seconds=settings.tester.nomination_window)
    since = utcnow() - window
    with engine.connect() as conn:
        count, oldest = conn.execute(
            select(func.count(), func.min(Nomination.created_at)).where(
                Nomination.submitter == submitter, Nomination.created_at > since
            )
        ).one()
    if count >= limit:
        raise RateLimited.until(
            aware(oldest) + window,
            f"{submitter} nominated {count} hosts in {window.total_seconds():g} s (limit {limit})",
        )


def _check_capacity(engine: Engine, settings: Settings, address: str) -> None:
    """The limits on new tests whoever asks: per target network (a /24, a /48) and in all.

    A submitter's own limit does not stop many submitters (or one with many addresses) from
    aiming the tester at one network; these do. Refused nominations do not count: they
    probe nothing. Self-tests and dry runs count as any nomination.
    """
    tester = settings.tester
    window = timedelta(seconds=tester.nomination_window)
    since = utcnow() - window
    ipv6 = ":" in address
    network = ipaddress.ip_network(f"{address}/{48 if ipv6 else 24}", strict=False)
    # IPv4 text shares its /24's prefix; IPv6 text need not (zeros compress): filter here.
    similar = "%:%" if ipv6 else address.rsplit(".", 1)[0] + ".%"
    recent = (Nomination.created_at > since, Nomination.status != NominationStatus.REFUSED)
    with engine.connect() as conn:
        total, oldest = conn.execute(
            select(func.count(), func.min(Nomination.created_at)).where(*recent)
        ).one()
        if total >= tester.nominations_per_window:
            raise RateLimited.until(
                aware(oldest) + window,
                f"{total} hosts were nominated in {window.total_seconds():g} s "
                f"(limit {tester.nominations_per_window}, from everyone)",
            )
        rows = conn.execute(
            select(Nomination.address, Nomination.created_at).where(
                *recent, Nomination.address.like(similar)
            )
        ).all()
    near = [row.created_at for row in rows if ipaddress.ip_address(row.address) in network]
    if len(near) >= tester.nominations_per_network:
        raise RateLimited.until(
            aware(min(near)) + window,
            f"{len(near)} hosts of {network} were nominated in "
            f"{window.total_seconds():g} s (limit {tester.nominations_per_network})",
        )


def _insert(
    engine: Engine,
    address: str,
    submitter: str,
    note: str | None,
    *,
    status: NominationStatus,
    job_id: int | None = None,
    refusal_reason: str | None = None,
    test_id: int | None = None,
    verdict: Verdict | None = None,
    finished_at: datetime | None = None,
    kind: NominationKind = NominationKind.NOMINATION,
) -> int:
    now = utcnow()
    with writer(engine).begin() as conn:
        return int(
            conn.execute(
                insert(Nomination)
                .values(
                    address=address,
                    kind=kind,
                    submitter=submitter[:128],
                    note=note,
                    status=status,
                    refusal_reason=refusal_reason,
                    job_id=job_id,
                    test_id=test_id,
                    verdict=verdict,
                    created_at=now,
                    finished_at=finished_at
                    or (now if status == NominationStatus.REFUSED else None),
                )
                .returning(Nomination.id)
            ).scalar_one()
        )


def _existing(engine: Engine, settings: Settings, address: str) -> NominationView | None:
    """The record a new nomination of `address` would duplicate, if there is one.

    Self-tests and dry runs are not: they list nothing, so they answer no one else.
    """
    since = utcnow() - timedelta(seconds=settings.tester.min_test_interval)
    with engine.connect() as conn:
        row = conn.execute(
            select(Nomination.id)
            .outerjoin(Job, Job.id == Nomination.job_id)
            .where(
                Nomination.address == address,
                Nomination.kind == NominationKind.NOMINATION,
                or_(
                    Job.status.in_(ACTIVE_JOB),
                    (Nomination.status == NominationStatus.DONE) & (Nomination.finished_at > since),
                ),
            )
            .order_by(Nomination.id.desc())
            .limit(1)
        ).first()
        if row is not None:
            return get_nomination(engine, row.id)
        # Tested recently for another reason (a retest, a delist request): answer with it.
        test = conn.execute(
            select(RelayTest.id, RelayTest.verdict, RelayTest.finished_at)
            .where(
                RelayTest.address == address,
                RelayTest.verdict.is_not(None),
                RelayTest.started_at > since,
                RelayTest.dry_run.is_(False),
            )
            .order_by(RelayTest.id.desc())
            .limit(1)
        ).first()
    if test is None:
        return None
    nomination_id = _insert(
        engine,
        address,
        "(earlier test)",
        None,
        status=NominationStatus.DONE,
        test_id=test.id,
        verdict=Verdict(test.verdict),
        finished_at=test.finished_at,
    )
    return get_nomination(engine, nomination_id)


def get_nomination(engine: Engine, nomination_id: int) -> NominationView | None:
    """A nomination and where it stands, or None."""
    # A job back in the queue with its test unfinished waits out greylisting: still testing.
    started = (
        select(RelayTest.id)
        .where(RelayTest.job_id == Nomination.job_id, RelayTest.finished_at.is_(None))
        .exists()
    )
    with Session(engine) as session:
        row = session.execute(
            select(Nomination, Job.status.label("job_status"), started.label("started"))
            .outerjoin(Job, Job.id == Nomination.job_id)
            .where(Nomination.id == nomination_id)
        ).first()
    if row is None:
        return None
    nomination: Nomination = row[0]
    status = NominationStatus(nomination.status)
    verdict = Verdict(nomination.verdict) if nomination.verdict else None
    if status == NominationStatus.QUEUED and (
        row.job_status == JobStatus.RUNNING or (row.job_status == JobStatus.WAITING and row.started)
    ):
        status = NominationStatus.TESTING
    elif status == NominationStatus.QUEUED and row.job_status == JobStatus.FAILED:
        status, verdict = NominationStatus.DONE, Verdict.UNTESTABLE
    position = None
    if status == NominationStatus.QUEUED and nomination.job_id is not None:
        position = queue_position(engine, nomination.job_id)
    return NominationView(
        id=nomination.id,
        address=nomination.address,
        submitter=nomination.submitter,
        note=nomination.note,
        status=status,
        queue_position=position,
        verdict=verdict,
        test_id=nomination.test_id,
        created_at=aware(nomination.created_at),
        finished_at=maybe_aware(nomination.finished_at),
        refusal_reason=nomination.refusal_reason,
        kind=NominationKind(nomination.kind),
        grace_job_id=nomination.grace_job_id,
    )


def settle_nominations(
    engine: Engine,
    job_id: int,
    *,
    test_id: int | None,
    verdict: Verdict,
    refusal: str | None = None,
) -> int:
    """Give the nominations answered by a job their outcome; returns how many there were.

    With `refusal`, the job was refused by policy when it came to run.
    """
    values: dict[str, object] = {"finished_at": utcnow()}
    if refusal is not None:
        values.update(status=NominationStatus.REFUSED, refusal_reason=refusal)
    else:
        values.update(status=NominationStatus.DONE, test_id=test_id, verdict=verdict)
    with writer(engine).begin() as conn:
        done = conn.execute(
            update(Nomination)
            .where(Nomination.job_id == job_id, Nomination.status == NominationStatus.QUEUED)
            .values(**values)
        )
    return int(done.rowcount)
