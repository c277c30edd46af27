"""The raw SMTP client: verbatim commands, multi-line replies, deadlines, transcript."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from dnsbl.relay.tester.smtp_session import (
    SmtpDisconnected,
    SmtpProtocolError,
    SmtpSession,
    SmtpTimeout,
    Transcript,
)
from tests.smtp_fakes import free_port

Responder = Callable[[bytes], bytes | None]


class _Scripted:
    """A raw TCP server: writes `greeting`, then answers each line with `respond(line)`."""

    def __init__(self, greeting: bytes, respond: Responder) -> None:
        self.greeting = greeting
        self.respond = respond
        self.received = bytearray()
        self.server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.greeting)
        try:
            while line := await reader.readline():
                self.received += line
                answer = self.respond(line)
                if answer is None:
                    continue
                if answer == b"":
                    break
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


Start = Callable[[bytes, Responder], Awaitable[_Scripted]]


@pytest.fixture
async def scripted() -> AsyncIterator[Start]:
    """Start scripted servers on 127.0.0.1; all are closed at the end of the test."""
    servers: list[asyncio.Server] = []

    async def start(greeting: bytes, respond: Responder) -> _Scripted:
        fake = _Scripted(greeting, respond)
        fake.server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
        servers.append(fake.server)
        return fake

    yield start
    for server in servers:
        server.close()


async def _open(port: int, transcript: Transcript, timeout: float = 2.0) -> SmtpSession:
    return await SmtpSession.open(
        "127.0.0.1", port, transcript, connect_timeout=timeout, command_timeout=timeout
    )


def _ok(line: bytes) -> bytes:
    return b"221 bye\r\n" if line.startswith(b"QUIT") else b"250 ok\r\n"


async def test_multi_line_replies_and_verbatim_commands(scripted: Start) -> None:
    def respond(line: bytes) -> bytes:
        if line.startswith(b"EHLO"):
            return b"250-lab.example hello\r\n250-SIZE 1000\r\n250 8BITMIME\r\n"
        return _ok(line)

    fake = await scripted(b"220-lab.example ESMTP\r\n220 second line\r\n", respond)
    transcript = Transcript()
    session = await _open(fake.port, transcript)
    banner = await session.read_reply()
    assert banner.code == 220
    assert banner.lines == ("220-lab.example ESMTP", "220 second line")
    ehlo = await session.command("EHLO tester.example")
    assert ehlo.code == 250 and len(ehlo.lines) == 3
    assert ehlo.text == "250-lab.example hello\n250-SIZE 1000\n250 8BITMIME"
    weird = 'RCPT TO:<"rt-x@c"@[127.0.0.1]>'
    assert (await session.command(weird)).code == 250
    await session.close()
    assert weird.encode() + b"\r\n" in bytes(fake.received)
    text = transcript.text()
    assert re.search(r"^\S+Z C: RCPT TO:<\"rt-x@c\"@\[127\.0\.0\.1\]>$", text, re.M)
    assert re.search(r"^\S+Z S: 220-lab\.example ESMTP$", text, re.M)
    assert "C: QUIT" in text


def _queued(line: bytes) -> bytes | None:
    if line == b".\r\n":
        return b"250 queued\r\n"
    return b"221 bye\r\n" if line == b"QUIT\r\n" else None


async def test_message_is_dot_stuffed_and_terminated(scripted: Start) -> None:
    fake = await scripted(b"220 x\r\n", _queued)
    session = await _open(fake.port, Transcript())
    await session.read_reply()
    reply = await session.send_message("Subject: t\n\n.leading dot\nlast\n", data_timeout=2)
    assert reply.code == 250
    await session.close()
    expected = b"Subject: t\r\n\r\n..leading dot\r\nlast\r\n.\r\nQUIT\r\n"
    assert bytes(fake.received) == expected


async def test_a_silent_peer_times_out(scripted: Start) -> None:
    fake = await scripted(b"", lambda line: None)
    transcript = Transcript()
    session = await _open(fake.port, transcript, timeout=0.3)
    with pytest.raises(SmtpTimeout, match="timeout at banner"):
        await session.read_reply(what="banner")
    session.abort()
    assert "no banner within 0.3 s" in transcript.text()


async def test_a_peer_that_hangs_up_is_reported(scripted: Start) -> None:
    fake = await scripted(b"220 x\r\n", lambda line: b"")
    session = await _open(fake.port, Transcript())
    await session.read_reply()
    with pytest.raises(SmtpDisconnected):
        await session.command("MAIL FROM:<>")
    assert session.closed
    await session.close()


async def test_garbage_is_not_a_reply(scripted: Start) -> None:
    fake = await scripted(b"HTTP/1.1 400 Bad Request\r\n", lambda line: None)
    session = await _open(fake.port, Transcript())
    with pytest.raises(SmtpProtocolError):
        await session.read_reply()
    session.abort()


async def test_endless_continuation_lines_are_cut_off(scripted: Start) -> None:
    fake = await scripted(b"220-x\r\n" * 500, lambda line: None)
    session = await _open(fake.port, Transcript())
    with pytest.raises(SmtpProtocolError, match="too many lines"):
        await session.read_reply()
    session.abort()


async def test_nothing_listening_is_connection_refused() -> None:
    transcript = Transcript()
    with pytest.raises(SmtpDisconnected, match="connection refused"):
        await _open(free_port(), transcript)
    assert "connection refused" in transcript.text()


async def test_a_command_cannot_smuggle_a_second_line(scripted: Start) -> None:
    fake = await scripted(b"220 x\r\n", _ok)
    session = await _open(fake.port, Transcript())
    await session.read_reply()
    with pytest.raises(SmtpProtocolError):
        await session.command("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>")
    await session.close()


def test_starttls_is_read_from_the_ehlo_keywords() -> None:
    from dnsbl.relay.tester.smtp_session import Reply, offers_starttls

    offered = Reply(250, ("250-mx.example.net", "250-PIPELINING", "250 starttls"))
    assert offers_starttls(offered)
    assert not offers_starttls(Reply(250, ("250-mx.example.net STARTTLS", "250 8BITMIME")))
    assert not offers_starttls(Reply(250, ("250 STARTTLS",)))  # the greeting line, no keyword
