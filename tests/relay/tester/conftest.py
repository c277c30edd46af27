"""Fixtures of the tester's tests: hand-written TCP peers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.smtp_fakes import Serve


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Serve], Awaitable[int]]]:
    """Start a hand-written TCP peer on 127.0.0.1; returns its port."""
    servers: list[asyncio.Server] = []

    async def start(serve: Serve) -> int:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
