"""The collector: an SMTP sink for the collector domain that records the test messages arriving.

A relay test proves a host open only when its message arrives here. The collector accepts mail
for the collector domain alone (anything else gets 550: it never relays), takes the token from
the recipient's local part (`rt-<token>`), and reports one `Arrival` per message with the IP
that delivered it, which is the relay's output (the tested host, or a later stage of a
multi-stage relay). Mail to the domain without a token (bounces to the test sender) is accepted
and dropped: a bounce proves nothing.

Protocol and lifecycle are aiosmtpd's: `start()` runs a server on a thread of its own for
each endpoint of `tester.collector_listen` (one per address family, say), `stop()` ends them;
`on_arrival` is called on those threads. When it returns a future (the arrival recorder does:
done once the arrival is in the database), the collector answers only when that is done, so a
250 means the evidence is kept. A failing callback, a failed write or one slower than
`RECORD_TIMEOUT` answers 451: the sending relay keeps the message and tries again. A bad
session never takes the server down.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from dnsbl.config import TesterSettings
from dnsbl.errors import DnsblError
from dnsbl.logs import log_context
from dnsbl.relay.states import MessageOutcome
from dnsbl.relay.tester.message import TOKEN_HEADER
from dnsbl.relay.tester.tokens import find_token

log = logging.getLogger(__name__)

_MAX_RECIPIENTS = 10
RECORD_TIMEOUT = 30.0  # seconds to wait for an arrival's write before answering 451

OnArrival = Callable[["Arrival"], "Future[None] | None"]


class CollectorError(DnsblError):
    """The collector cannot run."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


@dataclass(frozen=True)
class Arrival:
    """A test message that reached the collector: its token and who delivered it."""

    token: str
    delivered_by: str
    mail_from: str
    rcpt_tos: list[str]
    received_at: datetime
    headers: str


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


class _Handler:
    """The collector's policy: which recipients to take, and what an arriving message means."""

    def __init__(
        self, domain: str, on_arrival: OnArrival, outcomes: collections.Counter[MessageOutcome]
    ) -> None:
        self.domain = domain
        self.on_arrival = on_arrival
        self.outcomes = outcomes

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if _domain_of(address) != self.domain:
            return "550 5.7.1 Relaying denied: this host accepts mail for its own domain only"
        if len(envelope.rcpt_tos) >= _MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        with log_context(peer=peer):
            outcome, reply = await self._arrived(peer, envelope)
        self.outcomes[outcome] += 1
        return reply

    async def _arrived(self, peer: str, envelope: Envelope) -> tuple[MessageOutcome, str]:
        token = next((t for t in map(find_token, envelope.rcpt_tos) if t is not None), None)
        if token is None:
            log.info("collector: message from %s without a test token dropped", peer)
            return MessageOutcome.NO_TOKEN, "250 2.0.0 OK (no test token; dropped)"
        content = envelope.original_content or b""
        headers = BytesHeaderParser(policy=compat32).parsebytes(content)
        header_token = headers.get(TOKEN_HEADER)
        if header_token is not None and header_token.strip().lower() != token:
            log.info("collector: %s sent token %s with header token %s", peer, token, header_token)
        head = content.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        arrival = Arrival(
            token=token,
            delivered_by=peer,
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            received_at=datetime.now(UTC),
            headers=head.decode("utf-8", errors="replace").replace("\r\n", "\n"),
        )
        try:
            written = self.on_arrival(arrival)
            if written is not None:
                # shielded: giving up on the wait must not cancel the write itself
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(written)), RECORD_TIMEOUT)
        except Exception:
            log.exception("collector: recording token %s from %s failed", token, peer)
            return MessageOutcome.FAILED, "451 4.3.0 Could not record the message; try again later"
        log.info("collector: token %s delivered by %s", token, peer)
        return MessageOutcome.RECORDED, "250 2.0.0 OK: test message recorded"


class _Controller(Controller):
    """aiosmtpd's threaded controller, able to listen on port 0 (a free port)."""

    def _trigger_server(self) -> None:
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def _check_bindable(host: str, port: int) -> None:
    """Raise `CollectorError` unless (host, port) can be listened on (aiosmtpd would say so
    only after its ready timeout)."""
    family = _family(host)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # as asyncio's listener: `[::]` beside `0.0.0.0` on the same port
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise CollectorError(
            f"the collector cannot listen on {host} port {port}: {exc.strerror or exc}"
        ) from None


class Collector:
    """The SMTP sink for `settings.collector_domain`, on every `settings.collector_listen`."""

    def __init__(
        self,
        settings: TesterSettings,
        on_arrival: OnArrival,
        outcomes: collections.Counter[MessageOutcome] | None = None,
    ) -> None:
        self.outcomes = outcomes if outcomes is not None else collections.Counter()
        self._handler = _Handler(settings.collector_domain, on_arrival, self.outcomes)
        self._controllers = [
            _Controller(
                self._handler,
                hostname=host,
                port=port,
                data_size_limit=settings.max_message_size,
                server_hostname=settings.collector_domain,
                ident="dnsbl relay-test collector",
            )
            for host, port in settings.collector_endpoints
        ]
        self._running: list[_Controller] = []

    def start(self) -> None:
        """Start listening (a thread per endpoint). Raises `CollectorError` if it cannot."""
        try:
            for controller in self._controllers:
                _check_bindable(controller.hostname, controller.port)
                controller.start()
                self._running.append(controller)
                log.info("collector listening on %s port %s", *self._endpoint(controller))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop listening and end the threads."""
        while self._running:
            self._running.pop().stop()

    @staticmethod
    def _endpoint(controller: _Controller) -> tuple[str, int]:
        return controller.hostname, controller.port

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        """Every (host, port) the collector listens on; the real ports once started on 0."""
        return [self._endpoint(controller) for controller in self._controllers]

    @property
    def endpoint(self) -> tuple[str, int]:
        """The first of `endpoints`."""
        return self.endpoints[0]

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
