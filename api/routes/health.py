"""`/healthz` (the process is up), `/readyz` (the database takes writes, the DNS index is loaded),
`/metrics`.

`/healthz` is a coroutine that touches nothing: it answers from the event loop even when every
thread of the pool is waiting for a database that stopped answering. `/readyz` probes a write
(rolled back) at most once every `READY_CACHE` seconds, however often it is asked.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from api.deps import EngineDep
from api.problems import RETRY_AFTER_UNAVAILABLE, Problem, responses
from dnsbl.db import is_sqlite, writer
from dnsbl.logs import one_line
from dnsbl.metrics import CONTENT_TYPE, exposition
from dnsbl.models import Zone

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The answer of a health check."""

    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and answering (liveness: the database is not asked)."""
    return Health(status="ok")


READY_CACHE = 1.5  # seconds a probe's outcome stands for
# SQLite writes a transaction's pages only at commit, so a rolled-back probe cannot see a full
# disk: below this much free space beside the database file, it is not ready either.
MIN_FREE_BYTES = 1 << 20


@dataclass
class WriteProbe:
    """The last write probe of one application: when, and what went wrong (None: fine)."""

    at: float = -READY_CACHE
    problem: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _probe_write(request: Request, engine: Engine) -> str | None:
    """Why the database cannot take a write now, or None: a write, rolled back."""
    try:
        with writer(engine).connect() as conn, conn.begin() as transaction:
            first = conn.scalar(select(Zone.id).order_by(Zone.id).limit(1))
            if first is not None:
                conn.execute(update(Zone).where(Zone.id == first).values(serial=Zone.serial))
            transaction.rollback()
    except SQLAlchemyError as exc:
        request.app.state.database_outage.failed(exc)
        return f"the database cannot take a write: {one_line(exc)}"
    path = engine.url.database if is_sqlite(engine) else None
    if path not in (None, "", ":memory:"):
        stats = os.statvfs(os.path.dirname(os.path.abspath(str(path))))
        if stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
            return "the database's disk is full"
    return None


def _write_problem(request: Request, engine: Engine) -> str | None:
    """The cached outcome of the write probe, probing again when it is older than the cache."""
    probe: WriteProbe = request.app.state.write_probe
    with probe.lock:  # one probe at a time; the others take its outcome
        if time.monotonic() - probe.at >= READY_CACHE:
            probe.problem = _probe_write(request, engine)
            probe.at = time.monotonic()
        return probe.problem


@router.get("/readyz", response_model=Health, responses=responses(503))
def readyz(request: Request, engine: EngineDep) -> Health:
    """Ready to serve: the database takes a write (probed, rolled back), and the DNS index is
    loaded when this process serves DNS too."""
    checks: dict[str, str] = {}
    retry = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}
    problem = _write_problem(request, engine)
    if problem is not None:
        raise Problem(503, "not-ready", problem, headers=retry)
    checks["database"] = "ok"
    dns_ready = request.app.state.dns_ready
    if dns_ready is not None:
        if not dns_ready():
            raise Problem(503, "not-ready", "the DNS index is not loaded yet", headers=retry)
        checks["dns_index"] = "ok"
    return Health(status="ok", checks=checks)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
)
def read_metrics(request: Request) -> Response:
    """Prometheus metrics: listings, serials, queue, relay tests, delist requests (and, in
    `dnsbl serve`, the DNS node's and the worker's)."""
    return Response(exposition(request.app.state.metrics), media_type=CONTENT_TYPE)
