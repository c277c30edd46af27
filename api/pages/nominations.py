"""The nomination pages: ask for a relay test of an address, then follow it to its verdict.

Like the removal pages: a form on the lookup page, and a status page that refreshes itself
while the test waits or runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import ClientDep, EngineDep
from api.pages.csrf import same_site_form
from api.pages.rendering import address_path, not_found, page
from api.problems import from_error, page_response
from dnsbl.errors import DnsblError
from dnsbl.relay import nominations
from dnsbl.relay.states import NominationStatus

router = APIRouter(include_in_schema=False)


@router.post(
    "/nominate/{addr}", response_class=HTMLResponse, dependencies=[Depends(same_site_form)]
)
def nominate_submit(
    request: Request,
    addr: Annotated[str, Path(max_length=64)],
    engine: EngineDep,
    client: ClientDep,
) -> Response:
    """Queue a relay test of the address and go to its status page."""
    settings = request.app.state.settings
    try:
        view = nominations.submit_nomination(engine, settings, addr, client)
    except DnsblError as exc:
        return page_response(request, from_error(exc))
    return RedirectResponse(f"/nominations/{view.id}", status_code=303)


@router.get("/nominations/{nomination_id}", response_class=HTMLResponse)
def nomination_page(
    request: Request,
    nomination_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    engine: EngineDep,
) -> HTMLResponse:
    """Where a nomination stands: queued (with its place), testing, or its verdict."""
    view = nominations.get_nomination(engine, nomination_id)
    if view is None:
        return not_found(request, f"No nomination {nomination_id}.")
    return page(
        request,
        "nomination.html",
        item=view,
        final=view.status in (NominationStatus.DONE, NominationStatus.REFUSED),
        address_path=address_path(view.address),
    )
