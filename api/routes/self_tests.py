"""`/v1/self-tests`: a mail server tests itself (no key). Nothing it finds is listed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from api.deps import ClientDep, EngineDep, SettingsDep
from api.problems import Problem, responses
from api.schemas.public import (
    FormResultPublic,
    GraceTestPublic,
    SelfTestCreate,
    SelfTestPublic,
)
from dnsbl.config import Settings
from dnsbl.relay import self_tests
from dnsbl.relay.self_tests import SelfTestView

router = APIRouter(prefix="/v1/self-tests", tags=["public"])


def public(view: SelfTestView, settings: Settings) -> SelfTestPublic:
    """A self-test as the API answers it."""
    base = settings.api.public_url.rstrip("/")
    request, grace = view.request, view.grace

    def test_url(test_id: int | None) -> str | None:
        return f"{base}/v1/relay-tests/{test_id}" if test_id else None

    return SelfTestPublic(
        id=request.id,
        address=request.address,
        status=request.status,
        queue_position=request.queue_position,
        verdict=request.verdict,
        summary=self_tests.summary(view),
        reason=view.test.reason if view.test else None,
        test_id=request.test_id,
        test_url=test_url(request.test_id),
        page_url=f"{base}/self-tests/{request.id}",
        created_at=request.created_at,
        finished_at=request.finished_at,
        forms=[FormResultPublic.model_validate(form) for form in view.forms],
        transcript=view.test.transcript if view.test else None,
        grace_test=None
        if grace is None
        else GraceTestPublic(
            job_id=grace.job_id,
            due_at=grace.due_at,
            ran_at=grace.ran_at,
            status=grace.status,
            verdict=grace.verdict,
            test_id=grace.test_id,
            test_url=test_url(grace.test_id),
        ),
    )


@router.post(
    "",
    response_model=SelfTestPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(400, 403, 413, 422, 429, 500),
)
def self_test(
    response: Response,
    client: ClientDep,
    engine: EngineDep,
    settings: SettingsDep,
    body: SelfTestCreate | None = None,
) -> SelfTestPublic:
    """Test the address this request comes from for open relaying (`curl -X POST` from the
    mail server itself); a body `address` must be that address (else 403). Nothing is
    listed; if the host relays, a normal test is scheduled `tester.self_test_grace_hours`
    later, which lists it if it still relays then. One self-test per address per hour, one
    test of a host per `tester.min_test_interval` (429 with Retry-After)."""
    view = self_tests.submit_self_test(engine, settings, client, body.address if body else None)
    response.headers["Location"] = f"/v1/self-tests/{view.request.id}"
    return public(view, settings)


@router.get("/{self_test_id}", response_model=SelfTestPublic, responses=responses(404, 422, 500))
def read_self_test(
    self_test_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    engine: EngineDep,
    settings: SettingsDep,
) -> SelfTestPublic:
    """A self-test: every form with its outcome, the transcript, and the grace test."""
    view = self_tests.get_self_test(engine, self_test_id)
    if view is None:
        raise Problem(404, "not-found", f"no self-test {self_test_id}")
    return public(view, settings)
