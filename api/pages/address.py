"""The lookup pages: the form, and whether an address is listed, why, and the evidence.

The zone's TXT record points mail admins at `/lookup/<address>`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import ClientDep, EngineDep, SettingsDep
from api.pages.rendering import address_path, page
from api.views.address_report import address_report, relay_tests_of
from dnsbl.errors import AddressError

router = APIRouter(include_in_schema=False)


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
        result = address_report(engine, settings, addr)
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
