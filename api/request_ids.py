"""A pure ASGI middleware that gives every HTTP request an id, in its logs and its response.

The id is the client's (or the reverse proxy's) `X-Request-ID` when that is a short token,
else a new random one. It is bound to the request's log context (`request_id` in JSON logs)
and sent back as `X-Request-ID`, so an operator can find a user's failed request in the logs.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dnsbl.logs import log_context

HEADER = b"x-request-id"
_TOKEN = re.compile(rb"[A-Za-z0-9._-]{1,64}")


class RequestIdMiddleware:
    """Bind a request id to each HTTP request's logs, and answer it in `X-Request-ID`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(HEADER, b"")
        request_id = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, request_id)]
            await send(message)

        with log_context(request_id=request_id.decode()):
            await self.app(scope, receive, send_with_id)
