"""Logging: plain text lines, or one JSON object per line (`log.format = "json"`).

Whatever a record is about — the API request, the job, the peer — travels as fields, not
only inside the message: `log_context(job_id=…)` binds fields to the current task or thread
(a `ContextVar`, so asyncio tasks started inside inherit them), and `extra={"peer": …}` adds
them to one record. The JSON formatter writes both; the text formatter leaves them out.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIELDS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "dnsbl_log_fields", default=None
)
# The attributes every LogRecord has: anything else on a record came from `extra`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every record logged in this context (task, thread) until the exit."""
    token = _FIELDS.set({**(_FIELDS.get() or {}), **fields})
    try:
        yield
    finally:
        _FIELDS.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_FIELDS.get() or {})
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, form: str) -> None:
    """Send every logger's records to stderr at `level`, as `form` ("text" or "json") says."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`exc` as one short line: its first line (a driver's error runs over several)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


class OutageLog:
    """The log of an outage of something a process depends on (the database, say).

    One line when the outage begins, one a minute (`every` seconds) while it lasts, one when
    it ends — however often the callers fail meanwhile, so an outage never floods the log.
    Thread-safe: the API's request threads and a node's loader report to one.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.clock = clock
        self.what = what
        self.every = every
        self.since: float | None = None  # on `clock`, when the outage began
        self.failures = 0
        self._last_line = 0.0
        self._lock = threading.Lock()

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        """One more failure: logged if it begins the outage or a minute passed since the last."""
        with self._lock:
            now = self.clock()
            self.failures += 1
            if self.since is None:
                self.since = self._last_line = now
                self.logger.warning("%s unavailable: %s", self.what, one_line(exc))
            elif now - self._last_line >= self.every:
                self._last_line = now
                self.logger.warning(
                    "%s still unavailable after %.0f s (%d failures): %s",
                    self.what,
                    now - self.since,
                    self.failures,
                    one_line(exc),
                )

    def recovered(self) -> None:
        """A success: ends the outage, if there is one, with a line saying how long it lasted."""
        if self.since is None:
            return
        with self._lock:
            if self.since is None:
                return
            self.logger.warning(
                "%s available again after %.0f s (%d failures)",
                self.what,
                self.clock() - self.since,
                self.failures,
            )
            self.since = None
            self.failures = 0
