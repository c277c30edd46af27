"""`/v1/admin/keys`: issue, list and revoke API keys (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from api import audit
from api.auth import AdminKey
from api.deps import EngineDep
from api.problems import Problem, responses
from api.schemas.admin import KeyCreate, KeyIssued, KeyPublic
from dnsbl import apikeys
from dnsbl.db import one_transaction

router = APIRouter(prefix="/v1/admin/keys", tags=["admin: keys"])


@router.get("", response_model=list[KeyPublic], responses=responses(401, 403, 500))
def list_keys(key: AdminKey, engine: EngineDep) -> list[KeyPublic]:
    """Every key ever issued (without secrets), revoked ones included."""
    return [KeyPublic.model_validate(info) for info in apikeys.list_keys(engine)]


@router.post(
    "",
    response_model=KeyIssued,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 413, 422, 500),
)
def create_key(key: AdminKey, body: KeyCreate, engine: EngineDep) -> KeyIssued:
    """Issue a key; its secret is in this answer only."""
    with one_transaction(engine):  # the key and its audit entry, or neither
        issued = apikeys.create_key(engine, body.role, body.name)
        audit.record(engine, key, "key.create", f"key {issued.info.id}", detail={"role": body.role})
    return KeyIssued(**KeyPublic.model_validate(issued.info).model_dump(), key=issued.key)


@router.delete(
    "/{key_id}", response_model=KeyPublic, responses=responses(401, 403, 404, 409, 422, 500)
)
def revoke_key(
    key: AdminKey, key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], engine: EngineDep
) -> KeyPublic:
    """Revoke a key: from now on it is refused (401). Revoking twice changes nothing."""
    if key_id == key.id:
        raise Problem(409, "own-key", "a key cannot revoke itself; use another admin key")
    with one_transaction(engine):
        info = apikeys.revoke_key(engine, key_id)
        if info is None:
            raise Problem(404, "not-found", f"no key {key_id}")
        audit.record(engine, key, "key.revoke", f"key {key_id}")
    return KeyPublic.model_validate(info)
