"""A raw SMTP client session over asyncio streams, recording a timestamped transcript.

The battery's addresses are deliberately malformed, so this client writes every command line
exactly as given and parses nothing but the replies (aiosmtplib would pass addresses through
`email.utils.parseaddr` and lose the quotes and source routes). Every read has a deadline: a
tarpit or a hostile peer costs at most one timeout per step, never a stalled worker.

STARTTLS (RFC 3207) upgrades the session without verifying the peer's certificate and with
every protocol version and cipher OpenSSL still speaks: the tester asks whether a host relays,
not whether its PKI is sound, and an open relay with an old TLS stack is still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dnsbl.errors import DnsblError

_MAX_LINE = 4096
_MAX_REPLY_LINES = 100
_REPLY_LINE = re.compile(r"^([2-5][0-9][0-9])([ -])(.*)$")


class SmtpError(DnsblError):
    """The SMTP session failed."""


class SmtpTimeout(SmtpError):
    """The SMTP peer did not answer in time."""


class SmtpDisconnected(SmtpError):
    """The SMTP peer closed the connection."""


class SmtpProtocolError(SmtpError):
    """The SMTP peer sent something that is not an SMTP reply."""


class SmtpTlsError(SmtpError):
    """The TLS handshake after STARTTLS failed (the connection is closed)."""


def _tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def offers_starttls(ehlo: Reply) -> bool:
    """Whether an EHLO reply lists the STARTTLS extension."""
    return any(line[4:].strip().upper() == "STARTTLS" for line in ehlo.lines[1:])


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: its code and its lines as received (without the line endings)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The reply as the peer wrote it, lines joined by newlines."""
        return "\n".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def closing(self) -> bool:
        """421: the peer announces it is closing the session."""
        return self.code == 421


@dataclass
class Transcript:
    """The verbatim exchange of one test, both directions, every session, with UTC timestamps.

    Lines are `<time> C: <line>` (we sent), `<time> S: <line>` (the peer sent) and
    `<time> *  <note>` (what happened on the connection: connect, close, timeout).
    """

    entries: list[str] = field(default_factory=list)

    def _add(self, marker: str, text: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.entries.append(f"{stamp} {marker} {text}")

    def sent(self, line: str) -> None:
        self._add("C:", line)

    def received(self, line: str) -> None:
        self._add("S:", line)

    def note(self, text: str) -> None:
        self._add("* ", text)

    def text(self) -> str:
        return "\n".join(self.entries) + ("\n" if self.entries else "")


def _decode(raw: bytes) -> str:
    return raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")


class SmtpSession:
    """One TCP connection to an SMTP server; `open` it, then send commands and read replies."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        transcript: Transcript,
        command_timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._transcript = transcript
        self._command_timeout = command_timeout
        self.closed = False
        sockname = writer.get_extra_info("sockname")
        self.local_address: str | None = sockname[0] if sockname else None
        self.tls_version: str | None = None
        self.tls_cipher: str | None = None

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        transcript: Transcript,
        *,
        connect_timeout: float,
        command_timeout: float,
        source_address: str | None = None,
    ) -> SmtpSession:
        """Connect to `host:port` (from `source_address` if given). Raises `SmtpError`."""
        local = (source_address, 0) if source_address else None
        transcript.note(
            f"connecting to {host} port {port}"
            + (f" from {source_address}" if source_address else "")
        )
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=local, limit=_MAX_LINE * 4),
                connect_timeout,
            )
        except TimeoutError:
            transcript.note(f"connect timed out after {connect_timeout:g} s")
            raise SmtpTimeout("timeout at connect") from None
        except ConnectionRefusedError:
            transcript.note("connection refused")
            raise SmtpDisconnected("connection refused") from None
        except OSError as exc:
            transcript.note(f"connect failed: {exc}")
            raise SmtpDisconnected(f"connect failed: {exc.strerror or exc}") from None
        peer = writer.get_extra_info("sockname")
        transcript.note(f"connected from {peer[0]} port {peer[1]}")
        return cls(reader, writer, transcript, command_timeout)

    async def _read_line(self) -> str:
        try:
            raw = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                self._transcript.received(_decode(exc.partial))
            self._transcript.note("connection closed by peer")
            self.closed = True
            raise SmtpDisconnected("connection closed by peer") from None
        except asyncio.LimitOverrunError:
            self._transcript.note("reply line too long")
            raise SmtpProtocolError("reply line too long") from None
        except OSError as exc:
            self._transcript.note(f"connection lost: {exc}")
            self.closed = True
            raise SmtpDisconnected(f"connection lost: {exc}") from None
        line = _decode(raw)
        self._transcript.received(line)
        return line

    async def _read_reply_lines(self) -> Reply:
        lines: list[str] = []
        while len(lines) < _MAX_REPLY_LINES:
            line = await self._read_line()
            match = _REPLY_LINE.match(line)
            if match is None:
                raise SmtpProtocolError(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line)
            if match.group(2) == " ":
                return Reply(int(match.group(1)), tuple(lines))
        raise SmtpProtocolError("reply has too many lines")

    async def read_reply(self, timeout: float | None = None, what: str = "reply") -> Reply:
        """Read one (possibly multi-line) reply within `timeout` (the command timeout)."""
        limit = self._command_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(self._read_reply_lines(), limit)
        except TimeoutError:
            self._transcript.note(f"no {what} within {limit:g} s")
            raise SmtpTimeout(f"timeout at {what}") from None

    async def _write(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self._command_timeout)
        except TimeoutError:
            self._transcript.note("peer stopped reading")
            raise SmtpTimeout("timeout while sending") from None
        except OSError as exc:
            self._transcript.note(f"connection lost: {exc}")
            self.closed = True
            raise SmtpDisconnected(f"connection lost: {exc}") from None

    async def command(self, line: str, timeout: float | None = None) -> Reply:
        """Send `line` verbatim (plus CRLF) and read the reply."""
        if "\r" in line or "\n" in line:
            raise SmtpProtocolError("a command line cannot contain a line break")
        self._transcript.sent(line)
        await self._write(line.encode("utf-8") + b"\r\n")
        return await self.read_reply(timeout, what=f"reply to {line.split(':')[0].split()[0]}")

    async def starttls(self) -> Reply:
        """Say STARTTLS and, on its 220, make the TLS handshake; returns the reply.

        Any other reply leaves the session in clear text. A failed handshake closes the
        connection and raises `SmtpTlsError`. After success the client must say EHLO again.
        """
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            return reply
        try:
            await asyncio.wait_for(self._writer.start_tls(_tls_context()), self._command_timeout)
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else f"failed: {exc}"
            self._transcript.note(f"TLS handshake {what}")
            self.abort()
            raise SmtpTlsError(f"TLS handshake {what}") from None
        tls = self._writer.get_extra_info("ssl_object")
        assert isinstance(tls, ssl.SSLObject)
        cipher, _protocol, bits = tls.cipher() or (None, None, None)
        self.tls_version, self.tls_cipher = tls.version(), cipher
        self._transcript.note(
            f"TLS established: {self.tls_version}, cipher {cipher} ({bits} bits); "
            "certificate not verified"
        )
        return reply

    async def send_message(self, message: str, data_timeout: float) -> Reply:
        """Send `message` as the DATA content (dot-stuffed, CRLF, final dot) and read the reply.

        Call after DATA got its 354. The reply may take up to `data_timeout`.
        """
        lines = message.replace("\r\n", "\n").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for line in lines:
            self._transcript.sent(line)
        self._transcript.sent(".")
        body = "".join(("." + line if line.startswith(".") else line) + "\r\n" for line in lines)
        await self._write(body.encode("utf-8") + b".\r\n")
        return await self.read_reply(data_timeout, what="reply to the message")

    def abort(self) -> None:
        """Close the connection at once, without QUIT (the peer is stuck or misbehaving)."""
        self.closed = True
        if self._writer.is_closing():
            return
        self._writer.transport.abort()
        self._transcript.note("connection aborted")

    async def close(self, quit_timeout: float = 5.0) -> None:
        """Say QUIT (briefly, ignoring failures) and close the connection."""
        quit_timeout = min(quit_timeout, self._command_timeout)
        if self._writer.is_closing():
            return
        if not self.closed:
            with contextlib.suppress(SmtpError):
                await self.command("QUIT", timeout=quit_timeout)
        self.closed = True
        self._writer.close()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self._writer.wait_closed(), quit_timeout)
        self._transcript.note("connection closed")
