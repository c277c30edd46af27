"""The self-test pages: a button that tests the visitor's own address, and its result page.

The result page lists every envelope form with its outcome and the transcript, says plainly
what the result means (nothing listed; a grace test at a given time when the host relays),
and refreshes itself (a meta refresh, no script) until the test is done.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import ClientDep, EngineDep, SettingsDep
from api.pages.csrf import same_site_form
from api.pages.rendering import address_path, not_found, page
from api.problems import from_error, page_response
from dnsbl.errors import DnsblError
from dnsbl.relay import self_tests
from dnsbl.relay.states import NominationStatus

router = APIRouter(include_in_schema=False)


@router.get("/self-test", response_class=HTMLResponse)
def self_test_form(request: Request, client: ClientDep, settings: SettingsDep) -> HTMLResponse:
    """What a self-test does, and the button that asks for one."""
    return page(
        request,
        "self_test_form.html",
        client=client,
        grace_hours=settings.tester.self_test_grace_hours,
    )


@router.post("/self-test", response_class=HTMLResponse, dependencies=[Depends(same_site_form)])
def self_test_submit(
    request: Request, client: ClientDep, engine: EngineDep, settings: SettingsDep
) -> Response:
    """Queue a self-test of the visitor's address and go to its result page."""
    try:
        view = self_tests.submit_self_test(engine, settings, client)
    except DnsblError as exc:
        return page_response(request, from_error(exc))
    return RedirectResponse(f"/self-tests/{view.request.id}", status_code=303)


@router.get("/self-tests/{self_test_id}", response_class=HTMLResponse)
def self_test_page(
    request: Request,
    self_test_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    engine: EngineDep,
) -> HTMLResponse:
    """A self-test's result: what it means, every form with its outcome, the transcript."""
    view = self_tests.get_self_test(engine, self_test_id)
    if view is None:
        return not_found(request, f"No self-test {self_test_id}.")
    return page(
        request,
        "self_test.html",
        item=view,
        summary=self_tests.summary(view),
        final=view.request.status in (NominationStatus.DONE, NominationStatus.REFUSED),
        address_path=address_path(view.request.address),
    )
