"""The trap: an SMTP sink that takes mail for trap addresses only, and lists who sent it.

Policy (lifecycle is `dnsbl.smtp.sink`'s, as the collector's):
- RCPT to anything that is not a trap is refused (550): the sink is never a relay, nor a
  general drop.
- A client sending more than `traps.hits_per_source_per_hour` messages is answered 451 at MAIL
  (a temporary refusal in the session: nothing bounces). When the client is one of our
  trusted relays the source is only known after DATA; its excess messages are accepted and
  dropped, since a 4xx would make our own MX queue them, and in the end bounce them.
- Messages over `traps.max_message_size` are refused by aiosmtpd (552) in the session.
- A hit is answered 250 only once its source is listed and the evidence is written; a failed
  write answers 451 so that the sender tries again. The sink never sends a bounce.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from dnsbl.config import TrapsSettings
from dnsbl.logs import log_context
from dnsbl.smtp.sink import SmtpSink, peer_address, take_recipient
from dnsbl.traps.intake import Delivery, NoSourceError, Taken
from dnsbl.traps.metrics import TrapStats
from dnsbl.traps.received import source_of, trusted_networks

log = logging.getLogger(__name__)

_MAX_RECIPIENTS = 100
_HOUR = 3600.0
RECORD_TIMEOUT = 30.0

OnHit = Callable[[Delivery], Taken]


class SourceRate:
    """How many messages each source sent in the last hour (a sliding window, in memory)."""

    def __init__(self, limit: int, window: float = _HOUR) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, collections.deque[float]] = {}

    def allow(self, source: str, now: float | None = None) -> bool:
        """Count one message from `source`; False when that is over the limit."""
        now = time.monotonic() if now is None else now
        seen = self._seen.setdefault(source, collections.deque())
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        if len(self._seen) > 100_000:  # many sources: forget the idle ones
            self._seen = {key: value for key, value in self._seen.items() if value}
        return True


class _Handler:
    """Which recipients are traps, and what a message to one does."""

    def __init__(self, traps: TrapsSettings, on_hit: OnHit, stats: TrapStats) -> None:
        self.domains = set(traps.domains)
        self.addresses = set(traps.addresses)
        self.trusted = trusted_networks(traps.trusted_relays)
        self.rate = SourceRate(traps.hits_per_source_per_hour)
        self.on_hit = on_hit
        self.stats = stats

    def is_trap(self, address: str) -> bool:
        address = address.strip().strip("<>").lower()
        return address in self.addresses or address.rpartition("@")[2].rstrip(".") in self.domains

    def _from_trusted(self, peer: str) -> bool:
        return source_of([], self.trusted, peer) is None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        peer = peer_address(session)
        if not self._from_trusted(peer) and not self.rate.allow(peer):
            self.stats.messages["rate-limited"] += 1
            return "451 4.7.1 Too many messages from your address; try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not self.is_trap(address):
            return "550 5.1.1 No such user here"
        return take_recipient(envelope, address, _MAX_RECIPIENTS)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = peer_address(session)
        delivery = Delivery(
            peer=peer,
            helo=session.host_name,
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            content=envelope.original_content or b"",
        )
        with log_context(peer=peer):
            outcome, reply = await self._take(delivery)
        self.stats.messages[outcome] += 1
        if outcome == "recorded":
            for address in delivery.rcpt_tos:
                self.stats.hits[address.rpartition("@")[2].lower()] += 1
        return reply

    async def _take(self, delivery: Delivery) -> tuple[str, str]:
        if self._from_trusted(delivery.peer) and not self.rate.allow(f"via {delivery.peer}"):
            return "rate-limited", "250 2.0.0 OK"  # our own MX: never make it bounce
        try:
            taken = await asyncio.wait_for(asyncio.to_thread(self.on_hit, delivery), RECORD_TIMEOUT)
        except NoSourceError as exc:
            log.info("trap: %s", exc)
            return "no-source", "250 2.0.0 OK"
        except Exception:
            log.exception("trap: recording a hit from %s failed", delivery.peer)
            return "failed", "451 4.3.0 Could not take the message; try again later"
        log.info("trap: hit from %s (source %s)", delivery.peer, taken.address)
        return "recorded", "250 2.0.0 OK"


class TrapSink(SmtpSink):
    """The SMTP sink of `traps`, calling `on_hit` (on a thread) for each message to a trap."""

    def __init__(self, traps: TrapsSettings, on_hit: OnHit, stats: TrapStats | None = None):
        self.stats = stats or TrapStats()
        self.handler = _Handler(traps, on_hit, self.stats)
        super().__init__(
            "spam trap",
            self.handler,
            traps.endpoints,
            max_message_size=traps.max_message_size,
            server_hostname=(traps.domains or ["localhost"])[0],
        )
