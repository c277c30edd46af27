"""Admin authentication: `Authorization: Bearer <key>`, and the role a route needs.

Without a valid key the answer is 401 with `WWW-Authenticate: Bearer`; with a valid key of too
low a role it is 403. Operators may read and schedule retests; admins may also change listings,
policy networks and keys. Reporters may only report spam (as admins may). Routes take the
caller as `OperatorKey`, `AdminKey` or `ReporterKey`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import EngineDep
from api.problems import Problem
from dnsbl.apikeys import KeyInfo, verify_key

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `dnsbl apikey create --role admin|operator|reporter`.",
)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dnsbl"'}


def _caller(
    engine: EngineDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> KeyInfo:
    if credentials is None:
        raise Problem(
            401,
            "unauthenticated",
            "this path needs an API key: send 'Authorization: Bearer <key>'",
            headers=_CHALLENGE,
        )
    key = verify_key(engine, credentials.credentials)
    if key is None:
        raise Problem(
            401,
            "unauthenticated",
            "the API key is not valid (unknown, malformed or revoked)",
            headers={"WWW-Authenticate": 'Bearer realm="dnsbl", error="invalid_token"'},
        )
    return key


def _optional_caller(
    engine: EngineDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> KeyInfo | None:
    return None if credentials is None else _caller(engine, credentials)


def check_role(key: KeyInfo | None, role: str, action: str = "this action") -> KeyInfo:
    """`key` if it has `role`; else the 401 (no key) or 403 (too low a role) problem."""
    if key is None:
        raise Problem(
            401,
            "unauthenticated",
            f"{action} needs an API key of the {role} role: send 'Authorization: Bearer <key>'",
            headers=_CHALLENGE,
        )
    if not key.may(role):
        raise Problem(
            403,
            "forbidden",
            f"{action} needs the {role} role; key {key.id} has the {key.role} role",
        )
    return key


def _require(role: str) -> Callable[[KeyInfo], KeyInfo]:
    def check(key: Annotated[KeyInfo, Depends(_caller)]) -> KeyInfo:
        return check_role(key, role)

    return check


require_operator = _require("operator")
require_admin = _require("admin")


def require_reporter(key: Annotated[KeyInfo, Depends(_caller)]) -> KeyInfo:
    """A key that may report spam: the reporter role's only right, and an admin's."""
    if key.role not in ("reporter", "admin"):
        raise Problem(
            403,
            "forbidden",
            f"reporting spam needs the reporter or admin role; key {key.id} is {key.role}",
        )
    return key


OperatorKey = Annotated[KeyInfo, Depends(require_operator)]
AdminKey = Annotated[KeyInfo, Depends(require_admin)]
ReporterKey = Annotated[KeyInfo, Depends(require_reporter)]
MaybeKey = Annotated[KeyInfo | None, Depends(_optional_caller)]
"""The caller's key on a public route, where some requests need one; None without a key."""


def actor(key: KeyInfo) -> str:
    """How a key is named in listings and the change log."""
    return f"key:{key.id}"
