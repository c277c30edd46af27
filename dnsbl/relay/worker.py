"""The worker: claims jobs and runs them, many relay tests at once on one asyncio loop.

Each claimed job runs as a task under a lease that a heartbeat renews; `tester.concurrency`
bounds how many run at once. A test job opens a relay-test record, probes the host, stores the
evidence, waits up to `tester.wait_window` for its tokens to reach the collector (watching the
database, where the collector of any worker writes arrivals), decides the verdict, makes the
list agree, and answers the nominations and delist requests that asked for it. A test the host
greylisted is not decided yet: its job goes back to the queue until the retry is due, and the
worker that claims it then sends those envelopes again (`dnsbl.relay.greylisting`). A sweep
job ends expired listings. Between claims the worker queues the periodic work: retests of
listed relays every `tester.retest_interval`, and an expiry sweep every `tester.sweep_interval`;
and it confirms suspicious tests whose messages arrived after their wait window. A self-test
or dry run (`DRY_JOBS`) is tested the same way and lists nothing (`dnsbl.relay.answers`).

One failing job never stops the worker: it is recorded on the job (retried later, failed after
`tester.max_attempts`) and the loop goes on. Stopping releases the jobs in hand for others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from prometheus_client.registry import Collector as MetricsCollector
from sqlalchemy import Engine

from dnsbl.config import Settings, TesterSettings
from dnsbl.db import is_unavailable
from dnsbl.listings.store import ListingStore
from dnsbl.logs import OutageLog, log_context
from dnsbl.models import utcnow
from dnsbl.relay.answers import answer_requests, confirm_late
from dnsbl.relay.evidence import (
    ArrivalView,
    accepted_tokens,
    arrivals_for,
    close_unfinished,
    record_probe,
    record_retry,
    set_verdict,
    start_test,
)
from dnsbl.relay.greylisting import hold_for_retry, pending_retry, retry_due
from dnsbl.relay.jobs import JobView, claim, fail, finish, postpone, renew_lease
from dnsbl.relay.metrics import WorkerStats
from dnsbl.relay.schedule import (
    ensure_sweep,
    next_allowed_test,
    refusal_to_test,
    schedule_periodic,
)
from dnsbl.relay.states import DRY_JOBS, JobKind, JobOutcome, JobStatus, Verdict
from dnsbl.relay.tester.probe import ProbeReport
from dnsbl.relay.tester.probe import probe as run_probe
from dnsbl.relay.verdicts import (
    apply_verdict,
    decide,
    relay_zones,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

Probe = Callable[..., Awaitable[ProbeReport]]
_ARRIVAL_POLL = 0.25  # seconds between looks for arrivals, at first
_ARRIVAL_POLL_MAX = 2.0  # and at most, later in the wait window
_RETRY_IN = 60.0  # seconds before a job that raised is tried again
_DB_THREADS = 12
_PROBE_GRACE = 30.0  # seconds a probe may overrun its session timeout before it is cut
_LATE_EVERY = 5.0  # seconds between looks for arrivals that came after their wait window


class _LeaseLost(Exception):
    """Another worker took the job over: this one's results must not be applied."""


class Worker:
    """Runs jobs from the queue, at most `tester.concurrency` at a time."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        name: str | None = None,
        probe: Probe | None = None,
        stats: WorkerStats | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._probe = probe or run_probe
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._heartbeats: dict[int, asyncio.Task[None]] = {}
        self._last_schedule = 0.0
        self._last_late = 0.0
        self.finished = 0  # jobs this worker completed (for benchmarks and tests)
        self.stats = stats or WorkerStats()
        self.stats.running = lambda: len(self._tasks)
        # Its own threads for database calls: the loop's default pool has only cpu + 4, and
        # each test makes a dozen short calls. Fewer than the engine's pool (5 + 10 overflow).
        self._threads = ThreadPoolExecutor(max_workers=_DB_THREADS, thread_name_prefix="worker-db")
        self._outage = OutageLog(log, "database")  # a down database: a line a minute, not a poll

    @property
    def tester(self) -> TesterSettings:
        return self.settings.tester

    async def run(self, stop: asyncio.Event, started: asyncio.Event | None = None) -> None:
        """Claim and run jobs until `stop` is set; then release the jobs still in hand.
        `started` is set, and the worker says it runs, once it has reached the database."""
        # A `tester.list_zones` naming no configured zone fails here, at start.
        if not relay_zones(self.settings):
            log.warning("no zones configured: confirmed relays will not be listed anywhere")
        await self._db(ListingStore(self.engine).ensure_zones, self.settings.zone_names)
        log.info("worker %s running (concurrency %s)", self.name, self.tester.concurrency)
        if started is not None:
            started.set()
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                if loop.time() - self._last_schedule >= min(self.tester.sweep_interval, 60.0):
                    self._last_schedule = loop.time()
                    await self._guarded(schedule_periodic, self.engine, self.settings)
                if loop.time() - self._last_late >= _LATE_EVERY:
                    self._last_late = loop.time()
                    await self._guarded(confirm_late, self.engine, self.settings)
                await self.claim_and_start()
                await self._idle(stop)
        finally:
            await self.release_all()
            self._threads.shutdown(wait=False)

    async def claim_and_start(self) -> int:
        """Claim as many due jobs as there is room for and start them; returns how many."""
        room = self.tester.concurrency - len(self._tasks)
        if room <= 0:
            return 0
        jobs = await self._guarded(
            claim,
            self.engine,
            self.name,
            limit=room,
            lease_seconds=self.tester.lease_seconds,
            max_attempts=self.tester.max_attempts,
        )
        if jobs is not None:
            self.stats.last_claim = time.time()
        for job in jobs or []:
            task = asyncio.create_task(self.run_job(job), name=f"job-{job.id}")
            self._tasks[job.id] = task
            task.add_done_callback(self._forget(job.id))
        return len(jobs or [])

    def _forget(self, job_id: int) -> Callable[[asyncio.Task[None]], None]:
        def forget(_task: asyncio.Task[None]) -> None:
            self._tasks.pop(job_id, None)

        return forget

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait for the poll interval, a finished job (room to claim), or the stop signal."""
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if len(self._tasks) >= self.tester.concurrency:
            waiters += list(self._tasks.values())
        else:
            waiters.append(asyncio.ensure_future(asyncio.sleep(self.tester.poll_interval)))
        _done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            if waiter not in self._tasks.values():
                waiter.cancel()

    async def release_all(self) -> None:
        """Cancel the running jobs; each puts its job back in the queue for another worker."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait for the jobs in hand to finish (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def _db(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a (blocking) database call on one of the worker's threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, partial(function, *args, **kwargs))

    async def _guarded(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a database call on a thread; a failure is logged, never fatal to the loop."""
        try:
            result = await self._db(function, *args, **kwargs)
        except Exception as exc:
            if is_unavailable(exc):
                self._outage.failed(exc)
            else:
                log.exception("worker %s: %s failed", self.name, getattr(function, "__name__", ""))
            return None
        self._outage.recovered()
        return result

    # -- one job ----------------------------------------------------------------------------

    async def run_job(self, job: JobView) -> None:
        """Run one claimed job to its end, renewing its lease meanwhile."""
        # every record of this job (and of its heartbeat) carries these fields
        with log_context(job_id=job.id, job_kind=str(job.kind), target=job.target):
            outcome = JobOutcome.RELEASED  # unless it gets further
            try:
                outcome = await self._run_job(job)
            finally:
                self.stats.jobs[str(job.kind), outcome] += 1

    async def _run_job(self, job: JobView) -> JobOutcome:
        current = asyncio.current_task()
        assert current is not None
        lost = asyncio.Event()
        self._heartbeats[job.id] = asyncio.create_task(self._heartbeat(job, current, lost))
        try:
            if job.kind == JobKind.EXPIRE:
                self._stop_heartbeat(job)
                await self._db(self._sweep, job)
            elif not await self._test(job, lost):
                return JobOutcome.POSTPONED  # back in the queue: greylisted, or not yet allowed
            self.finished += 1
            return JobOutcome.DONE
        except asyncio.CancelledError:
            if lost.is_set():
                log.warning("worker %s: lost the lease of job %s", self.name, job.id)
                return JobOutcome.LEASE_LOST
            # Stopping: hand the job back at once instead of leaving it to its lease.
            self._stop_heartbeat(job)
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._db(postpone, self.engine, job.id, self.name, utcnow(), "worker stopped")
                )
            raise
        except _LeaseLost:
            log.warning("worker %s: job %s was taken over; result dropped", self.name, job.id)
            return JobOutcome.LEASE_LOST
        except Exception as exc:
            if is_unavailable(exc):  # the outage's lines, not a traceback per job
                self._outage.failed(exc)
            else:
                log.exception(
                    "worker %s: job %s (%s %s) failed", self.name, job.id, job.kind, job.target
                )
            await self._failed(job, f"{type(exc).__name__}: {exc}")
            return JobOutcome.ERROR
        finally:
            self._stop_heartbeat(job)

    def _stop_heartbeat(self, job: JobView) -> None:
        """Stop renewing the lease: the job is about to be finished or handed back, after
        which a failed renewal would look like a takeover."""
        heartbeat = self._heartbeats.pop(job.id, None)
        if heartbeat is not None:
            heartbeat.cancel()

    async def _heartbeat(self, job: JobView, task: asyncio.Task[Any], lost: asyncio.Event) -> None:
        every = max(self.tester.lease_seconds / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            try:
                held = await self._db(
                    renew_lease, self.engine, job.id, self.name, self.tester.lease_seconds
                )
            except Exception:
                log.exception("worker %s: renewing the lease of job %s failed", self.name, job.id)
                continue
            if not held:
                lost.set()
                task.cancel()
                return

    async def _failed(self, job: JobView, error: str) -> None:
        self._stop_heartbeat(job)
        await self._guarded(close_unfinished, self.engine, job.id, f"the test failed: {error}")
        status = await self._guarded(
            fail,
            self.engine,
            job.id,
            self.name,
            error,
            max_attempts=self.tester.max_attempts,
            retry_in=_RETRY_IN,
        )
        if status == JobStatus.FAILED and job.kind != JobKind.EXPIRE:
            await self._guarded(
                answer_requests,
                self.engine,
                self.settings,
                job,
                test_id=None,
                verdict=Verdict.UNTESTABLE,
            )

    def _sweep(self, job: JobView) -> None:
        expired = ListingStore(self.engine).expire_due()
        if expired:
            log.info("expiry sweep: zones %s now at serials %s", list(expired), expired)
        if not finish(self.engine, job.id, self.name):
            raise _LeaseLost()
        ensure_sweep(self.engine, delay=self.tester.sweep_interval)

    async def _test(self, job: JobView, lost: asyncio.Event) -> bool:
        """Run (or resume) the job's test; False when the job went back to the queue."""
        address = job.target
        refusal = await self._db(refusal_to_test, self.engine, self.tester, address)
        if refusal is not None:
            await self._refused(job, refusal)
            return True
        if not job.forced:
            # The job's own earlier session (a greylisting retry's first) is the same test.
            allowed = await self._db(
                next_allowed_test, self.engine, self.settings, address, excluding_job=job.id
            )
            if allowed > utcnow():
                why = f"tested less than {self.tester.min_test_interval:g} s ago"
                self._stop_heartbeat(job)
                await self._db(postpone, self.engine, job.id, self.name, allowed, why)
                return False
        resumed = await self._db(pending_retry, self.engine, job.id, self.tester.collector_domain)
        if resumed is None:
            # A test a stopped worker left unfinished is closed; this one starts afresh.
            stopped = "the worker running this test stopped before it finished"
            await self._db(close_unfinished, self.engine, job.id, stopped)
            test_id = await self._db(
                start_test,
                self.engine,
                address,
                job_id=job.id,
                forced=job.forced,
                dry_run=job.kind in DRY_JOBS,
            )
            retry = None
        else:
            test_id, retry = resumed
        # The probe keeps its own session timeout; this bound is for a probe that does not.
        limit = self.tester.session_timeout + _PROBE_GRACE
        kwargs = {"retry": retry} if retry is not None else {}
        try:
            report = await asyncio.wait_for(
                self._probe(address, self.tester, test_id=str(test_id), **kwargs), limit
            )
        except TimeoutError:
            overran = f"the probe did not end within {limit:g} s"
            await self._conclude(job, test_id, Verdict.UNTESTABLE, overran, [], lost)
            return True
        await self._db(
            record_probe if retry is None else record_retry, self.engine, test_id, report
        )
        arrivals = await self._await_arrivals(test_id)
        if not arrivals and retry_due(report, self.tester):
            await self._hold(job, test_id, report, lost)
            return False
        verdict, reason = decide(report, arrivals)
        await self._conclude(job, test_id, verdict, reason, arrivals, lost)
        return True

    async def _hold(
        self, job: JobView, test_id: int, report: ProbeReport, lost: asyncio.Event
    ) -> None:
        """Put a greylisted test's job back in the queue until its retry is due."""
        if lost.is_set():
            raise _LeaseLost()
        self._stop_heartbeat(job)
        due = await self._db(
            hold_for_retry, self.engine, job.id, self.name, test_id, report, self.tester
        )
        if due is None:
            raise _LeaseLost()
        log.info(
            "test #%s of %s: greylisted (%d direct form(s) held); retry at %s",
            test_id,
            job.target,
            len(report.held),
            f"{due:%H:%M:%S}",
        )

    async def _conclude(
        self,
        job: JobView,
        test_id: int,
        verdict: Verdict,
        reason: str | None,
        arrivals: list[ArrivalView],
        lost: asyncio.Event,
    ) -> None:
        """Record the verdict, make the list agree, finish the job, answer who asked."""
        if lost.is_set():
            raise _LeaseLost()
        if not await self._db(set_verdict, self.engine, test_id, verdict, reason):
            raise _LeaseLost()
        notes = ["a dry test: nothing listed or delisted"]
        if job.kind not in DRY_JOBS:
            notes = await self._db(
                apply_verdict, self.engine, self.settings, test_id, job.target, verdict, arrivals
            )
        self.stats.verdicts[verdict] += 1
        self._stop_heartbeat(job)
        log.info(
            "test #%s of %s: %s (%s) %s", test_id, job.target, verdict, reason, "; ".join(notes)
        )
        if not await self._db(finish, self.engine, job.id, self.name, test_id=test_id):
            raise _LeaseLost()
        await self._db(
            answer_requests, self.engine, self.settings, job, test_id=test_id, verdict=verdict
        )

    async def _refused(self, job: JobView, refusal: str) -> None:
        log.info("job %s: %s refused by policy (%s)", job.id, job.target, refusal)
        self._stop_heartbeat(job)
        # a test that waited out greylisting is not sent again: it ends here, undecided
        await self._db(close_unfinished, self.engine, job.id, f"refused by policy: {refusal}")
        await self._db(finish, self.engine, job.id, self.name)
        await self._db(
            answer_requests,
            self.engine,
            self.settings,
            job,
            test_id=None,
            verdict=Verdict.UNTESTABLE,
            refusal=refusal,
        )

    async def _await_arrivals(self, test_id: int) -> list[ArrivalView]:
        """The arrivals of the test's accepted tokens, waiting up to the wait window for them."""
        waiting_for = await self._db(accepted_tokens, self.engine, test_id)
        if not waiting_for:
            return await self._db(arrivals_for, self.engine, test_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.tester.wait_window
        pause = _ARRIVAL_POLL
        while True:
            arrivals = await self._db(arrivals_for, self.engine, test_id)
            if {arrival.token for arrival in arrivals} >= waiting_for.keys():
                return arrivals
            remaining = deadline - loop.time()
            if remaining <= 0:
                return arrivals
            await asyncio.sleep(min(pause, remaining))
            # Most relays deliver within a second or two; after that, look less often so
            # that many hosts waiting out a long window do not flood the database.
            pause = min(pause * 1.5, _ARRIVAL_POLL_MAX)


async def run_worker(
    settings: Settings,
    engine: Engine,
    *,
    started: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    collector: bool = True,
    stats: WorkerStats | None = None,
    collectors: Sequence[MetricsCollector] = (),
) -> None:
    """Run the collector and a worker until `stop` is set or the task is cancelled.

    The collector runs on its own thread and queues each arrival for the recorder, which
    writes them to the database in batches (`dnsbl.relay.arrivals`); `started`
    is set once both are up. This is what `dnsbl worker` and `dnsbl serve` run. Further
    workers beside the one that runs the collector pass `collector=False`: arrivals reach
    every worker through the database. Its counters go to `stats` (new ones if None), served
    on `tester.metrics_listen` when that is set, with `collectors` (the trap's, say).
    """
    from dnsbl.metrics import DEFAULT_WORKER_PORT, MetricsEndpoint, registry_of
    from dnsbl.relay.arrivals import ArrivalRecorder
    from dnsbl.relay.collector import Collector

    stop = stop or asyncio.Event()
    stats = stats or WorkerStats()
    recorder = ArrivalRecorder(engine)
    sink = Collector(settings.tester, recorder, stats.messages)
    endpoint = None
    if settings.tester.metrics_listen is not None:
        endpoint = MetricsEndpoint(
            registry_of([stats, *collectors]), settings.tester.metrics_listen, DEFAULT_WORKER_PORT
        )
    if collector:
        recorder.start()
        await asyncio.to_thread(sink.start)
    try:
        worker = Worker(engine, settings, stats=stats)
        await worker.run(stop, started)
    finally:
        await asyncio.to_thread(sink.stop)
        await asyncio.to_thread(recorder.stop)
        if endpoint is not None:
            endpoint.stop()
