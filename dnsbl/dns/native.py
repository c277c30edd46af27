"""The native UDP engine's Python side: which engine answers, and what the C loop may answer.

`dnsbl.dns._native` (a C extension, built by `pip install` where a compiler exists) owns a UDP
listener's loop, on a thread of its own (`NativeLoop`): it receives a batch with `recvmmsg`,
answers the common query exactly as `dnsbl.dns.wire.answer_fast` does, sends the batch with
`sendmmsg`, and hands every other datagram back unchanged to the event loop for the Python
path. It waits and does its socket calls without the GIL and takes it once a batch. It reads
the index's own arrays; this module describes each published zone to it
(`zone_description`) and decides, in one place (`native_may_answer`), which zones it may
answer at all.

Access and rate limiting are decided in C as the Python path decides them: a zone with an
allow list is answered natively to the sources inside it (counted as allowed), anyone else's
query (and any name under a key label) goes to Python, which refuses or answers with a code;
response rate limiting runs on the C buckets of `NativeRateLimiter` (the rules of
`dnsbl.dns.ratelimit`), which the Python path uses too for what the engine hands it, so one
server has one set of buckets. Queries with a cookie never reach the C answerer (it takes
only a bare OPT), so "a valid cookie is never limited" stays in Python.
"""

from __future__ import annotations

import importlib
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from dnsbl.config import DnsSettings, RateLimitSettings
from dnsbl.dns.access import Verdict, source_address
from dnsbl.dns.codes import FAST_QTYPES
from dnsbl.dns.ratelimit import TABLE_LIMIT, Action, log_fresh_start, log_limiting
from dnsbl.dns.timing import LATENCY_BOUNDS
from dnsbl.dns.zones import PublishedZone, ZoneTable
from dnsbl.errors import ConfigError

log = logging.getLogger(__name__)

_native: ModuleType | None
try:
    _native = importlib.import_module("dnsbl.dns._native")
except ImportError:  # built without a C compiler: the Python engine answers
    _native = None

NATIVE = "native"
PYTHON = "python"


def native_available() -> bool:
    """Whether the C extension was built and imports."""
    return _native is not None


def engine_name(setting: str) -> str:
    """The engine that answers for `dns.engine = setting` ("auto", "native" or "python")."""
    if setting == PYTHON:
        return PYTHON
    if native_available():
        return NATIVE
    if setting == NATIVE:
        raise ConfigError(
            "dns.engine is 'native' but the native engine was not built "
            "(reinstall dnsbl where a C compiler and the Python headers exist)"
        )
    log.warning("the native DNS engine was not built: answering with the Python engine")
    return PYTHON


def native_may_answer(zone: PublishedZone, table: ZoneTable) -> bool:
    """Whether the native loop may answer `zone`'s queries; if not, it hands them all to the
    Python path. It answers every loaded zone but one with a zone below it named like an
    address prefix, which needs the longest-suffix search of the Python path (as the Python
    hot path does, `ZoneTable.parents`). Its allow list and rate limiting are checked in C
    (`zone_description`, `NativeRateLimiter`); what the loop cannot decide (a source outside
    the allow list, a key name, a cookie) it hands over query by query."""
    return zone.index is not None and zone.wire not in table.parents


def network_list(texts: list[str]) -> tuple[tuple[int, bytes, int], ...]:
    """Networks as the C engine reads them: (version, packed network address, prefix)."""
    networks = (ipaddress.ip_network(text, strict=False) for text in texts)
    return tuple((n.version, n.network_address.packed, n.prefixlen) for n in networks)


class NativeRateLimiter:
    """Response rate limiting on the C engine's buckets, for the Python path's answers: the
    interface of `dnsbl.dns.ratelimit.RateLimiter` (`check`, `log_only`)."""

    def __init__(
        self, settings: RateLimitSettings, *, limit: int = TABLE_LIMIT, now: float | None = None
    ) -> None:
        assert _native is not None
        self.log_only = settings.log_only
        self.buckets: Any = _native.RateLimiter(
            float(settings.responses_per_second),
            float(settings.window),
            settings.slip,
            settings.log_only,
            network_list(settings.exempt),
            limit,
            time.monotonic() if now is None else now,
        )

    def check(
        self, peer: str, answer: bytes, zone: str, proven: bool = False, now: float | None = None
    ) -> Action:
        """As `RateLimiter.check`: whether to send, slip or drop `answer` to `peer`."""
        address = source_address(peer)
        if proven or address is None:
            return Action.SEND
        now = time.monotonic() if now is None else now
        action, starts = self.buckets.check(address.packed, answer, zone, now)
        if starts:
            log_limiting(peer, self.log_only)
        self.log_fresh_start()
        return Action(action)

    def log_fresh_start(self) -> None:
        """Log a fresh start of the buckets (`RateLimiter._sweep`'s warning) once."""
        cleared = self.buckets.take_cleared()
        if cleared:
            log_fresh_start(cleared)


Handed = list[tuple[bytes, Any]]  # datagrams for the Python path, with their peers


class NativeEngine:
    """The C engine of one DNS server, fed a description of every published zone."""

    def __init__(
        self, table: ZoneTable, settings: DnsSettings, limiter: NativeRateLimiter | None = None
    ) -> None:
        assert _native is not None
        self.settings = settings
        self.table = table
        self.limiter = limiter
        self.engine: Any = _native.Engine(settings.max_udp_payload, LATENCY_BOUNDS)
        self.engine.set_limiter(limiter.buckets if limiter is not None else None)
        self.handed = 0  # datagrams handed to the Python path since start (for the tests)
        self._descriptions: dict[bytes, tuple[Any, ...]] = {}
        for zone in table:
            self._descriptions[zone.wire] = zone_description(zone, table)
        self.engine.set_zones(list(self._descriptions.values()))

    def publish(self, zone: PublishedZone) -> None:
        """Answer `zone` as now published from the next batch on."""
        self._descriptions[zone.wire] = zone_description(zone, self.table)
        self.engine.set_zones(list(self._descriptions.values()))

    def took_over(self, handed: Handed, episodes: list[Any]) -> None:
        """Note what a loop handed over: count the datagrams, log the networks whose rate
        limiting starts and a fresh start of the buckets (on the event loop)."""
        for peer in episodes:
            log_limiting(peer[0], self.settings.rate_limit.log_only)
        if self.limiter is not None:
            self.limiter.log_fresh_start()
        self.handed += len(handed)

    def latency(self) -> tuple[list[int], float]:
        """The natively answered queries' latency histogram (`dnsbl.dns.timing`)."""
        buckets, seconds = self.engine.latency()
        return buckets, seconds

    def answer(self, packet: bytes) -> bytes | None:
        """The native answer to `packet` without a socket, or None (for the tests)."""
        reply: bytes | None = self.engine.answer(packet)
        return reply


class NativeLoop:
    """The native engine answering one UDP socket on a thread of its own until `stop`.

    `handoff(handed, episodes)` is called on that thread, with the GIL, for each batch with
    anything for Python; it must only pass them on (to the event loop).
    """

    def __init__(
        self,
        native: NativeEngine,
        sock: Any,
        counts: dict[Any, int],
        verdicts: dict[Any, int],
        handoff: Callable[[Handed, list[Any]], None],
    ) -> None:
        self._wake = os.eventfd(0, os.EFD_CLOEXEC)
        fd = sock.fileno()
        arguments = (fd, self._wake, counts, verdicts, handoff)
        self._thread = threading.Thread(
            target=self._run, args=(native, arguments), name=f"dns-udp-{fd}", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _run(native: NativeEngine, arguments: tuple[Any, ...]) -> None:
        try:
            native.engine.run(*arguments)
        except OSError as exc:  # the socket is gone: nothing more to answer on it
            log.error("the native UDP loop stopped: %s", exc)

    def stop(self) -> None:
        """Stop answering (the loop ends within a batch) and wait for the thread."""
        os.eventfd_write(self._wake, 1)
        self._thread.join()
        os.close(self._wake)


def zone_description(zone: PublishedZone, table: ZoneTable) -> tuple[Any, ...]:
    """`zone` as the C engine reads it: its apex, whether it may answer it, its SOA record,
    TTL and count keys, its index's tables (the index's own arrays) and each value's records;
    then its name (the RRL class of its empty answers), whether it is guarded, its allow
    list and its access count keys (allowed, rate-limited, slipped).
    """
    index = zone.index
    keys = tuple(zone.keys_by_qtype[int(qtype)] for qtype in FAST_QTYPES)
    native = native_may_answer(zone, table)
    access = (
        zone.name,
        zone.guarded,
        network_list(zone.settings.access.allow) if zone.guarded else (),
        tuple((zone.name, v) for v in (Verdict.ALLOWED, Verdict.RATE_LIMITED, Verdict.SLIPPED)),
    )
    if index is None or not native:
        return (zone.wire, False, zone.soa_tail, zone.ttl, keys, (), (), (), *access)
    tables = tuple(
        tuple(
            (
                tuple(
                    (length, level.starts, level.values)
                    if (level := t.levels.get(length)) is not None
                    else (length, None, None)
                    for length in t.lengths
                ),
                t.delta if isinstance(t.delta, dict) else dict(t.delta),
            )
            for t in index.by_family[family]
        )
        for family in (4, 6)
    )
    values: list[tuple[bytes, bytes | None, bytes | None] | None] = []
    for value in index.values:
        if value is None:
            values.append(None)
        elif value.txt is None:
            values.append((zone.a_record(value.code), None, None))
        elif "$" in value.txt:
            values.append((zone.a_record(value.code), None, value.txt.encode()))
        else:
            values.append((zone.a_record(value.code), zone.txt_record(value.txt, 4, 0), None))
    return (
        zone.wire,
        True,
        zone.soa_tail,
        zone.ttl,
        keys,
        tables[0],
        tables[1],
        tuple(values),
        *access,
    )
