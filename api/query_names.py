"""Unknown query parameters are refused on the REST API (`/v1/…`), not silently ignored.

A filter spelled wrong (`?categroy=spam`) would otherwise answer as if there were no filter at
all — every listing instead of the ones asked for, or a retest of a whole zone. So a query
parameter that the operation does not declare, or a single-valued one given twice (of which
only the last would count), is a validation error (422, a problem document naming it), and
the OpenAPI document says so for every operation. The server-rendered pages
are for people and links (tracking parameters and all) and keep ignoring what they do not use.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.problems import Problem

API_PREFIX = "/v1/"


def _query_names(dependant: Dependant) -> dict[str, bool]:
    """The query parameters an operation reads (its dependencies' included), each with
    whether it may be given more than once (a list)."""
    names = {
        field.alias: _repeatable(field.field_info.annotation) for field in dependant.query_params
    }
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


def _repeatable(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_repeatable(arg) for arg in typing.get_args(annotation))
    return (origin or annotation) in (list, tuple, set, frozenset)


async def refuse_unknown_query_parameters(request: Request) -> None:
    """A dependency of every operation: 422 for a query parameter it does not declare, or
    for one it reads once given several times."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.url.path.startswith(API_PREFIX):
        return
    if not request.query_params:
        return
    known = _query_names(route.dependant)
    given = request.query_params
    unknown = sorted(set(given.keys()) - known.keys())
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        _refuse(unknown, "not a parameter of this operation", f"unknown (accepted: {allowed})")
    # `?zone=a&zone=b` would silently mean b alone
    repeated = sorted(
        name for name, many in known.items() if not many and len(given.getlist(name)) > 1
    )
    if repeated:
        _refuse(repeated, "given more than once", "given more than once")


def _refuse(names: list[str], message: str, summary: str) -> None:
    errors = [{"field": f"query.{name}", "message": message} for name in names]
    detail = f"query parameter {', '.join(map(repr, names))}: {summary}"
    raise Problem(422, "validation", detail, title="Invalid request", errors=errors)
