"""Fake SMTP peers for the tester's tests: an aiosmtpd server that records the raw arguments.

`FakeSmtp` answers MAIL and RCPT by a small policy instead of aiosmtpd's own address parser
(which would reject the battery's malformed addresses before a test could see them), and keeps
the exact text received after `MAIL FROM:` and `RCPT TO:` and every message's content. With a
`tls_context` it offers STARTTLS (and with `require_starttls` refuses mail before it, as
Postfix's `smtpd_tls_security_level = encrypt` does); `self_signed_certificate` makes the
throwaway certificate for it and for the Postfix lab.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from dnsbl.config import TesterSettings


@dataclass
class Recorded:
    """What a fake server received."""

    mail_args: list[str] = field(default_factory=list)
    rcpt_args: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    sessions: int = 0


@dataclass
class Policy:
    """How a fake answers: replies for MAIL and RCPT, and after how many rejections it hangs up."""

    mail_reply: str = "250 2.1.0 OK"
    rcpt_reply: str = "250 2.1.5 OK"
    data_reply: str = "250 2.0.0 queued"
    drop_after_rejections: int | None = None


def _strip_keyword(arg: str | None, keyword: str) -> str:
    text = arg or ""
    return text[len(keyword) :] if text.upper().startswith(keyword) else text


class _RecordingSMTP(SMTP):
    def __init__(self, handler: Any, fake: FakeSmtp, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._fake = fake
        self._rejections = 0

    async def _reject(self, reply: str) -> None:
        self._rejections += 1
        limit = self._fake.policy.drop_after_rejections
        if limit is not None and self._rejections >= limit:
            await self.push("421 4.7.0 Too many errors, closing")
            assert self.transport is not None
            self.transport.close()
            return
        await self.push(reply)

    async def smtp_MAIL(self, arg: str | None) -> None:
        raw = _strip_keyword(arg, "FROM:")
        self._fake.recorded.mail_args.append(raw)
        reply = self._fake.policy.mail_reply
        if not reply.startswith("2"):
            await self._reject(reply)
            return
        assert self.envelope is not None
        self.envelope.mail_from = raw
        await self.push(reply)

    async def smtp_RCPT(self, arg: str | None) -> None:
        raw = _strip_keyword(arg, "TO:")
        self._fake.recorded.rcpt_args.append(raw)
        reply = self._fake.policy.rcpt_reply
        if not reply.startswith("2"):
            await self._reject(reply)
            return
        assert self.envelope is not None
        self.envelope.rcpt_tos.append(raw)
        await self.push(reply)


class _Handler:
    def __init__(self, fake: FakeSmtp) -> None:
        self._fake = fake

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._fake.recorded.messages.append(envelope.original_content or b"")
        return self._fake.policy.data_reply


class _FakeController(Controller):
    def __init__(self, fake: FakeSmtp, hostname: str, **smtp: Any) -> None:
        super().__init__(
            _Handler(fake), hostname="127.0.0.1", port=0, server_hostname=hostname, **smtp
        )
        self._fake = fake

    def factory(self) -> SMTP:
        self._fake.recorded.sessions += 1
        return _RecordingSMTP(self.handler, self._fake, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class FakeSmtp:
    """A running fake SMTP server on 127.0.0.1; `port` is where it listens."""

    def __init__(
        self,
        policy: Policy | None = None,
        hostname: str = "fake.lab.example",
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
    ) -> None:
        self.policy = policy or Policy()
        self.recorded = Recorded()
        tls = {"tls_context": tls_context, "require_starttls": require_starttls}
        self._controller = _FakeController(self, hostname, **(tls if tls_context else {}))

    def __enter__(self) -> FakeSmtp:
        self._controller.start()
        # the controller's readiness probe was one session; it is not the tester's
        self.recorded.sessions = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    @property
    def port(self) -> int:
        return int(self._controller.port)


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""A hand-written peer: `asyncio.start_server`'s client callback."""


def line_server(
    answer: Callable[[bytes], bytes | None],
    banner: bytes = b"220 picky.lab.example ESMTP\r\n",
) -> Serve:
    """A peer that greets, then answers each line with `answer(line)` (None: hang up)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        try:
            while line := await reader.readline():
                reply = answer(line)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        finally:
            writer.close()

    return serve


GUARD = 30.0  # a probe that has not returned by then is stuck: the test fails instead of hanging


def probe_settings(port: int, **overrides: Any) -> TesterSettings:
    """Tester settings for probing a fake peer on `port` of 127.0.0.1, with short timeouts."""
    values: dict[str, Any] = {
        "port": port,
        "testable_networks": ["127.0.0.0/8"],
        "connect_timeout": 2,
        "command_timeout": 2,
        "data_timeout": 2,
        "session_timeout": 20,
    }
    values.update(overrides)
    return TesterSettings(**values)


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def silent_server(
    greeting: Callable[[asyncio.StreamWriter], None] | None = None,
) -> asyncio.Server:
    """A server that accepts connections and then says nothing (a tarpit at the banner)."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if greeting is not None:
            greeting(writer)
        try:
            await reader.read()
        finally:
            writer.close()

    return await asyncio.start_server(hold, "127.0.0.1", 0)


def self_signed_certificate(directory: Path, name: str = "tls.lab.example") -> tuple[Path, Path]:
    """A throwaway self-signed certificate and its key (PEM files in `directory`), by openssl."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    key_type = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", *key_type, "-days", "2", "-subj", f"/CN={name}", *files],
        check=True,
        capture_output=True,
    )
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context for a fake that offers STARTTLS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
