"""What `/metrics` reads from the database at scrape time: the shared truth of every role.

Listings in force by zone, category and source; each zone's serial (what DNS nodes must
reach: compare with their `dnsbl_index_serial`); the job queue and how long its oldest due
job has waited; relay tests by verdict; delist requests by outcome; self-tests by outcome and
the grace tests they scheduled by what they decided; arrivals recorded.
These are exported by the API only, so that summing over several workers or DNS nodes never
counts the database twice. A read that fails is logged and leaves its families out, and
`dnsbl_database_up` says 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Connection, Engine, case, func, select

from dnsbl.listings.covering import in_force_clause
from dnsbl.models import Listing, ListingValue, Zone, utcnow
from dnsbl.models.relay import DelistRequest, Job, Nomination, RelayTest, TokenArrival
from dnsbl.relay.states import JobKind, JobStatus, NominationKind, Verdict
from dnsbl.timestamps import aware

log = logging.getLogger(__name__)


class StoreCollector:
    """The database's numbers, for prometheus-client (read at every scrape)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "dnsbl_database_up", "1 if the database answered this scrape's reads, else 0."
        )
        try:
            with self.engine.connect() as conn:
                families = list(_families(conn, utcnow()))
        except Exception:
            log.exception("metrics: reading the database failed")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def _families(conn: Connection, now: datetime) -> Iterator[Metric]:
    listings = GaugeMetricFamily(
        "dnsbl_listings",
        "Listings in force (exclusions not counted), by zone, category and source.",
        labels=["zone", "category", "source"],
    )
    query = (
        select(Zone.name, ListingValue.category, Listing.source, func.count())
        .select_from(Listing)
        .join(Zone, Zone.id == Listing.zone_id)
        .join(ListingValue, ListingValue.id == Listing.value_id)
        .where(in_force_clause(now), ListingValue.excluded.is_(False))
        .group_by(Zone.name, ListingValue.category, Listing.source)
        .order_by(Zone.name, ListingValue.category, Listing.source)
    )
    for zone, category, source, count in conn.execute(query):
        listings.add_metric([zone, category, source], count)
    yield listings

    serial = GaugeMetricFamily(
        "dnsbl_database_serial",
        "Each zone's serial in the database: its last change, which DNS nodes follow.",
        labels=["zone"],
    )
    for zone, number in conn.execute(select(Zone.name, Zone.serial).order_by(Zone.name)):
        serial.add_metric([zone], number)
    yield serial

    queue = GaugeMetricFamily(
        "dnsbl_queue_jobs", "Jobs in the queue, by status.", labels=["status"]
    )
    counts = dict(conn.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    for status in JobStatus:
        queue.add_metric([status.value], counts.get(status.value, 0))
    yield queue

    oldest = conn.scalar(
        select(func.min(Job.run_after)).where(Job.status == JobStatus.WAITING, Job.run_after <= now)
    )
    age = GaugeMetricFamily(
        "dnsbl_queue_oldest_job_age_seconds",
        "How long the oldest waiting job has been due (0 when none is due): queue backlog.",
    )
    age.add_metric([], max((now - aware(oldest)).total_seconds(), 0.0) if oldest else 0.0)
    yield age

    yield _grouped(
        conn,
        CounterMetricFamily(
            "dnsbl_relay_tests", "Relay tests finished, by verdict.", labels=["verdict"]
        ),
        RelayTest.verdict,
    )
    yield _grouped(
        conn,
        CounterMetricFamily(
            "dnsbl_delist_requests", "Delist requests, by outcome.", labels=["outcome"]
        ),
        DelistRequest.status,
    )
    yield from _self_tests(conn)
    arrivals = CounterMetricFamily(
        "dnsbl_relay_arrivals", "Test messages that reached the collector, as recorded."
    )
    arrivals.add_metric([], conn.scalar(select(func.count()).select_from(TokenArrival)) or 0)
    yield arrivals


def _grouped(conn: Connection, family: CounterMetricFamily, column: Any) -> Metric:
    rows = conn.execute(
        select(column, func.count()).where(column.is_not(None)).group_by(column).order_by(column)
    )
    for key, count in rows:
        family.add_metric([str(key)], count)
    return family


def _self_tests(conn: Connection) -> Iterator[Metric]:
    self_tests = CounterMetricFamily(
        "dnsbl_self_tests",
        "Self-tests, by outcome (a verdict; queued or testing while unfinished; refused).",
        labels=["outcome"],
    )
    rows = conn.execute(
        select(func.coalesce(Nomination.verdict, Nomination.status), func.count())
        .where(Nomination.kind == NominationKind.SELF_TEST)
        .group_by(func.coalesce(Nomination.verdict, Nomination.status))
        .order_by(func.coalesce(Nomination.verdict, Nomination.status))
    )
    for outcome, count in rows:
        self_tests.add_metric([str(outcome)], count)
    yield self_tests
    grace = CounterMetricFamily(
        "dnsbl_grace_tests",
        "Grace tests (the normal test a self-test that found the host open schedules), by "
        "what they decided: a verdict (confirmed: listed), or pending while not yet run.",
        labels=["decision"],
    )
    unrun = case((Job.status == JobStatus.FAILED, Verdict.UNTESTABLE.value), else_="pending")
    decision = func.coalesce(RelayTest.verdict, unrun)
    rows = conn.execute(
        select(decision, func.count())
        .select_from(Job)
        .outerjoin(RelayTest, RelayTest.id == Job.test_id)
        .where(Job.kind == JobKind.GRACE_TEST)
        .group_by(decision)
        .order_by(decision)
    )
    for verdict, count in rows:
        grace.add_metric([str(verdict)], count)
    yield grace
