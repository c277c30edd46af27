"""Serving the application with uvicorn, alone (`dnsbl api`) or beside other roles (`serve`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator, Sequence

import uvicorn
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from api.app import create_app
from dnsbl.config import Settings, parse_endpoint


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to its host process (which stops it by cancelling)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _config(
    settings: Settings,
    engine: Engine | None,
    dns_ready: Callable[[], bool] | None,
    collectors: Sequence[Collector],
) -> uvicorn.Config:
    host, port = parse_endpoint(settings.api.listen, 8000)
    app = create_app(settings, engine, dns_ready=dns_ready, collectors=collectors)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log.level.lower(),
        log_config=None,  # uvicorn's records go through dnsbl's handler (text or JSON)
        access_log=False,
        # X-Forwarded-For counts only from api.trusted_proxies (none by default): anyone
        # else could rotate it to escape the per-requester limits.
        proxy_headers=bool(settings.api.trusted_proxies),
        forwarded_allow_ips=list(settings.api.trusted_proxies) or "",
        server_header=False,
    )


async def run_api(
    settings: Settings,
    engine: Engine | None = None,
    *,
    dns_ready: Callable[[], bool] | None = None,
    collectors: Sequence[Collector] = (),
) -> None:
    """Serve the API on `settings.api.listen` until cancelled (a role of `dnsbl serve`).

    /metrics adds `collectors` (the other roles' in the same process) to the database's.
    """
    server = _Server(_config(settings, engine, dns_ready, collectors))
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        await task
        raise
