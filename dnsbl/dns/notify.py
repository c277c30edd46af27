"""NOTIFY (RFC 1996): telling the secondaries that a zone has a new serial.

Best effort over UDP: each target gets the NOTIFY a few times until it answers with the same
id; a zone that changes again while its notifications are in flight is notified once more
with the newest serial afterwards, so a busy zone never queues a NOTIFY per change.
"""

from __future__ import annotations

import asyncio
import logging
import random

import dns.tsig

from dnsbl.config import parse_endpoint
from dnsbl.dns.transfer import notify_message
from dnsbl.dns.tsig import sign
from dnsbl.dns.zones import PublishedZone

log = logging.getLogger(__name__)


class _Reply(asyncio.DatagramProtocol):
    """Waits for the response that carries `message_id`."""

    def __init__(self, message_id: int) -> None:
        self.message_id = message_id
        self.answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        mine = len(data) >= 4 and int.from_bytes(data[:2], "big") == self.message_id
        if mine and data[2] & 0x80 and not self.answered.done():
            self.answered.set_result(True)

    def error_received(self, exc: Exception) -> None:
        log.debug("NOTIFY socket error: %s", exc)


class Notifier:
    """Sends NOTIFY for changed zones to every configured target (`host:port`)."""

    def __init__(
        self,
        targets: list[str],
        *,
        key: dns.tsig.Key | None = None,
        attempts: int = 3,
        timeout: float = 1.0,
    ) -> None:
        self.targets = [parse_endpoint(target, 53) for target in targets]
        self.key = key  # NOTIFY is signed with it (secondaries may accept signed ones only)
        self.attempts = attempts
        self.timeout = timeout
        self._latest: dict[str, PublishedZone] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def zone_changed(self, zone: PublishedZone) -> None:
        """Schedule a NOTIFY of `zone`'s current serial (call in the event loop's thread)."""
        if not self.targets:
            return
        self._latest[zone.name] = zone
        if zone.name not in self._tasks:
            self._tasks[zone.name] = asyncio.create_task(self._run(zone.name))

    async def _run(self, name: str) -> None:
        try:
            while name in self._latest:
                zone = self._latest.pop(name)
                await asyncio.gather(*(self._notify(zone, target) for target in self.targets))
        finally:
            self._tasks.pop(name, None)

    async def _notify(self, zone: PublishedZone, target: tuple[str, int]) -> bool:
        loop = asyncio.get_running_loop()
        for _attempt in range(self.attempts):
            message_id = random.randrange(65536)
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda message_id=message_id: _Reply(message_id),  # type: ignore[misc]
                    remote_addr=target,
                )
            except OSError as exc:
                log.warning("NOTIFY %s to %s:%d failed: %s", zone.name, *target, exc)
                return False
            try:
                message = notify_message(zone, message_id)
                if self.key is not None:
                    message, _ = sign(message, self.key)
                transport.sendto(message)
                await asyncio.wait_for(protocol.answered, self.timeout)
            except TimeoutError:
                continue
            finally:
                transport.close()
            log.info("NOTIFY %s serial %d acknowledged by %s:%d", zone.name, zone.serial, *target)
            return True
        log.warning(
            "NOTIFY %s serial %d to %s:%d: no answer after %d tries",
            zone.name,
            zone.serial,
            *target,
            self.attempts,
        )
        return False

    async def close(self) -> None:
        """Stop sending (pending notifications are dropped)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._latest.clear()
