"""What the traps and reports count, as prometheus-client collectors.

`TrapStats` counts the messages of this process's trap (by outcome) and its hits per trap
domain; it is served where the worker's metrics are (`tester.metrics_listen`, or the API's
/metrics under `dnsbl serve`). `ReportCollector` counts the reports in the database per
reporter, so any API process exports the same numbers. Listings by source (trap, report,
relay-test, …) are `dnsbl_listings` in `api.metrics`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from sqlalchemy import Engine, func, select

from dnsbl.models.traps import SpamEvidence


class TrapStats:
    """The trap's counters: messages by outcome, hits per trap domain (this process only)."""

    def __init__(self) -> None:
        self.messages: collections.Counter[str] = collections.Counter()
        self.hits: collections.Counter[str] = collections.Counter()

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "dnsbl_trap_messages",
            "Messages this process's spam trap took in, by outcome (recorded, rate-limited, "
            "no-source: every hop trusted, failed: answered 451).",
            labels=["outcome"],
        )
        for outcome, count in sorted(self.messages.items()):
            messages.add_metric([outcome], count)
        yield messages
        hits = CounterMetricFamily(
            "dnsbl_trap_hits",
            "Trap recipients of the recorded messages, per trap domain.",
            labels=["domain"],
        )
        for domain, count in sorted(self.hits.items()):
            hits.add_metric([domain], count)
        yield hits


class ReportCollector:
    """Reports on record per reporter (rows are never deleted: a count is a counter)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        reports = CounterMetricFamily(
            "dnsbl_spam_reports", "Spam reports on record, per reporter.", labels=["reporter"]
        )
        query = (
            select(SpamEvidence.reporter, func.count())
            .where(SpamEvidence.kind == "report")
            .group_by(SpamEvidence.reporter)
            .order_by(SpamEvidence.reporter)
        )
        with self.engine.connect() as conn:
            for reporter, count in conn.execute(query):
                reports.add_metric([reporter or ""], count)
        yield reports
