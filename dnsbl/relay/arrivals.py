"""The arrival recorder: the collector's `on_arrival`, writing arrivals to the database in batches.

The collector calls `on_arrival` on its own thread, inside its event loop: a database write
there holds up every other SMTP session of the collector, and with dozens of open relays
delivering at once one transaction per message caps the whole tester (each PostgreSQL commit
is several round trips). The recorder queues the arrival and hands back a future; a thread
of its own writes whatever has queued up in one transaction (a group commit), retries a failed
batch until it is written or the recorder stops, and then resolves the batch's futures. The
collector waits on its future before it answers 250, so an acknowledged message is on disk:
a crash can make a relay send a message twice, never lose one it was told was taken.
`flush()` waits until everything queued so far is in the database.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from sqlalchemy import Engine

from dnsbl.relay.collector import Arrival
from dnsbl.relay.evidence import record_arrivals

log = logging.getLogger(__name__)

_BATCH = 500
_RETRY_AFTER = 1.0  # seconds between attempts at a batch the database refused


class ArrivalRecorder:
    """Queues arrivals (call it with one) and writes them from a background thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[tuple[Arrival, Future[None]] | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self.written = 0

    def __call__(self, arrival: Arrival) -> Future[None]:
        """Queue `arrival`; the future is done once it is written (or failed if it never is)."""
        written: Future[None] = Future()
        if self._stopping.is_set():
            written.set_exception(RuntimeError("the arrival recorder has stopped"))
            return written
        with self._idle:
            self._pending += 1
        self._queue.put((arrival, written))
        return written

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="arrival-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (for up to `timeout` seconds), then end the thread."""
        self.flush(timeout)
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        # Whatever is still queued will not be written: tell whoever waits for it.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                _settle(item[1], RuntimeError("the arrival recorder stopped first"))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every arrival queued so far is written; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            first = self._queue.get()
            if first is None:
                continue
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    batch.append(item)
            self._write(batch)

    def _write(self, batch: list[tuple[Arrival, Future[None]]]) -> None:
        while True:
            try:
                record_arrivals(self.engine, [arrival for arrival, _ in batch])
                break
            except Exception as exc:
                log.exception("recording %d arrivals failed; retrying", len(batch))
                if self._stopping.wait(_RETRY_AFTER):
                    for _, written in batch:
                        _settle(written, exc)
                    return
        self.written += len(batch)
        with self._idle:
            self._pending -= len(batch)
            self._idle.notify_all()
        for _, written in batch:
            _settle(written)


def _settle(written: Future[None], failure: BaseException | None = None) -> None:
    """Resolve an arrival's future, unless whoever waited for it has cancelled it."""
    if written.set_running_or_notify_cancel():
        if failure is None:
            written.set_result(None)
        else:
            written.set_exception(failure)
