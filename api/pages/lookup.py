"""The human pages: look an address up, read the evidence, request removal, follow the retest.

Server-rendered with Jinja2, no scripts and no build step; a status page that is waiting for a
retest refreshes itself. The zone's TXT record points mail admins at `/lookup/<address>`.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.deps import ClientDep, EngineDep, SettingsDep
from api.problems import from_error
from api.routes.delist_requests import submit, to_public
from api.schemas.public import DelistRequestCreate
from api.views.lookup import lookup, relay_tests_of
from dnsbl.addresses import parse_address
from dnsbl.errors import AddressError, DnsblError
from dnsbl.relay import delisting

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=FsPath(__file__).parent.parent / "templates")

# Delist request states after which nothing more will happen.
_FINAL = {"delisted", "still-listed", "untestable"}


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render template `name` with `context`."""
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def address_path(address: str) -> str:
    """An address as a URL path segment."""
    return quote(address, safe=":.")


@router.get("/", response_class=HTMLResponse)
def home(request: Request, client: ClientDep, addr: str | None = None) -> Response:
    """The lookup form, with the visitor's own address filled in."""
    if addr:
        return RedirectResponse(f"/lookup/{address_path(addr.strip()[:64])}", status_code=303)
    return page(request, "index.html", visitor=client)


@router.get("/lookup/{addr}", response_class=HTMLResponse)
def lookup_page(
    request: Request,
    addr: Annotated[str, Path(max_length=64)],
    engine: EngineDep,
    settings: SettingsDep,
    client: ClientDep,
) -> HTMLResponse:
    """Whether the address is listed, why, since when, and the transcripts of its tests."""
    try:
        result = lookup(engine, settings, addr)
    except AddressError as exc:
        return page(request, "index.html", 400, visitor=addr, error=exc.detail)
    tests = relay_tests_of(engine, result.address)
    return page(
        request,
        "lookup.html",
        result=result,
        tests=tests,
        address_path=address_path(result.address),
    )


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
        return page(
            request, "message.html", 404, title="Not found", message=f"No request {request_id}."
        )
    public = to_public(engine, view, settings)
    tests = [t for t in relay_tests_of(engine, public.address) if t.id == public.test_id]
    return page(
        request,
        "delist_status.html",
        item=public,
        test=tests[0] if tests else None,
        final=public.status in _FINAL,
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
        result = lookup(engine, settings, addr)
    except AddressError as exc:
        return page(request, "index.html", 400, visitor=addr, error=exc.detail)
    return page(request, "delist.html", result=result, address_path=address_path(result.address))


@router.post("/delist/{addr}", response_class=HTMLResponse)
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
        result = lookup(engine, settings, addr) if _is_address(addr) else None
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
        result = lookup(engine, settings, addr) if _is_address(addr) else None
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
