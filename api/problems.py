"""Errors as RFC 9457 problem details (`application/problem+json`), for every failure path.

Routes raise `Problem` (or let a `DnsblError` escape: it is mapped by class); FastAPI's own
validation errors, Starlette's 404/405, oversized bodies and unhandled exceptions are all turned
into the same shape, so a client parses one kind of error and never sees a stack trace.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.pages.rendering import page
from api.schemas.common import (
    ADDRESS_PATTERN,
    EMAIL_PATTERN,
    NETWORK_PATTERN,
    RETURN_CODE_PATTERN,
)
from dnsbl.db import is_unavailable
from dnsbl.errors import AddressError, DnsblError, NotListedError, UnknownZoneError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
_TYPE_BASE = "/problems/"


class ProblemDetail(BaseModel):
    """An RFC 9457 problem: what went wrong, in one shape for every error."""

    type: str = Field(description="URI reference naming the kind of problem")
    title: str = Field(description="Short summary of the kind of problem")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What went wrong with this request, precisely")
    instance: str = Field(description="The path of the request that failed")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For validation errors: each bad field and why"
    )


class Problem(Exception):
    """An error to answer as a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.errors = errors


def problem_response(request: Request, problem: Problem) -> Response:
    """The response carrying `problem` for `request`: a problem document, or for a human page
    an HTML page saying the same."""
    if is_page(request):
        return page_response(request, problem)
    body = ProblemDetail(
        type=_TYPE_BASE + problem.slug,
        title=problem.title,
        status=problem.status,
        detail=problem.detail,
        instance=request.url.path,
        errors=problem.errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=problem.status,
        headers=problem.headers,
        media_type=PROBLEM_TYPE,
    )


def _retry_after(exc: Exception) -> dict[str, str]:
    seconds = getattr(exc, "retry_after", None)
    if seconds is None:
        return {}
    return {"Retry-After": str(max(1, int(-(-float(seconds) // 1))))}


# DnsblError subclasses by name, for the errors of modules the API calls but does not import
# eagerly (the job queue's): (status, slug, title).
_BY_NAME: dict[str, tuple[int, str, str]] = {
    "RateLimited": (429, "rate-limited", "Too many requests"),
    "NeverListed": (403, "never-list", "Never listed by policy"),
    "PolicyRefused": (403, "not-testable", "Refused by policy"),
    "NotYourAddress": (403, "not-your-address", "Not your address"),
    "ReturnCodeError": (422, "bad-code", "Bad return code"),
    "ExpiryError": (422, "validation", "Invalid request"),
    "TxtTooLong": (422, "validation", "Invalid request"),
    "ConfirmationRequired": (422, "confirmation-required", "Confirmation required"),
    "NotListedError": (409, "not-listed", "Not listed"),
    "UnknownRoleError": (422, "unknown-role", "Unknown role"),
    "NoSourceError": (422, "no-source", "No source to list"),
}


def from_error(exc: DnsblError) -> Problem:
    """The problem that a library error means to an HTTP client."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _BY_NAME:
            status, slug, title = _BY_NAME[cls.__name__]
            return Problem(status, slug, exc.detail, title=title, headers=_retry_after(exc))
    if isinstance(exc, AddressError):
        return Problem(400, "bad-address", exc.detail, title="Bad address")
    if isinstance(exc, UnknownZoneError):
        return Problem(404, "unknown-zone", exc.detail, title="Unknown zone")
    if isinstance(exc, NotListedError):
        return Problem(409, "not-listed", exc.detail, title="Not listed")
    return Problem(400, "refused", exc.detail)


_PATTERN_NAMES = {
    ADDRESS_PATTERN: "a valid IPv4 or IPv6 address",
    EMAIL_PATTERN: "an email address",
    NETWORK_PATTERN: "a valid IPv4 or IPv6 address or CIDR network",
    RETURN_CODE_PATTERN: "a return code in 127.0.0.0/8 (RFC 5782)",
}


def _validation_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors: list[dict[str, Any]] = []
    for item in exc.errors():
        location = ".".join(str(part) for part in item.get("loc", ()))
        message = str(item.get("msg", "invalid"))
        if item.get("type") == "string_pattern_mismatch":
            pattern = str((item.get("ctx") or {}).get("pattern"))
            bad = item.get("input")
            message = f"{bad!r} is not {_PATTERN_NAMES.get(pattern, 'in the expected form')}"
        errors.append({"field": location, "message": message})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]) or "invalid request"
    return summary, errors


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


def page_response(request: Request, problem: Problem) -> HTMLResponse:
    """`problem` as a human page: an HTML message with the problem's status and headers."""
    answer = page(
        request, "message.html", problem.status, title=problem.title, message=problem.detail
    )
    answer.headers.update(problem.headers)
    return answer


async def _on_dnsbl_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DnsblError)
    return problem_response(request, from_error(exc))


async def _on_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    summary, errors = _validation_errors(exc)
    problem = Problem(422, "validation", summary, title="Invalid request", errors=errors)
    return problem_response(request, problem)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    slug = {403: "forbidden", 404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
        exc.status_code, "http-error"
    )
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no resource at {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        if detail == "Method Not Allowed":
            detail = (
                f"{request.method} is not allowed on {request.url.path}; use {headers['Allow']}"
            )
    elif exc.status_code == 400 and slug == "http-error":
        slug = "bad-body"
    return problem_response(request, Problem(exc.status_code, slug, detail, headers=headers))


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's).

    `app.state.routes` holds the (path regex, methods) of every route, gathered by `create_app`.
    """
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for regex, route_methods in getattr(request.app.state, "routes", ()):
        if regex.match(path):
            methods |= route_methods
    return ", ".join(sorted(methods))


# Seconds a client is asked to wait when the database is unavailable: about one bound.
RETRY_AFTER_UNAVAILABLE = 5


def is_page(request: Request) -> bool:
    """Whether `request` is for a human page (HTML), not for the REST API."""
    route = request.scope.get("route")
    response_class = getattr(route, "response_class", None)
    return isinstance(response_class, type) and issubclass(response_class, HTMLResponse)


async def _on_database(request: Request, exc: Exception) -> Response:
    """503 while the database is down, slow or full (logged as an outage, not per request)."""
    assert isinstance(exc, SQLAlchemyError)
    if not is_unavailable(exc):
        return await _on_crash(request, exc)
    request.app.state.database_outage.failed(exc)
    headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}
    detail = "the database is unavailable; try again in a few seconds"
    title = "Temporarily unavailable" if is_page(request) else "Service unavailable"
    return problem_response(
        request, Problem(503, "unavailable", detail, title=title, headers=headers)
    )


async def _on_crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    problem = Problem(500, "internal", "the server failed to answer; the error has been logged")
    return problem_response(request, problem)


def install(app: FastAPI) -> None:
    """Make every error of `app` a problem document."""
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(DnsblError, _on_dnsbl_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(SQLAlchemyError, _on_database)
    app.add_exception_handler(Exception, _on_crash)


# The headers that come with some error statuses, as OpenAPI declares them.
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge"}},
    405: {"Allow": {"schema": {"type": "string"}, "description": "The methods of this path"}},
    503: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Seconds to wait before asking again",
        }
    },
    429: {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 1},
            "description": "Seconds to wait before asking again",
        }
    },
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses an operation can answer."""
    return {status: error_response(status) for status in statuses}


def error_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object of one error status: a problem document, and its headers."""
    answer: dict[str, Any] = {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}},
    }
    if status in ERROR_HEADERS:
        answer["headers"] = ERROR_HEADERS[status]
    return answer
