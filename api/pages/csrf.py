"""The pages' defence against cross-site form posts (CSRF): the origin, then a token.

A form post is refused (403, nothing filed) when the browser says it comes from another site
(`Sec-Fetch-Site: cross-site` or `same-site`), when its `Origin` is not this site's (the
request's own origin or `api.public_url`'s), or when its `csrf_token` field does not match the
`dnsbl_csrf` cookie that the page with the form set (a double-submit token: a page of another
site can neither read the cookie nor, SameSite=Strict, have it sent). The origin check stops
every current browser; the token covers those that send neither header.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlsplit

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.responses import Response

COOKIE = "dnsbl_csrf"
FIELD = "csrf_token"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")
_SAME = ("same-origin", "none")  # "none": typed or bookmarked by the user


def token_of(request: Request) -> str:
    """The form token of this browser: its cookie's, or a new one (set by `remember`)."""
    known = request.cookies.get(COOKIE, "")
    return known if _TOKEN.fullmatch(known) else secrets.token_urlsafe(32)


def remember(request: Request, response: Response, token: str) -> None:
    """Set the cookie that `token` must match when the page's form is posted."""
    if request.cookies.get(COOKIE) == token:
        return
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",  # behind a TLS proxy: with api.trusted_proxies
        path="/",
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _public_origin(request: Request) -> str:
    return _origin(request.app.state.settings.api.public_url)


def _refuse(why: str) -> HTTPException:
    # A plain HTTP error, rendered as a page by api.problems (which imports the pages).
    return HTTPException(403, f"form refused: {why}")


async def same_site_form(request: Request) -> None:
    """A dependency of every page that takes a form post: refuses cross-site posts (403)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in _SAME:
        raise _refuse(f"posted from another site ({site})")
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() not in {
        _origin(str(request.base_url)),
        _public_origin(request),
    }:
        raise _refuse(f"posted from {origin}, not from this site")
    given = (await request.form()).get(FIELD)
    cookie = request.cookies.get(COOKIE)
    if not isinstance(given, str) or not cookie or not secrets.compare_digest(given, cookie):
        raise _refuse("the form's token is missing or stale; reload the page and send it again")
