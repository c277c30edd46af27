"""The collector: an SMTP sink for the collector domain that records the test messages arriving.

A relay test proves a host open only when its message arrives here. The collector accepts mail
for the collector domain alone (anything else gets 550: it never relays), takes the token from
the recipient's local part (`rt-<token>`), and reports one `Arrival` per message with the IP
that delivered it, which is the relay's output (the tested host, or a later stage of a
multi-stage relay). Mail to the domain without a token (bounces to the test sender) is accepted
and dropped: a bounce proves nothing.

Protocol and lifecycle are aiosmtpd's, run by `dnsbl.smtp.sink` (shared with the spam traps):
`start()` runs a server on a thread of its own for each endpoint of `tester.collector_listen`
(one per address family, say), `stop()` ends them;
`on_arrival` is called on those threads. When it returns a future (the arrival recorder does:
done once the arrival is in the database), the collector answers only when that is done, so a
250 means the evidence is kept. A failing callback, a failed write or one slower than
`RECORD_TIMEOUT` answers 451: the sending relay keeps the message and tries again. A bad
session never takes the server down.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from aiosmtpd.smtp import SMTP, Envelope, Session

from dnsbl.config import TesterSettings
from dnsbl.logs import log_context
from dnsbl.relay.states import MessageOutcome
from dnsbl.relay.tester.message import TOKEN_HEADER
from dnsbl.relay.tester.tokens import find_token
from dnsbl.smtp.sink import SinkError, SmtpSink, peer_address, take_recipient

log = logging.getLogger(__name__)

_MAX_RECIPIENTS = 10
RECORD_TIMEOUT = 30.0  # seconds to wait for an arrival's write before answering 451

OnArrival = Callable[["Arrival"], "Future[None] | None"]


CollectorError = SinkError  # the collector cannot run


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
        return take_recipient(envelope, address, _MAX_RECIPIENTS)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = peer_address(session)
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


class Collector(SmtpSink):
    """The SMTP sink for `settings.collector_domain`, on every `settings.collector_listen`."""

    def __init__(
        self,
        settings: TesterSettings,
        on_arrival: OnArrival,
        outcomes: collections.Counter[MessageOutcome] | None = None,
    ) -> None:
        self.outcomes = outcomes if outcomes is not None else collections.Counter()
        self._handler = _Handler(settings.collector_domain, on_arrival, self.outcomes)
        super().__init__(
            "collector",
            self._handler,
            settings.collector_endpoints,
            max_message_size=settings.max_message_size,
            server_hostname=settings.collector_domain,
        )
