"""`/v1/delist-requests`: removal of a listed host by a retest. Public, never charged.

The requester states that the relay is fixed and accepts a retest (`confirmed_fixed`, as ORBS
asked); the request queues the retest, and its status reports the outcome. Requests are limited
per address and per requester, and never refused because the requester is itself listed
(RFC 6471 §2.2).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlalchemy import Engine, select

from api.deps import ClientDep, EngineDep, SettingsDep
from api.problems import Problem, responses
from api.routes.nominations import contact_note
from api.schemas.public import DelistRequestCreate, DelistRequestPublic
from dnsbl.config import Settings
from dnsbl.models.relay import DelistRequest
from dnsbl.relay import delisting, jobs
from dnsbl.relay.delisting import DelistRequestView

router = APIRouter(prefix="/v1/delist-requests", tags=["public"])


def _job_of(engine: Engine, request_id: int) -> int | None:
    with engine.connect() as conn:
        job_id: int | None = conn.scalar(
            select(DelistRequest.job_id).where(DelistRequest.id == request_id)
        )
    return job_id


def to_public(engine: Engine, view: DelistRequestView, settings: Settings) -> DelistRequestPublic:
    """The public shape of a delist request, with its queue position and links."""
    base = settings.api.public_url.rstrip("/")
    job_id = _job_of(engine, view.id)
    return DelistRequestPublic.model_validate(view).model_copy(
        update={
            "queue_position": jobs.queue_position(engine, job_id) if job_id else None,
            "test_url": f"{base}/v1/relay-tests/{view.test_id}" if view.test_id else None,
            "page_url": f"{base}/delist/status/{view.id}",
        }
    )


def submit(
    engine: Engine, settings: Settings, body: DelistRequestCreate, client: str
) -> DelistRequestPublic:
    """File the request (shared by the REST route and the removal page)."""
    view = delisting.file_delist_request(
        engine,
        settings,
        body.address,
        client,
        body.confirmed_fixed,
        contact_note(body.email, body.note),
    )
    return to_public(engine, view, settings)


@router.post(
    "",
    response_model=DelistRequestPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(400, 403, 409, 413, 422, 429, 500),
)
def create_delist_request(
    body: DelistRequestCreate,
    response: Response,
    client: ClientDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> DelistRequestPublic:
    """Ask for a listed host's removal. `confirmed_fixed` must be true (422 otherwise); the
    host must be listed (409 otherwise). The retest is queued at once; follow `page_url` or
    GET the request for the outcome. Limited per address and per requester (429)."""
    public = submit(engine, settings, body, client)
    response.headers["Location"] = f"/v1/delist-requests/{public.id}"
    return public


@router.get("/{request_id}", response_model=DelistRequestPublic, responses=responses(404, 422, 500))
def read_delist_request(
    request_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    engine: EngineDep,
    settings: SettingsDep,
) -> DelistRequestPublic:
    """Where a removal request stands: pending, testing, or its outcome."""
    view = delisting.get_delist_request(engine, request_id)
    if view is None:
        raise Problem(404, "not-found", f"no delist request {request_id}")
    return to_public(engine, view, settings)
