"""Delist requests: a listed host's operator says it is fixed, and a forced retest decides.

Relay-test listings are delisted this way (manual listings are an admin's call). An address
listed only as a spam source (by a trap or reports) has nothing to retest: its request ends
the listing at once (`dnsbl.traps.escalation`), under the same limits, and is `delisted`.

A request needs the requester's confirmation that the host was fixed, is rate-limited
per address and per requester, and queues a forced retest of the host — or, for a multi-stage
relay's output, of the input whose test listed it. When the retest has its verdict, the
request is `delisted` if the address left the list (the test's evidence says why), else
`still-listed` (or `untestable`) and the request shows the new test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from dnsbl.addresses import parse_address
from dnsbl.config import Settings
from dnsbl.db import begin_write, writer
from dnsbl.errors import ConfirmationRequired, NotListedError, RateLimited
from dnsbl.models import utcnow
from dnsbl.models.relay import DelistRequest, Job, RelayTest, RelayTestListing
from dnsbl.relay.jobs import enqueue
from dnsbl.relay.states import ACTIVE_JOB, DelistStatus, JobKind, JobStatus, RelayCategory, Verdict
from dnsbl.relay.verdicts import relay_listings
from dnsbl.timestamps import aware, maybe_aware
from dnsbl.traps.escalation import one_sighting, remove_source, spam_listings


@dataclass(frozen=True, slots=True)
class DelistRequestView:
    """A delist request as its requester sees it.

    `status`: pending, retesting, delisted, still-listed or untestable; `test_id` is the
    retest's evidence once it ran.
    """

    id: int
    address: str
    requester: str
    note: str | None
    status: DelistStatus
    test_id: int | None
    created_at: datetime
    finished_at: datetime | None


def file_delist_request(
    engine: Engine,
    settings: Settings,
    address: str,
    requester: str,
    confirmed_fixed: bool,
    note: str | None = None,
) -> DelistRequestView:
    """Ask for `address` to leave the list; queues a forced retest.

    Raises `ConfirmationRequired` (not confirmed fixed), `AddressError`, `NotListedError`
    (no relay-test listing of the address) and `RateLimited`. A request for an address with
    one already in progress answers with that one.
    """
    if not confirmed_fixed:
        raise ConfirmationRequired()
    text = str(parse_address(address))
    listings = relay_listings(engine, text)
    spam_only = not listings and bool(spam_listings(engine, settings.traps, text))
    if not listings and not spam_only:
        raise NotListedError(f"{text} is not listed by a relay test or as a spam source")
    in_progress = _in_progress(engine, text)
    if in_progress is not None:
        return in_progress
    window = timedelta(seconds=settings.tester.delist_window)
    _check_limit(
        engine, DelistRequest.address == text, settings.tester.delists_per_address, window, text
    )
    _check_limit(
        engine,
        DelistRequest.requester == requester,
        settings.tester.delists_per_requester,
        window,
        requester,
    )
    if spam_only:
        return _remove_spam_source(engine, settings, text, requester, note)
    if any(listing.category == RelayCategory.OPEN_RELAY for listing in listings):
        target = text
    else:
        target = _input_of(engine, [listing.id for listing in listings]) or text
    job = enqueue(engine, JobKind.RETEST, target, actor=f"delist-request:{requester}", forced=True)
    with writer(engine).begin() as conn:
        request_id = conn.execute(
            insert(DelistRequest)
            .values(
                address=text,
                requester=requester[:128],
                note=note,
                status=DelistStatus.PENDING,
                job_id=job.id,
                created_at=utcnow(),
            )
            .returning(DelistRequest.id)
        ).scalar_one()
    view = get_delist_request(engine, int(request_id))
    assert view is not None
    return view


def _remove_spam_source(
    engine: Engine, settings: Settings, address: str, requester: str, note: str | None
) -> DelistRequestView:
    """End a spam-source listing at once, and answer with the request, already delisted (the
    removal and the request in one transaction)."""
    with one_sighting(engine):
        remove_source(engine, settings.traps, address, actor=f"delist-request:{requester}")
        request_id = _insert_removed(engine, address, requester, note)
    view = get_delist_request(engine, request_id)
    assert view is not None
    return view


def _insert_removed(engine: Engine, address: str, requester: str, note: str | None) -> int:
    now = utcnow()
    with begin_write(engine) as conn:
        request_id = conn.execute(
            insert(DelistRequest)
            .values(
                address=address,
                requester=requester[:128],
                note=note,
                status=DelistStatus.DELISTED,
                created_at=now,
                finished_at=now,
            )
            .returning(DelistRequest.id)
        ).scalar_one()
    return int(request_id)


def _in_progress(engine: Engine, address: str) -> DelistRequestView | None:
    with engine.connect() as conn:
        request_id = conn.scalar(
            select(DelistRequest.id)
            .join(Job, Job.id == DelistRequest.job_id)
            .where(
                DelistRequest.address == address,
                DelistRequest.status == DelistStatus.PENDING,
                Job.status.in_(ACTIVE_JOB),
            )
            .order_by(DelistRequest.id.desc())
            .limit(1)
        )
    return get_delist_request(engine, request_id) if request_id is not None else None


def _check_limit(engine: Engine, who: object, limit: int, window: timedelta, name: str) -> None:
    since = utcnow() - window
    with engine.connect() as conn:
        count, oldest = conn.execute(
            select(func.count(), func.min(DelistRequest.created_at)).where(
                who,  # type: ignore[arg-type]
                DelistRequest.created_at > since,
            )
        ).one()
    if count >= limit:
        raise RateLimited.until(
            aware(oldest) + window,
            f"{count} delist requests for {name} in {window.total_seconds():g} s (limit {limit})",
        )


def _input_of(engine: Engine, listing_ids: list[int]) -> str | None:
    """The tested host whose test listed these (output) listings."""
    with engine.connect() as conn:
        return conn.scalar(
            select(RelayTest.address)
            .join(RelayTestListing, RelayTestListing.test_id == RelayTest.id)
            .where(RelayTestListing.listing_id.in_(listing_ids))
            .order_by(RelayTest.id.desc())
            .limit(1)
        )


def get_delist_request(engine: Engine, request_id: int) -> DelistRequestView | None:
    """A delist request and where it stands, or None."""
    with Session(engine) as session:
        row = session.execute(
            select(DelistRequest, Job.status.label("job_status"))
            .outerjoin(Job, Job.id == DelistRequest.job_id)
            .where(DelistRequest.id == request_id)
        ).first()
    if row is None:
        return None
    request: DelistRequest = row[0]
    status = DelistStatus(request.status)
    if status == DelistStatus.PENDING and row.job_status == JobStatus.RUNNING:
        status = DelistStatus.RETESTING
    elif status == DelistStatus.PENDING and row.job_status == JobStatus.FAILED:
        status = DelistStatus.UNTESTABLE
    return DelistRequestView(
        id=request.id,
        address=request.address,
        requester=request.requester,
        note=request.note,
        status=status,
        test_id=request.test_id,
        created_at=aware(request.created_at),
        finished_at=maybe_aware(request.finished_at),
    )


def settle_delist_requests(
    engine: Engine, job_id: int, *, test_id: int | None, verdict: Verdict
) -> int:
    """Answer the requests a retest job was run for, after its verdict changed the list."""
    with engine.connect() as conn:
        pending = conn.execute(
            select(DelistRequest.id, DelistRequest.address).where(
                DelistRequest.job_id == job_id, DelistRequest.status == DelistStatus.PENDING
            )
        ).all()
    for request_id, address in pending:
        if not relay_listings(engine, address):
            status = DelistStatus.DELISTED
        elif verdict == Verdict.UNTESTABLE:
            status = DelistStatus.UNTESTABLE
        else:
            status = DelistStatus.STILL_LISTED
        with writer(engine).begin() as conn:
            conn.execute(
                update(DelistRequest)
                .where(DelistRequest.id == request_id)
                .values(status=status, test_id=test_id, finished_at=utcnow())
            )
    return len(pending)
