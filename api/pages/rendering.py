"""What every human page shares: the templates, rendering, and addresses as URL paths.

Server-rendered with Jinja2, no scripts and no build step. The relay vocabulary is there for
the templates to compare with (`item.verdict == Verdict.CONFIRMED`), not their spelling.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from dnsbl.relay.states import DelistStatus, NominationStatus, Verdict

# Package data (pyproject's package-data): found the same way in a checkout and a wheel.
templates = Jinja2Templates(directory=Path(str(files("api") / "templates")))
templates.env.globals.update(
    Verdict=Verdict, NominationStatus=NominationStatus, DelistStatus=DelistStatus
)


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render template `name` with `context`."""
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def address_path(address: str) -> str:
    """An address as a URL path segment."""
    return quote(address, safe=":.")
