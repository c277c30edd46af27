"""What a worker process counts: its jobs by outcome, its verdicts, its collector's messages.

The worker and the collector bump plain counters on a `WorkerStats` as they go; the stats
are a prometheus-client collector read at scrape time (`tester.metrics_listen`, or the API's
/metrics under `dnsbl serve`). They count this process only: the queue and the tests in the
database are the API's to export (`api.metrics`), so sums over several workers hold.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dnsbl.relay.states import JobOutcome, MessageOutcome


class WorkerStats:
    """Counters of one worker and its collector, and the collector that exports them."""

    def __init__(self) -> None:
        self.jobs: collections.Counter[tuple[str, JobOutcome]] = collections.Counter()  # kind
        self.verdicts: collections.Counter[str] = collections.Counter()
        self.messages: collections.Counter[MessageOutcome] = collections.Counter()
        self.running: Callable[[], int] = lambda: 0
        self.started = time.time()
        self.last_claim = 0.0  # when the worker last looked for jobs successfully

    def collect(self) -> Iterator[Metric]:
        jobs = CounterMetricFamily(
            "dnsbl_worker_jobs",
            "Jobs this worker ran, by kind and outcome "
            "(done, postponed, error, lease-lost, released).",
            labels=["kind", "outcome"],
        )
        for (kind, outcome), count in sorted(self.jobs.items()):
            jobs.add_metric([kind, outcome.value], count)
        yield jobs
        verdicts = CounterMetricFamily(
            "dnsbl_worker_verdicts",
            "Relay tests this worker decided, by verdict.",
            labels=["verdict"],
        )
        for verdict, count in sorted(self.verdicts.items()):
            verdicts.add_metric([verdict], count)
        yield verdicts
        messages = CounterMetricFamily(
            "dnsbl_collector_messages",
            "Messages this worker's collector took in, by outcome (recorded: a test token "
            "arrived; no-token: dropped; failed: answered 451).",
            labels=["outcome"],
        )
        for message, count in sorted(self.messages.items()):
            messages.add_metric([message.value], count)
        yield messages
        running = GaugeMetricFamily("dnsbl_worker_jobs_running", "Jobs this worker runs now.")
        running.add_metric([], self.running())
        yield running
        claimed = GaugeMetricFamily(
            "dnsbl_worker_last_claim_timestamp_seconds",
            "When this worker last read the queue successfully (Unix time; 0: never).",
        )
        claimed.add_metric([], self.last_claim)
        yield claimed
