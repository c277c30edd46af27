"""Shared pieces of the relay loop's tests: lab settings, and fake SMTP hosts on 127.0.0.x.

Every address of 127.0.0.0/8 reaches the loopback interface on Linux, so each fake host gets an
address of its own (all on the same port, the tester's `port`), like the hosts of a real lab.
`FakeHost` is an aiosmtpd server with a behaviour: `open` relays every message carrying a test
token to the collector (delivering from its own address, or from `output` for a multi-stage
relay), `accept` takes everything and delivers nothing (accept-then-bounce), `closed` refuses
relaying at RCPT, `slow` is an open relay that greets after a delay. Behind greylisting (450 to
a new (client, sender, recipient) triplet until `greylist_delay` seconds after it was first
seen, as postgrey does): `greylist` is an open relay, `greylist-closed` a closed one (554 once
the delay has passed), `greylist-forever` never lets a triplet through.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine

from dnsbl.config import Settings, load_settings
from dnsbl.relay.nominations import get_nomination
from dnsbl.relay.tester.tokens import find_token
from dnsbl.relay.worker import run_worker
from tests.conftest import zone_config
from tests.smtp_fakes import free_port


def lab_settings(database_url: str, **tester: Any) -> Settings:
    """Settings for a lab on 127.0.0.0/8: short timeouts, a short wait window, one zone."""
    values: dict[str, Any] = {
        "collector_domain": "relaytest.example",
        "collector_listen": f"127.0.0.1:{free_port()}",
        "port": free_port(),
        "testable_networks": ["127.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"],
        "connect_timeout": 2.0,
        "command_timeout": 2.0,
        "data_timeout": 2.0,
        "session_timeout": 20.0,
        "wait_window": 2.0,
        "lease_seconds": 10.0,
        "poll_interval": 0.05,
        "reverse_dns_timeout": 0,
        # a lab's hosts share 127.0.0.0/24: its tests are not the bulk these limits stop
        "nominations_per_network": 10_000,
    }
    values.update(tester)
    return load_settings(None, database_url=database_url, zones=[zone_config()], tester=values)


@dataclass
class Seen:
    """What a fake host received and relayed."""

    sessions: int = 0
    relayed: list[str] = field(default_factory=list)
    greylisted: list[tuple[str, str, str]] = field(default_factory=list)  # triplets held


class _Handler:
    def __init__(self, host: FakeHost) -> None:
        self.host = host

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        behaviour = self.host.behaviour
        if behaviour.startswith("greylist"):
            triplet = (str(session.peer[0]), envelope.mail_from or "", address)
            first = self.host.first_seen.setdefault(triplet, time.monotonic())
            if behaviour == "greylist-forever" or (
                time.monotonic() - first < self.host.greylist_delay
            ):
                self.host.seen.greylisted.append(triplet)
                return "450 4.2.0 Recipient address rejected: Greylisted, try again later"
        if behaviour in ("closed", "greylist-closed") and not address.lower().endswith(
            "@lab.example"
        ):
            return "554 5.7.1 Relay access denied"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.host.behaviour in ("open", "slow", "greylist"):
            tokens = [t for t in map(find_token, envelope.rcpt_tos) if t is not None]
            if tokens:
                await asyncio.to_thread(self.host.relay, tokens, envelope.original_content or b"")
        return "250 2.0.0 queued"


class _Smtp(SMTP):
    def __init__(self, handler: Any, host: FakeHost, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._host = host

    async def _handle_client(self) -> None:
        if self._host.behaviour == "slow":
            await asyncio.sleep(self._host.delay)
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, host: FakeHost, address: str, port: int) -> None:
        super().__init__(
            _Handler(host), hostname=address, port=port, server_hostname="fake.lab.example"
        )
        self._host = host

    def factory(self) -> SMTP:
        self._host.seen.sessions += 1
        return _Smtp(self.handler, self._host, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # The readiness probe would wait out a slow greeting; a connection is enough.
        if self._host.behaviour != "slow":
            super()._trigger_server()
            return
        socket.create_connection((self.hostname, self.port), timeout=1.0).close()


class FakeHost:
    """A fake mail server on `address`:`port` behaving as `behaviour` (see the module doc)."""

    def __init__(
        self,
        address: str,
        port: int,
        behaviour: str,
        collector: tuple[str, int],
        *,
        output: str | None = None,
        delay: float = 1.0,
        greylist_delay: float = 1.0,
    ) -> None:
        self.address = address
        self.behaviour = behaviour
        self.collector = collector
        self.output = output or address
        self.delay = delay
        self.greylist_delay = greylist_delay
        self.first_seen: dict[tuple[str, str, str], float] = {}
        self.seen = Seen()
        self._controller = _Controller(self, address, port)

    def relay(self, tokens: list[str], content: bytes) -> None:
        """Deliver to the collector as a relay would, from the relay's output address."""
        host, port = self.collector
        with smtplib.SMTP(host, port, timeout=5, source_address=(self.output, 0)) as client:
            client.sendmail(
                f"relay@{self.address}",
                [f"rt-{token}@relaytest.example" for token in tokens],
                content,
            )
        self.seen.relayed += tokens

    def start(self) -> FakeHost:
        self._controller.start()
        self.seen.sessions = 0
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> FakeHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(name="hosts")
def hosts_fixture(lab: Settings) -> Iterator[Callable[..., FakeHost]]:
    """Start fake hosts on the lab's port; all are stopped at the end."""
    started: list[FakeHost] = []
    collector = lab.tester.collector_endpoints[0]

    def start(address: str, behaviour: str, **kwargs: Any) -> FakeHost:
        fake = FakeHost(address, lab.tester.port, behaviour, collector, **kwargs).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture(name="worker")
async def worker_fixture(engine: Engine, lab: Settings) -> AsyncIterator[asyncio.Event]:
    """`run_worker` (collector + worker) running for the test; yields its stop event."""
    started, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_worker(lab, engine, started=started, stop=stop))
    await asyncio.wait_for(started.wait(), 10)
    yield stop
    stop.set()
    await asyncio.wait_for(task, 30)


async def settled(engine: Engine, nomination_ids: list[int], timeout: float = 60.0) -> None:
    """Wait until every nomination is done (or refused)."""
    async with asyncio.timeout(timeout):
        while True:
            views = [get_nomination(engine, n) for n in nomination_ids]
            if all(v is not None and v.status in ("done", "refused") for v in views):
                return
            await asyncio.sleep(0.1)
