"""When a host may be tested: policy, the once-a-day limit, retests and the periodic work.

The job queue (`dnsbl.relay.jobs`) only runs what it is given; these rules decide what goes in
and when. A host may be tested when the tester may reach it (`tester.reach`) and no policy
network takes it out; at most once per `tester.min_test_interval` (RFC 6471 §3.6) unless an
admin forces it. Listed relays are retested every `tester.retest_interval`, and an expiry
sweep runs every `tester.sweep_interval`. Workers call `schedule_periodic` every so often; it
only queues jobs, which the queue deduplicates per target, so any number of workers may call it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, func, or_, select

from dnsbl.addresses import parse_address
from dnsbl.config import Settings, TesterSettings
from dnsbl.errors import PolicyRefused, RateLimited
from dnsbl.models import Listing, ListingValue, utcnow
from dnsbl.models.relay import RelayTest, RelayTestListing
from dnsbl.policy import PolicyKind, policy_entry
from dnsbl.relay.jobs import JobView, active_job, enqueue
from dnsbl.relay.states import SWEEP_TARGET, JobKind, RelayCategory
from dnsbl.relay.tester.reach import why_unreachable
from dnsbl.timestamps import aware

SCHEDULER = "scheduler"
"""The actor of the jobs the schedule queues by itself."""

_BUSY_RETRY = 60.0  # seconds after a busy host's job is due to suggest asking again


def refusal_to_test(engine: Engine, settings: TesterSettings, address: str) -> str | None:
    """None when `address` may be tested, else why not (configuration or the stored lists).

    A never-list network is never tested either: its result could not be published.
    """
    reason = why_unreachable(address, settings)
    if reason is not None:
        return reason
    return policy_entry(engine, address, (PolicyKind.NEVER_TEST, PolicyKind.NEVER_LIST))


def next_allowed_test(
    engine: Engine, settings: Settings, address: str, *, excluding_job: int | None = None
) -> datetime:
    """The earliest time `address` may be tested again without an admin forcing it.

    RFC 6471 §3.6: at most one test of a host per `tester.min_test_interval` (24 h). The
    tests of `excluding_job` (earlier attempts of the job about to run) do not count.
    """
    query = select(func.max(RelayTest.started_at)).where(RelayTest.address == address)
    if excluding_job is not None:
        query = query.where(or_(RelayTest.job_id.is_(None), RelayTest.job_id != excluding_job))
    with engine.connect() as conn:
        last = conn.scalar(query)
    now = utcnow()
    if last is None:
        return now
    return max(now, aware(last) + timedelta(seconds=settings.tester.min_test_interval))


def refuse_until_free(engine: Engine, settings: Settings, address: str) -> None:
    """Raise `RateLimited` unless `address` may be tested now, saying until when it may not.

    For requests that test at once or not at all (self-tests, dry runs): a host with a test
    queued or running, or tested within `tester.min_test_interval`, is not free.
    """
    job = active_job(engine, address)
    now = utcnow()
    if job is not None:
        raise RateLimited.until(
            max(job.run_after, now) + timedelta(seconds=_BUSY_RETRY),
            f"a {job.kind} of {address} is already {job.status} (job #{job.id}, due "
            f"{job.run_after:%Y-%m-%d %H:%M:%S} UTC); one test of a host at a time",
        )
    allowed = next_allowed_test(engine, settings, address)
    if allowed > utcnow():  # read after: next_allowed_test answers "now" by its own clock
        raise RateLimited.until(
            allowed,
            f"{address} was tested less than {settings.tester.min_test_interval:g} s ago "
            f"(one test of a host per tester.min_test_interval); "
            f"it may be tested again at {allowed:%Y-%m-%d %H:%M:%S} UTC",
        )


def schedule_retest(
    engine: Engine, settings: Settings, address: str, *, actor: str, forced: bool = True
) -> JobView:
    """Queue a retest of `address`; forced (an admin's) retests skip the 24-hour limit.

    Raises `AddressError` for a bad address and `PolicyRefused` when policy forbids the test.
    """
    text = str(parse_address(address))
    refusal = refusal_to_test(engine, settings.tester, text)
    if refusal is not None:
        raise PolicyRefused(f"{text}: {refusal}")
    run_after = None if forced else next_allowed_test(engine, settings, text)
    return enqueue(engine, JobKind.RETEST, text, actor=actor, forced=forced, run_after=run_after)


def ensure_sweep(engine: Engine, *, delay: float = 0.0) -> JobView:
    """Make sure an expiry sweep is queued (due after `delay` seconds if one must be made)."""
    return enqueue(
        engine,
        JobKind.EXPIRE,
        SWEEP_TARGET,
        actor=SCHEDULER,
        run_after=utcnow() + timedelta(seconds=delay),
    )


def schedule_periodic(engine: Engine, settings: Settings) -> int:
    """Queue the periodic work: an expiry sweep, and retests of relays listed long enough.

    A relay is retested when its newest test is older than `tester.retest_interval`; the
    retest is not forced, so the 24-hour limit holds. Returns how many retests were queued.
    """
    ensure_sweep(engine)
    cutoff = utcnow() - timedelta(seconds=settings.tester.retest_interval)
    newest = (
        select(RelayTest.address, func.max(RelayTest.started_at).label("newest"))
        .group_by(RelayTest.address)
        .subquery()
    )
    query = (
        select(RelayTest.address)
        .join(RelayTestListing, RelayTestListing.test_id == RelayTest.id)
        .join(Listing, Listing.id == RelayTestListing.listing_id)
        .join(ListingValue, ListingValue.id == Listing.value_id)
        .join(newest, newest.c.address == RelayTest.address)
        .where(
            Listing.ended_at.is_(None),
            ListingValue.category == RelayCategory.OPEN_RELAY,
            newest.c.newest < cutoff,
        )
        .distinct()
    )
    with engine.connect() as conn:
        addresses = list(conn.scalars(query))
    for address in addresses:
        enqueue(engine, JobKind.RETEST, address, actor=SCHEDULER)
    return len(addresses)
