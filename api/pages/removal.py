"""The removal pages: request a listed host's removal, then follow the retest that decides.

A status page that is waiting for the retest refreshes itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import ClientDep, EngineDep, SettingsDep
from api.pages.csrf import same_site_form
from api.pages.rendering import address_path, not_found, page
from api.problems import from_error
from api.routes.delist_requests import submit, to_public
from api.schemas.public import DelistRequestCreate
from api.views.address_report import address_report, relay_tests_of
from dnsbl.addresses import parse_address
from dnsbl.errors import AddressError, DnsblError
from dnsbl.relay import delisting
from dnsbl.relay.states import DELIST_FINAL

router = APIRouter(include_in_schema=False)


@router.get("/delist/status/{request_id}", response_class=HTMLResponse)
def delist_status_page(
    request: Request,
    request_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    engine: EngineDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """The progress and outcome of a removal request; refreshes itself until it is decided."""
    view = delisting.get_delist_request(engine, request_id)
    if view is None:
        return not_found(request, f"No request {request_id}.")
    public = to_public(engine, view, settings)
    tests = [t for t in relay_tests_of(engine, public.address) if t.id == public.test_id]
    return page(
        request,
        "delist_status.html",
        item=public,
        test=tests[0] if tests else None,
        final=public.status in DELIST_FINAL,
        address_path=address_path(public.address),
    )


@router.get("/delist/{addr}", response_class=HTMLResponse)
def delist_form(
    request: Request,
    addr: Annotated[str, Path(max_length=64)],
    engine: EngineDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """The removal request form, with the confirmation the retest depends on."""
    try:
        result = address_report(engine, settings, addr)
    except AddressError as exc:
        return page(request, "index.html", 400, visitor=addr, error=exc.detail)
    return page(request, "delist.html", result=result, address_path=address_path(result.address))


@router.post("/delist/{addr}", response_class=HTMLResponse, dependencies=[Depends(same_site_form)])
def delist_submit(
    request: Request,
    addr: Annotated[str, Path(max_length=64)],
    engine: EngineDep,
    settings: SettingsDep,
    client: ClientDep,
    confirmed_fixed: Annotated[bool, Form()] = False,
    email: Annotated[str, Form(max_length=254)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """File the request and go to its status page; on refusal, show the form with the reason."""
    try:
        body = DelistRequestCreate(
            address=addr,
            confirmed_fixed=confirmed_fixed,
            email=email.strip() or None,
            note=note.strip() or None,
        )
        public = submit(engine, settings, body, client)
    except DnsblError as exc:
        problem = from_error(exc)
        result = address_report(engine, settings, addr) if _is_address(addr) else None
        return page(
            request,
            "delist.html",
            problem.status,
            result=result,
            address_path=address_path(addr),
            error=problem.detail,
            email=email,
            note=note,
        )
    except ValueError as exc:  # the body's own validation (a malformed email, say)
        result = address_report(engine, settings, addr) if _is_address(addr) else None
        return page(
            request,
            "delist.html",
            422,
            result=result,
            address_path=address_path(addr),
            error=_first_error(exc),
            email=email,
            note=note,
        )
    return RedirectResponse(f"/delist/status/{public.id}", status_code=303)


def _is_address(text: str) -> bool:
    try:
        parse_address(text)
    except AddressError:
        return False
    return True


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first.get('loc', ()))}: {first.get('msg')}"
    return str(exc)
