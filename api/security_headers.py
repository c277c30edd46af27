"""A pure ASGI middleware that sends the browser-facing security headers.

Every response says `X-Content-Type-Options: nosniff`; every HTML response also carries a
Content-Security-Policy that runs scripts and styles from this origin only (no inline script
or style: the pages' style sheet and /docs' start-up script are files under /static/), may not
be framed (`frame-ancestors 'none'`, and `X-Frame-Options` for older browsers), posts forms
only here, and sends a referrer to this origin only.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_EVERY = [(b"x-content-type-options", b"nosniff")]
_HTML = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeadersMiddleware:
    """Add the security headers to each HTTP response (the HTML ones to HTML responses)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                kind = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                extra = _EVERY + (_HTML if kind.startswith(b"text/html") else [])
                headers += [(name, value) for name, value in extra if name not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
