"""What every human page shares: the templates, rendering, and addresses as URL paths.

Server-rendered with Jinja2, no scripts and no build step. Every page gets the browser's form
token (`csrf_token`, see api/pages/csrf.py), which its forms post back. The relay vocabulary is
there for the templates to compare with (`item.verdict == Verdict.CONFIRMED`), not their
spelling.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.pages import csrf
from dnsbl.relay.states import DelistStatus, NominationStatus, Verdict

# Package data (pyproject's package-data): found the same way in a checkout and a wheel.
templates = Jinja2Templates(directory=Path(str(files("api") / "templates")))
templates.env.globals.update(
    Verdict=Verdict, NominationStatus=NominationStatus, DelistStatus=DelistStatus
)


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render template `name` with `context` (and the form token)."""
    token = csrf.token_of(request)
    response = templates.TemplateResponse(
        request, name, {"csrf_token": token, **context}, status_code=status_code
    )
    csrf.remember(request, response, token)
    return response


def not_found(request: Request, message: str) -> HTMLResponse:
    """The 404 page, saying what was not found."""
    return page(request, "message.html", 404, title="Not found", message=message)


def address_path(address: str) -> str:
    """An address as a URL path segment."""
    return quote(address, safe=":.")
