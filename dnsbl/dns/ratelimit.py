"""Response rate limiting over UDP, as BIND's RRL: one client network's identical answers
beyond `responses_per_second` are dropped, every `slip`-th of them sent truncated instead.

UDP sources can be forged, so a flood of queries "from" a victim turns an authoritative
server into an amplifier aimed at it. RRL counts the answers each client network (/24 for
IPv4, /56 for IPv6) gets, per answer class: a positive answer by its name and type, an
NXDOMAIN or empty answer by its zone (so random names under a zone count together), an error
by its rcode. Each class has a token bucket holding at most one second's worth of answers and
going down to `-window` seconds' worth: a network that floods gets nothing more until it has
been quiet for up to `window` seconds, and other networks are not touched. A slipped answer
(TC=1, no records) costs the victim little and sends a real client to TCP, which cannot be
forged and is never limited. Networks in `exempt`, and queries with a valid server cookie
(`dnsbl.dns.cookies`: the source is proven), are never limited; `log_only` counts and logs
what would be held back but sends everything.

`RateLimiter.check` is a function of (source, answer, zone, whether the source is proven) and
the clock: any engine can call it once it has the answer's bytes. This module is the one
definition of the rules; the native engine's buckets (`dnsbl/dns/_native_rrl.c`, used through
`dnsbl.dns.native.NativeRateLimiter` by both of its paths) follow it step for step, and
tests/dns/test_native_rrl.py checks that both decide every sequence alike.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import time

from dnsbl.config import RateLimitSettings
from dnsbl.dns.access import source_address

log = logging.getLogger(__name__)

TABLE_LIMIT = 200_000  # buckets kept; beyond, the stale ones are swept, then all if need be
_SWEEP_EVERY = 5.0  # seconds between sweeps of the buckets not used for a window


class Action(enum.IntEnum):
    """What to do with one answer."""

    SEND = 0
    SLIP = 1  # send it truncated (TC=1) instead
    DROP = 2


class _Bucket:
    __slots__ = ("balance", "limited", "slips", "stamp")

    def __init__(self, balance: float, stamp: float) -> None:
        self.balance = balance
        self.stamp = stamp
        self.slips = 0
        self.limited = False  # whether the last answer was held back (to log each episode once)


def answer_class(answer: bytes, zone: str) -> tuple[object, ...]:
    """What makes two answers "identical" to RRL: (rcode, type, name) of a positive answer,
    (rcode, zone) of an NXDOMAIN or empty one, (rcode,) of an error."""
    rcode = answer[3] & 0x0F if len(answer) >= 12 else 2
    if rcode not in (0, 3):
        return (rcode,)
    if rcode == 0 and answer[6:8] != b"\x00\x00":
        end = 12
        while end < len(answer) and answer[end]:
            end += answer[end] + 1
        return rcode, answer[end + 1 : end + 3], answer[12:end].lower()
    return rcode, zone


def truncated(answer: bytes) -> bytes:
    """`answer` cut to its header and question, with TC set: the client retries over TCP."""
    end = 12
    while end < len(answer) and answer[end]:
        end += answer[end] + 1
    questions = answer[4:6] if end + 5 <= len(answer) else b"\x00\x00"
    question = answer[12 : end + 5] if questions != b"\x00\x00" else b""
    flags = bytes((answer[2] | 0x02, answer[3]))
    return answer[:2] + flags + questions + b"\x00" * 6 + question


class RateLimiter:
    """The token buckets of every (client network, answer class) seen within a window."""

    def __init__(
        self, settings: RateLimitSettings, *, limit: int = TABLE_LIMIT, now: float | None = None
    ) -> None:
        self.rate = float(settings.responses_per_second)
        self.window = settings.window
        self.slip = settings.slip
        self.log_only = settings.log_only
        self.exempt = [ipaddress.ip_network(text, strict=False) for text in settings.exempt]
        self._limit = limit  # buckets held at most
        self._buckets: dict[tuple[object, ...], _Bucket] = {}
        self._networks: dict[str, bytes | None] = {}  # source -> its network (None: exempt)
        self._swept = time.monotonic() if now is None else now

    def network(self, peer: str) -> bytes | None:
        """The client network of `peer` (/24 or /56, packed), or None when it is exempt."""
        found = self._networks.get(peer, b"")
        if found != b"":
            return found
        address = source_address(peer)
        if address is None or any(
            address.version == net.version and address in net for net in self.exempt
        ):
            network = None
        else:
            network = client_network(address.packed)
        if len(self._networks) >= TABLE_LIMIT:
            self._networks.clear()
        self._networks[peer] = network
        return network

    def check(
        self, peer: str, answer: bytes, zone: str, proven: bool = False, now: float | None = None
    ) -> Action:
        """Whether to send, slip or drop `answer` (to a query for `zone`) to `peer`.
        `proven`: the query carried a valid server cookie."""
        if proven:
            return Action.SEND
        network = self.network(peer)
        if network is None:
            return Action.SEND
        now = time.monotonic() if now is None else now
        if now - self._swept > _SWEEP_EVERY:
            self._sweep(now)
        key = (network, *answer_class(answer, zone))
        bucket = self._buckets.get(key)
        rate = self.rate
        if bucket is None:
            if len(self._buckets) >= self._limit:
                self._sweep(now)  # never more than `limit` buckets
            bucket = self._buckets[key] = _Bucket(rate, now)
        elif now > bucket.stamp:
            # Credit what the time since earned, up to one second's worth.
            bucket.balance = min(rate, bucket.balance + (now - bucket.stamp) * rate)
            bucket.stamp = now
        bucket.balance -= 1
        if bucket.balance >= 0:
            bucket.limited = False
            return Action.SEND
        bucket.balance = max(bucket.balance, -self.window * rate)
        if not bucket.limited:
            bucket.limited = True
            log_limiting(peer, self.log_only)
        action = Action.DROP
        if self.slip:
            bucket.slips += 1
            if bucket.slips >= self.slip:
                bucket.slips = 0
                action = Action.SLIP
        return action  # with log_only, the caller counts it but sends the answer

    def _sweep(self, now: float) -> None:
        self._swept = now
        if len(self._buckets) < self._limit // 2:
            return
        stale = now - self.window
        self._buckets = {k: b for k, b in self._buckets.items() if b.stamp >= stale}
        if len(self._buckets) >= self._limit:
            log_fresh_start(len(self._buckets))
            self._buckets.clear()


def client_network(packed: bytes) -> bytes:
    """The client network (/24 or /56) of a packed address, packed: what a bucket is per."""
    return packed[:3] if len(packed) == 4 else packed[:7]


def log_limiting(peer: str, log_only: bool) -> None:
    """Log that answers to `peer`'s network start being held back (once per episode)."""
    address = source_address(peer)
    network = _network_text(client_network(address.packed)) if address is not None else peer
    log.info(
        "rate limiting answers to %s (network of %s)%s",
        network,
        peer,
        " (log only)" if log_only else "",
        extra={"peer": peer},
    )


def log_fresh_start(buckets: int) -> None:
    """Log that the table, full of buckets still in their window, starts afresh."""
    log.warning("rate limiting: %d client buckets, starting afresh", buckets)


def _network_text(network: bytes) -> str:
    if len(network) == 3:
        return f"{ipaddress.IPv4Address(network + bytes(1))}/24"
    return f"{ipaddress.IPv6Address(network + bytes(9))}/56"
