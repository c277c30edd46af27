"""The FastAPI application: the REST API under /v1, health and metrics, and the human pages.

`create_app` builds one application over one engine; `dnsbl api` serves it with uvicorn and
`dnsbl serve` runs it beside the DNS server, handing it the DNS query counter and a readiness
callable so that `/metrics` and `/readyz` can speak for the DNS side too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event

from api import docs_page, problems
from api.body_limit import BodyLimitMiddleware
from api.metrics import StoreCollector
from api.pages import address, removal, self_test
from api.pages import nominations as nomination_pages
from api.query_names import API_PREFIX, refuse_unknown_query_parameters
from api.request_ids import RequestIdMiddleware
from api.routes import (
    access_keys,
    audit,
    delist_requests,
    health,
    keys,
    listings,
    lookup,
    nominations,
    policy_networks,
    queue,
    relay_tests,
    reports,
    retests,
    self_tests,
    zones,
)
from api.schemas.common import TEXT_PATTERN, Input
from api.security_headers import SecurityHeadersMiddleware
from dnsbl.config import Settings
from dnsbl.db import engine_for
from dnsbl.listings.store import ListingStore
from dnsbl.logs import OutageLog
from dnsbl.metrics import registry_of
from dnsbl.traps.metrics import ReportCollector

# The pages' style sheet and /docs' start-up script (package data, as the templates are).
STATIC = Path(str(files("api") / "static"))

# The routers, in the order /docs lists them: public first, then admin, then operations.
ROUTERS = (
    lookup.router,
    nominations.router,
    self_tests.router,
    delist_requests.router,
    relay_tests.router,
    listings.router,
    reports.router,
    retests.router,
    queue.router,
    policy_networks.router,
    audit.router,
    zones.router,
    keys.router,
    access_keys.router,
    health.router,
    address.router,
    removal.router,
    nomination_pages.router,
    self_test.router,
)

DESCRIPTION = """\
A private DNSBL (RFC 5782) with ORBS-style relay testing.

Public: look an address up, nominate a host for a relay test, test your own mail server
(a self-test, which lists nothing), request removal of a listed host (by a retest).
Admin (`Authorization: Bearer <key>`, from `dnsbl apikey create`): listings, retests,
the job queue, policy networks, the audit log, zones, API keys and the DNS zones' access keys;
spam reports (admin or reporter keys).
Every error is an RFC 9457 problem document (`application/problem+json`).
"""


def create_app(
    settings: Settings,
    engine: Engine | None = None,
    *,
    dns_ready: Callable[[], bool] | None = None,
    collectors: Sequence[Collector] = (),
) -> FastAPI:
    """The application for `settings`, over `engine` (one is made from the settings if None).

    /metrics exports the database's numbers and `collectors` (those of the DNS node and
    worker running in the same process, under `dnsbl serve`); `dns_ready` tells /readyz
    whether the DNS index is loaded.
    """
    app = FastAPI(
        title="dnsbl",
        version="1",
        description=DESCRIPTION,
        docs_url=None,  # served by api.docs_page, without a CDN
        redoc_url=None,
        dependencies=[Depends(refuse_unknown_query_parameters)],
    )
    app.state.settings = settings
    app.state.engine = engine if engine is not None else engine_for(settings)
    app.state.store = ListingStore(app.state.engine)
    app.state.store.ensure_zones(settings.zone_names)
    app.state.metrics = registry_of(
        [StoreCollector(app.state.engine), ReportCollector(app.state.engine), *collectors]
    )
    app.state.dns_ready = dns_ready
    # One line when the database becomes unavailable, one a minute, one when it is back.
    outage = OutageLog(logging.getLogger("api"), "database")
    app.state.database_outage = outage
    app.state.write_probe = health.WriteProbe()
    event.listen(app.state.engine, "after_cursor_execute", lambda *_: outage.recovered())
    problems.install(app)
    docs_page.install(app)
    app.state.routes = []
    for router in ROUTERS:
        app.include_router(router)
        app.state.routes += [
            (route.path_regex, set(route.methods or ()))
            for route in router.routes
            if isinstance(route, APIRoute)
        ]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: even a refused body has an id
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with every error response declared as a problem document."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ProblemDetail"] = problems.ProblemDetail.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for path_name, path in schema.get("paths", {}).items():
        for operation in path.values():
            answers = operation.get("responses", {})
            if "422" in answers or path_name.startswith(API_PREFIX):
                # every REST operation refuses unknown query parameters (api.query_names)
                answers["422"] = problems.error_response(422)
            for code in ("405", "500", "503"):
                answers.setdefault(code, problems.error_response(int(code)))
            if "requestBody" in operation:
                # A body that is not JSON (or not UTF-8) cannot be parsed at all: 400.
                for code in ("400", "413"):
                    answers.setdefault(code, problems.error_response(int(code)))
    _zone_enums(components, [zone.name for zone in app.state.settings.zones])
    _no_nul_patterns(components)
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema


def _no_nul_patterns(components: dict[str, Any]) -> None:
    """Say in the document what `Input` enforces: no text field of a request holds a NUL."""

    def free_text(schema: dict[str, Any]) -> None:
        for branch in schema.get("anyOf", [schema]):
            if branch.get("type") == "string" and not {"pattern", "enum", "format"} & branch.keys():
                branch["pattern"] = TEXT_PATTERN

    models: list[type[Input]] = [Input]
    while models:
        model = models.pop()
        models += model.__subclasses__()
        for field in components.get(model.__name__, {}).get("properties", {}).values():
            free_text(field)


def _zone_enums(components: dict[str, Any], zones: list[str]) -> None:
    """Name the configured zones in the schema, where a request body must give one."""
    if not zones:
        return
    for model in ("ListingCreate", "RetestZoneCreate"):
        zone = components.get(model, {}).get("properties", {}).get("zone")
        if zone is None:
            continue
        for branch in zone.get("anyOf", [zone]):
            if branch.get("type") == "string":
                branch["enum"] = zones
