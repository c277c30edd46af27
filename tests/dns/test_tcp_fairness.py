"""TCP fairness (RFC 7766 §6.2.2): no one source, and no crowd of idle clients, keeps a new
client out. Real connections from several loopback source addresses."""

from __future__ import annotations

import asyncio
import struct

import dns.message
import pytest

from tests.dns_support import ZONE, answers, ask, make_index, row, running

NAME = "1.0.0.10." + ZONE
QUERY = dns.message.make_query(NAME, "A").to_wire()
FRAMED = struct.pack(">H", len(QUERY)) + QUERY

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _connect(host: str, port: int, source: str) -> Stream:
    return await asyncio.open_connection(host, port, local_addr=(source, 0))


async def _answered(stream: Stream) -> bool:
    """Whether a query on `stream` gets its answer (False: the server closed it)."""
    reader, writer = stream
    try:
        writer.write(FRAMED)
        await writer.drain()
        length = struct.unpack(">H", await asyncio.wait_for(reader.readexactly(2), 30))[0]
        return len(await asyncio.wait_for(reader.readexactly(length), 30)) == length
    except (asyncio.IncompleteReadError, ConnectionError):
        return False


async def _close(streams: list[Stream]) -> None:
    for _, writer in streams:
        writer.close()


async def test_a_source_holds_at_most_tcp_max_per_source_connections() -> None:
    async with running([make_index([row("10.0.0.1")])], tcp_max_per_source=3) as server:
        host, port = server.endpoints[0]
        held = [await _connect(host, port, "127.0.0.2") for _ in range(3)]
        assert all([await _answered(stream) for stream in held])
        extra = await _connect(host, port, "127.0.0.2")
        assert not await _answered(extra)  # the fourth from that source is closed at once
        reply = await ask(server, NAME, tcp=True, source="127.0.0.3")
        assert answers(reply, "A") == ["127.0.0.2"]
        await _close([*held, extra])


@pytest.mark.parametrize("per_source", [8, 1000])
async def test_512_connections_from_one_source_do_not_stop_a_new_one(per_source: int) -> None:
    """The issue's abuse: 512 connections from one source, each asking now and then. With
    the default per-source cap most are closed at once; with a high one they fill the global
    cap, and the newcomer takes the place of the one idle the longest."""
    async with running([make_index([row("10.0.0.1")])], tcp_max_per_source=per_source) as server:
        host, port = server.endpoints[0]
        crowd = [await _connect(host, port, "127.0.0.2") for _ in range(512)]
        served = await asyncio.gather(*(_answered(stream) for stream in crowd))
        assert sum(served) == min(per_source, 512)
        for _ in range(3):  # each newcomer is answered at once, again and again
            reply = await ask(server, NAME, tcp=True, source="127.0.0.3")
            assert answers(reply, "A") == ["127.0.0.2"]
        await _close(crowd)


async def test_at_the_global_cap_the_longest_idle_connection_makes_room() -> None:
    async with running([make_index([row("10.0.0.1")])], tcp_max_connections=2) as server:
        host, port = server.endpoints[0]
        oldest = await _connect(host, port, "127.0.0.2")
        assert await _answered(oldest)
        newer = await _connect(host, port, "127.0.0.3")
        assert await _answered(newer)
        newcomer = await _connect(host, port, "127.0.0.4")
        assert await _answered(newcomer)
        assert await _answered(newer)
        assert not await _answered(oldest)
        await _close([oldest, newer, newcomer])
