"""The native UDP engine's Python side: which engine answers, and what the C loop may answer.

`dnsbl.dns._native` (a C extension, built by `pip install` where a compiler exists) owns a UDP
listener's loop: it receives a batch with `recvmmsg`, answers the common query exactly as
`dnsbl.dns.wire.answer_fast` does, sends the batch with `sendmmsg`, and hands every other
datagram back unchanged for the Python path. It reads the index's own arrays; this module
describes each published zone to it (`zone_description`) and decides, in one place
(`native_may_answer`), which zones it may answer at all.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from dnsbl.config import DnsSettings
from dnsbl.dns.codes import FAST_QTYPES
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


def native_may_answer(zone: PublishedZone, settings: DnsSettings) -> bool:
    """Whether the native loop may answer `zone`'s queries; if not, it hands them all to the
    Python path. The one hand-off rule: whatever the Python path decides per query beyond
    the index and the question (who may ask, how often) keeps the zone's queries there, so
    a zone with access rules, or any rate limiting, is answered in Python."""
    return (
        zone.index is not None and not zone.guarded and not settings.rate_limit.responses_per_second
    )


class NativeEngine:
    """The C engine of one DNS server, fed a description of every published zone."""

    def __init__(self, table: ZoneTable, settings: DnsSettings) -> None:
        assert _native is not None
        self.settings = settings
        self.table = table
        self.engine: Any = _native.Engine(settings.max_udp_payload)
        self._descriptions: dict[bytes, tuple[Any, ...]] = {}
        for zone in table:
            self._descriptions[zone.wire] = zone_description(zone, table, settings)
        self.engine.set_zones(list(self._descriptions.values()))

    def publish(self, zone: PublishedZone) -> None:
        """Answer `zone` as now published from the next batch on."""
        self._descriptions[zone.wire] = zone_description(zone, self.table, self.settings)
        self.engine.set_zones(list(self._descriptions.values()))

    def serve(self, fd: int, counts: dict[Any, int]) -> tuple[int, list[tuple[bytes, Any]]]:
        """One batch from UDP socket `fd`: (answered natively, [(datagram, peer)] for Python)."""
        result: tuple[int, list[tuple[bytes, Any]]] = self.engine.serve(fd, counts)
        return result

    def answer(self, packet: bytes) -> bytes | None:
        """The native answer to `packet` without a socket, or None (for the tests)."""
        reply: bytes | None = self.engine.answer(packet)
        return reply


def zone_description(
    zone: PublishedZone, table: ZoneTable, settings: DnsSettings
) -> tuple[Any, ...]:
    """`zone` as the C engine reads it: its apex, whether it may answer it, its SOA record,
    TTL and count keys, its index's tables (the index's own arrays) and each value's records.
    """
    index = zone.index
    keys = tuple(zone.keys_by_qtype[int(qtype)] for qtype in FAST_QTYPES)
    # A zone with a zone below it named like an address prefix needs the longest-suffix
    # search of the Python path, as the Python hot path does (ZoneTable.parents).
    native = native_may_answer(zone, settings) and zone.wire not in table.parents
    if index is None or not native:
        return (zone.wire, False, zone.soa_tail, zone.ttl, keys, (), (), ())
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
    return (zone.wire, True, zone.soa_tail, zone.ttl, keys, tables[0], tables[1], tuple(values))
