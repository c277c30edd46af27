"""The periodic work of the relay loop: expiry sweeps, and retests of listed relays.

Workers call `schedule_periodic` every so often; it only queues jobs (which the job queue
deduplicates per target), so any number of workers may call it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, func, select

from dnsbl.config import Settings
from dnsbl.models import Listing, ListingValue, utcnow
from dnsbl.models.relay import RelayTest, RelayTestListing
from dnsbl.relay.jobs import enqueue, ensure_sweep
from dnsbl.relay.verdicts import OPEN_RELAY


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
            ListingValue.category == OPEN_RELAY,
            newest.c.newest < cutoff,
        )
        .distinct()
    )
    with engine.connect() as conn:
        addresses = list(conn.scalars(query))
    for address in addresses:
        enqueue(engine, "retest", address, actor="scheduler")
    return len(addresses)
