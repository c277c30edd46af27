"""An SMTP sink's lifecycle: aiosmtpd servers on threads of their own, one per endpoint.

The relay-test collector and the spam traps are both sinks: they take mail for their own
addresses, never relay, and never bounce. What differs is their policy (aiosmtpd's handler);
what is the same lives here: a threaded controller per (host, port), able to listen on port 0,
a check that the endpoint can be bound before aiosmtpd's ready timeout would say so, and
start/stop that leave nothing running after a failed start.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Sequence
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from dnsbl.errors import DnsblError

log = logging.getLogger(__name__)


class SinkError(DnsblError):
    """An SMTP sink cannot run."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def peer_address(session: Session) -> str:
    """The connecting client's IP address."""
    return session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)


def take_recipient(envelope: Envelope, address: str, limit: int) -> str:
    """Add `address` to the envelope's recipients, up to `limit` of them: the RCPT reply."""
    if len(envelope.rcpt_tos) >= limit:
        return "452 4.5.3 Too many recipients"
    envelope.rcpt_tos.append(address)
    return "250 2.1.5 OK"


class _Controller(Controller):
    """aiosmtpd's threaded controller, able to listen on port 0 (a free port)."""

    def _trigger_server(self) -> None:
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def _check_bindable(name: str, host: str, port: int) -> None:
    """Raise `SinkError` unless (host, port) can be listened on."""
    family = _family(host)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # as asyncio's listener: `[::]` beside `0.0.0.0` on the same port
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise SinkError(
            f"the {name} cannot listen on {host} port {port}: {exc.strerror or exc}"
        ) from None


class SmtpSink:
    """`handler` served on every endpoint, as `name` (in logs and errors)."""

    def __init__(
        self,
        name: str,
        handler: Any,
        endpoints: Sequence[tuple[str, int]],
        *,
        max_message_size: int,
        server_hostname: str,
    ) -> None:
        self.name = name
        self._controllers = [
            _Controller(
                handler,
                hostname=host,
                port=port,
                data_size_limit=max_message_size,
                server_hostname=server_hostname,
                ident=f"dnsbl {name}",
            )
            for host, port in endpoints
        ]
        self._running: list[_Controller] = []

    def start(self) -> None:
        """Start listening (a thread per endpoint). Raises `SinkError` if it cannot."""
        try:
            for controller in self._controllers:
                _check_bindable(self.name, controller.hostname, controller.port)
                controller.start()
                self._running.append(controller)
                log.info("%s listening on %s port %s", self.name, *self._endpoint(controller))
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
        """Every (host, port) the sink listens on; the real ports once started on 0."""
        return [self._endpoint(controller) for controller in self._controllers]

    @property
    def endpoint(self) -> tuple[str, int]:
        """The first of `endpoints`."""
        return self.endpoints[0]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
