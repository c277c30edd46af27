"""Self-tests: a mail server asks for a test of itself, sees every form tried, and is not listed.

A self-test tests only the address the request comes from (a body naming another address is
refused), runs the battery as a nomination's test does, and lists nothing. So that an open
relay cannot hide behind self-tests, one that finds the host open schedules a normal test
(a *grace test*) `tester.self_test_grace_hours` later, which lists the host if it is still
open then — unless the host is listed already (it has a removal path). Held to the limits of
every test (policy, one test of a host per `tester.min_test_interval`, the limits on new tests
whoever asks) and to one self-test per address per `SELF_TEST_WINDOW`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select, update

from dnsbl.addresses import peer_address
from dnsbl.config import Settings
from dnsbl.db import writer
from dnsbl.errors import NotYourAddress, PolicyRefused, RateLimited
from dnsbl.listings.covering import listings_containing
from dnsbl.models import utcnow
from dnsbl.models.relay import Nomination
from dnsbl.relay.evidence import FormResult, RelayTestView, form_results, get_test
from dnsbl.relay.jobs import JobView, enqueue, get_job
from dnsbl.relay.nominations import NominationView, get_nomination, queue_dry_test
from dnsbl.relay.schedule import next_allowed_test, refusal_to_test
from dnsbl.relay.states import (
    DRY_JOBS,
    JobKind,
    JobStatus,
    NominationKind,
    NominationStatus,
    Verdict,
)
from dnsbl.timestamps import aware

SELF_TEST_WINDOW = 3600.0
"""Seconds in which an address may ask for one self-test."""


@dataclass(frozen=True, slots=True)
class GraceTestView:
    """The normal test a self-test that found the host open scheduled: when it is due (or
    was, last), when it ran, and its outcome."""

    job_id: int
    due_at: datetime
    status: JobStatus
    test_id: int | None
    verdict: Verdict | None
    ran_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SelfTestView:
    """A self-test as its requester sees it: where it stands, every form tried with its
    outcome, the test's evidence, and the grace test (or why there is none)."""

    request: NominationView
    test: RelayTestView | None
    forms: list[FormResult]
    grace: GraceTestView | None
    grace_note: str | None


def submit_self_test(
    engine: Engine, settings: Settings, requester: str, address: str | None = None
) -> SelfTestView:
    """Queue a self-test of `requester` (the address the request came from).

    Raises `AddressError` (the requester is not one IP address), `NotYourAddress` (`address`
    is another), `PolicyRefused` (policy forbids testing it) and `RateLimited` (a limit).
    """
    own = peer_address(requester)  # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d
    if address is not None and peer_address(address) != own:
        raise NotYourAddress(
            f"a self-test tests only the address the request comes from ({own}), "
            f"not {address}: send the request from that host, or nominate it instead"
        )
    text = str(own)
    refusal = refusal_to_test(engine, settings.tester, text)
    if refusal is not None:
        raise PolicyRefused(f"{text}: {refusal}")
    _check_window(engine, text)
    nomination_id = queue_dry_test(engine, settings, text, text, NominationKind.SELF_TEST)
    view = get_self_test(engine, nomination_id)
    assert view is not None
    return view


def _check_window(engine: Engine, address: str) -> None:
    since = utcnow() - timedelta(seconds=SELF_TEST_WINDOW)
    with engine.connect() as conn:
        oldest = conn.scalar(
            select(func.min(Nomination.created_at)).where(
                Nomination.kind == NominationKind.SELF_TEST,
                Nomination.address == address,
                Nomination.status != NominationStatus.REFUSED,
                Nomination.created_at > since,
            )
        )
    if oldest is not None:
        raise RateLimited.until(
            aware(oldest) + timedelta(seconds=SELF_TEST_WINDOW),
            f"{address} asked for a self-test less than {SELF_TEST_WINDOW:g} s ago "
            "(one self-test per address per hour)",
        )


def get_self_test(engine: Engine, self_test_id: int) -> SelfTestView | None:
    """A self-test with its forms, evidence and grace test, or None."""
    request = get_nomination(engine, self_test_id)
    if request is None or request.kind != NominationKind.SELF_TEST:
        return None
    test = get_test(engine, request.test_id) if request.test_id else None
    forms = form_results(engine, request.test_id) if request.test_id else []
    grace = _grace(engine, request.grace_job_id)
    note = None
    if request.verdict == Verdict.CONFIRMED and grace is None:
        note = (
            "No grace test was scheduled: the host is listed already; "
            "ask for its removal once it is fixed."
        )
    return SelfTestView(request=request, test=test, forms=forms, grace=grace, grace_note=note)


def _grace(engine: Engine, job_id: int | None) -> GraceTestView | None:
    job = get_job(engine, job_id) if job_id is not None else None
    if job is None:
        return None
    test = get_test(engine, job.test_id) if job.test_id else None
    verdict = test.verdict if test is not None else None
    if verdict is None and job.status in (JobStatus.DONE, JobStatus.FAILED):
        verdict = Verdict.UNTESTABLE  # refused by policy when due, or given up on
    return GraceTestView(
        job_id=job.id,
        due_at=job.run_after,
        status=job.status,
        test_id=job.test_id,
        verdict=verdict,
        ran_at=test.started_at if test is not None else None,
    )


def schedule_grace_test(engine: Engine, settings: Settings, job: JobView) -> JobView | None:
    """After a self-test found `job.target` open: queue the normal test that lists it if it is
    still open `tester.self_test_grace_hours` later (no sooner than the once-a-day limit
    allows), and give it to the self-tests the job answered. None when the host is listed
    already, or policy forbids testing it now."""
    address = job.target
    listed = [listing for listing in listings_containing(engine, address) if not listing.excluded]
    if listed or refusal_to_test(engine, settings.tester, address):
        return None
    grace = timedelta(hours=settings.tester.self_test_grace_hours)
    due = max(utcnow() + grace, next_allowed_test(engine, settings, address))
    grace_job = enqueue(
        engine, JobKind.GRACE_TEST, address, actor=f"self-test-job:{job.id}", run_after=due
    )
    if grace_job.kind in DRY_JOBS:  # another dry test of the host came first: it lists nothing
        return None
    with writer(engine).begin() as conn:
        conn.execute(
            update(Nomination)
            .where(Nomination.job_id == job.id, Nomination.kind == NominationKind.SELF_TEST)
            .values(grace_job_id=grace_job.id)
        )
    return grace_job


def summary(view: SelfTestView) -> str:
    """What a self-test's result means for the host, plainly, with the grace test's time."""
    request, grace = view.request, view.grace
    address = request.address
    if request.status == NominationStatus.REFUSED:
        return f"Refused: {request.refusal_reason}."
    if request.status != NominationStatus.DONE:
        return f"The test of {address} is {request.status}. A self-test never lists the host."
    if request.verdict != Verdict.CONFIRMED:
        found = {
            Verdict.CLOSED: "refused to relay every form",
            Verdict.SUSPICIOUS: "accepted some forms, but no test message arrived",
            Verdict.UNTESTABLE: "could not be tested",
        }.get(request.verdict or Verdict.UNTESTABLE, "could not be tested")
        return f"{address} {found}. Nothing was listed."
    said = f"{address} is an open relay: a test message sent through it arrived."
    if grace is None:
        return f"{said} Nothing was listed by this test. {view.grace_note or ''}".strip()
    when = f"{grace.due_at:%Y-%m-%d %H:%M:%S} UTC"
    if grace.status in (JobStatus.WAITING, JobStatus.RUNNING) or grace.verdict is None:
        return (
            f"{said} Nothing was listed by this test, but a normal relay test is scheduled "
            f"for {when}: if {address} still relays then, it will be listed. "
            "Close the relay before then."
        )
    outcome = "it was listed" if grace.verdict == Verdict.CONFIRMED else "it was not listed"
    ran = f"{grace.ran_at:%Y-%m-%d %H:%M:%S} UTC" if grace.ran_at else when
    return f"{said} The grace test ({ran}) found it {grace.verdict}: {outcome}."
