"""`/v1/admin/policy-networks`: networks never to test, or never to list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api import audit
from api.auth import AdminKey, OperatorKey, actor
from api.deps import EngineDep
from api.problems import Problem, responses
from api.schemas.admin import PolicyNetworkCreate, PolicyNetworkPublic
from api.schemas.common import NETWORK_PATTERN, TEXT_PATTERN
from dnsbl import policy
from dnsbl.db import one_transaction
from dnsbl.policy import PolicyKind

router = APIRouter(prefix="/v1/admin/policy-networks", tags=["admin: policy networks"])

Kind = PolicyKind


@router.get("", response_model=list[PolicyNetworkPublic], responses=responses(401, 403, 422, 500))
def list_policy_networks(
    key: OperatorKey, engine: EngineDep, kind: Kind | None = None
) -> list[PolicyNetworkPublic]:
    """The networks now on the never-test and never-list lists (or one of them)."""
    return [
        PolicyNetworkPublic.model_validate(view)
        for view in policy.list_policy_networks(engine, kind)
    ]


@router.post(
    "",
    response_model=PolicyNetworkPublic,
    status_code=status.HTTP_201_CREATED,
    responses=responses(400, 401, 403, 413, 422, 500),
)
def add_policy_network(
    key: AdminKey, body: PolicyNetworkCreate, engine: EngineDep
) -> PolicyNetworkPublic:
    """Put a network on a list; if it is there already, the existing entry is returned."""
    with one_transaction(engine):  # the entry and its audit entry, or neither
        view = policy.add_policy_network(engine, body.network, body.kind, body.reason, actor(key))
        audit.record(
            engine,
            key,
            f"policy.add.{body.kind}",
            view.network,
            reason=body.reason,
            detail={"id": view.id},
        )
    return PolicyNetworkPublic.model_validate(view)


@router.delete(
    "", status_code=status.HTTP_204_NO_CONTENT, responses=responses(400, 401, 403, 404, 422, 500)
)
def remove_policy_network(
    key: AdminKey,
    engine: EngineDep,
    network: Annotated[str, Query(min_length=1, max_length=64, pattern=NETWORK_PATTERN)],
    kind: Kind,
    reason: Annotated[str | None, Query(max_length=2000, pattern=TEXT_PATTERN)] = None,
) -> None:
    """Take a network off a list."""
    with one_transaction(engine):
        if not policy.remove_policy_network(engine, network, kind, actor(key)):
            raise Problem(404, "not-found", f"{network} is not on the {kind} list")
        audit.record(engine, key, f"policy.remove.{kind}", network, reason=reason)
