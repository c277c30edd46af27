"""`/healthz` (the process is up), `/readyz` (database reachable, DNS index loaded), `/metrics`."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from sqlalchemy import text

from api.deps import EngineDep
from api.problems import Problem, responses
from dnsbl.metrics import CONTENT_TYPE, exposition

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The answer of a health check."""

    status: str
    checks: dict[str, str] = {}


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up and answering."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=responses(503))
def readyz(request: Request, engine: EngineDep) -> Health:
    """Ready to serve: the database answers, and the DNS index is loaded when this process
    serves DNS too."""
    checks: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("readyz: database unreachable: %s", exc)
        raise Problem(503, "not-ready", "the database is unreachable") from None
    dns_ready = request.app.state.dns_ready
    if dns_ready is not None:
        if not dns_ready():
            raise Problem(503, "not-ready", "the DNS index is not loaded yet")
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
