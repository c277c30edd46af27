"""`/v1/nominations`: anyone may ask for a host to be tested. Public, rate-limited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from api.auth import MaybeKey, actor, check_role
from api.deps import ClientDep, EngineDep, SettingsDep
from api.problems import Problem, responses
from api.schemas.public import NominationCreate, NominationPublic
from dnsbl.config import Settings
from dnsbl.relay import nominations
from dnsbl.relay.nominations import NominationView

router = APIRouter(prefix="/v1/nominations", tags=["public"])


def contact_note(email: str | None, note: str | None) -> str | None:
    """The note stored with a public request: the requester's email (if given) and their note."""
    parts = [f"contact: {email}"] if email else []
    if note:
        parts.append(note)
    return "\n".join(parts) or None


def _public(view: NominationView, settings: Settings) -> NominationPublic:
    base = settings.api.public_url.rstrip("/")
    return NominationPublic.model_validate(view).model_copy(
        update={"test_url": f"{base}/v1/relay-tests/{view.test_id}" if view.test_id else None}
    )


@router.post(
    "",
    response_model=NominationPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(400, 401, 403, 413, 422, 429, 500),
)
def nominate(
    body: NominationCreate,
    response: Response,
    client: ClientDep,
    engine: EngineDep,
    settings: SettingsDep,
    key: MaybeKey,
) -> NominationPublic:
    """Queue a relay test of a host. A host already queued, or tested within the last day,
    answers with that record instead of a new test. Refused (403) when the address is outside
    the testable space; limited per submitter (429 with Retry-After).

    `"dry_run": true` (an operator or admin key): the same test, its evidence kept, nothing
    listed and no grace test; refused (429 with Retry-After) while the host is not free to
    test (a test queued, or one within `tester.min_test_interval`)."""
    submitter = client
    if body.dry_run:
        submitter = actor(check_role(key, "operator", "a dry run"))
    view = nominations.submit_nomination(
        engine,
        settings,
        body.address,
        submitter,
        contact_note(body.email, body.note),
        dry_run=body.dry_run,
    )
    response.headers["Location"] = f"/v1/nominations/{view.id}"
    return _public(view, settings)


@router.get("/{nomination_id}", response_model=NominationPublic, responses=responses(404, 422, 500))
def read_nomination(
    nomination_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    engine: EngineDep,
    settings: SettingsDep,
) -> NominationPublic:
    """Where a nomination stands: its queue position while waiting, the verdict once tested."""
    view = nominations.get_nomination(engine, nomination_id)
    if view is None:
        raise Problem(404, "not-found", f"no nomination {nomination_id}")
    return _public(view, settings)
