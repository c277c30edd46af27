"""`/v1/admin/audit`: the append-only log of administrative changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api import audit
from api.auth import OperatorKey
from api.deps import EngineDep
from api.problems import responses
from api.schemas.admin import AuditEntryPublic
from api.schemas.common import TEXT_PATTERN, Page

router = APIRouter(prefix="/v1/admin/audit", tags=["admin: audit"])


@router.get("", response_model=Page[AuditEntryPublic], responses=responses(401, 403, 422, 500))
def read_audit(
    key: OperatorKey,
    engine: EngineDep,
    action: Annotated[
        str | None, Query(max_length=64, pattern=TEXT_PATTERN, examples=["listing.create"])
    ] = None,
    actor_key_id: Annotated[int | None, Query(ge=0, le=2**31)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
) -> Page[AuditEntryPublic]:
    """Every change, newest first: who (key id), when, what, on what, and why."""
    total, items = audit.entries(
        engine, limit=limit, offset=offset, action=action, actor_key_id=actor_key_id
    )
    return Page[AuditEntryPublic](items=items, total=total, limit=limit, offset=offset)
