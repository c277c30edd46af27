"""Unknown query parameters are refused on the REST API (`/v1/…`), not silently ignored.

A filter spelled wrong (`?categroy=spam`) would otherwise answer as if there were no filter at
all — every listing instead of the ones asked for, or a retest of a whole zone. So a query
parameter that the operation does not declare is a validation error (422, a problem document
naming it), and the OpenAPI document says so for every operation. The server-rendered pages
are for people and links (tracking parameters and all) and keep ignoring what they do not use.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api.problems import Problem

API_PREFIX = "/v1/"


def _query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters an operation reads, its dependencies' included."""
    names = {field.alias for field in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return frozenset(names)


async def refuse_unknown_query_parameters(request: Request) -> None:
    """A dependency of every operation: 422 for a query parameter it does not declare."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.url.path.startswith(API_PREFIX):
        return
    if not request.query_params:
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params.keys()) - known)
    if unknown:
        errors = [
            {"field": f"query.{name}", "message": "not a parameter of this operation"}
            for name in unknown
        ]
        allowed = ", ".join(sorted(known)) or "none"
        raise Problem(
            422,
            "validation",
            f"unknown query parameter {', '.join(map(repr, unknown))} (accepted: {allowed})",
            title="Invalid request",
            errors=errors,
        )
