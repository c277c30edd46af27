"""`/v1/admin/access-keys`: issue, list and revoke the DNS zones' access keys (admins only).

Each write commits with its audit entry (`dnsbl.access.keys`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from api.auth import AdminKey
from api.deps import EngineDep
from api.problems import Problem, responses
from api.schemas.admin import AccessKeyCreate, AccessKeyIssued, AccessKeyPublic
from dnsbl.access import keys
from dnsbl.access.keys import AccessKeyError

router = APIRouter(prefix="/v1/admin/access-keys", tags=["admin: access keys"])


@router.get("", response_model=list[AccessKeyPublic], responses=responses(401, 403, 500))
def list_access_keys(key: AdminKey, engine: EngineDep) -> list[AccessKeyPublic]:
    """Every access key ever issued (without secrets), revoked ones included, with today's
    use."""
    return [AccessKeyPublic.model_validate(info) for info in keys.list_all(engine)]


@router.post(
    "",
    response_model=AccessKeyIssued,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 409, 413, 422, 500),
)
def create_access_key(key: AdminKey, body: AccessKeyCreate, engine: EngineDep) -> AccessKeyIssued:
    """Issue an access key; its secret is in this answer only."""
    try:
        issued = keys.create(engine, body.name, body.daily_quota, actor=key.id)
    except AccessKeyError as exc:
        raise Problem(409, "access-key-exists", exc.detail) from None
    public = AccessKeyPublic.model_validate(issued.info)
    return AccessKeyIssued(**public.model_dump(), key=issued.key)


@router.delete(
    "/{name}", response_model=AccessKeyPublic, responses=responses(401, 403, 404, 422, 500)
)
def revoke_access_key(
    key: AdminKey, name: Annotated[str, Path(min_length=1, max_length=64)], engine: EngineDep
) -> AccessKeyPublic:
    """Revoke an access key: DNS nodes answer it REFUSED from their next look (about a
    second). Revoking twice changes nothing."""
    try:
        info = keys.revoke(engine, name, actor=key.id)
    except AccessKeyError as exc:
        raise Problem(404, "not-found", exc.detail) from None
    return AccessKeyPublic.model_validate(info)
