"""The zones a server answers for: each one's settings, current index and answer templates.

A `PublishedZone` is immutable and built once per published index: the SOA and NS records and
the A records of every return code are encoded here, so that answering a query only joins
prebuilt bytes. `ZoneTable` maps query names to zones (longest zone suffix wins) and swaps a
zone's `PublishedZone` in one assignment, so every query sees either the old or the new index.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping

from dnsbl.addresses import address_text
from dnsbl.config import ZoneSettings
from dnsbl.dns.codes import FAST_QTYPES, RecordClass, RecordType
from dnsbl.dns.query import NIBBLES, OCTETS
from dnsbl.errors import UnknownZoneError
from dnsbl.index.txt_template import render_txt
from dnsbl.index.values import Value
from dnsbl.index.zone_index import ZoneIndex

TYPE_A = RecordType.A
TYPE_NS = RecordType.NS
TYPE_SOA = RecordType.SOA
TYPE_TXT = RecordType.TXT
TYPE_ANY = RecordType.ANY
CLASS_IN = RecordClass.IN
QUESTION_POINTER = b"\xc0\x0c"  # the question's name always starts right after the header
# Indexes kept per zone for IXFR: at most HISTORY of them, holding at most HISTORY_OVERLAY
# overlay entries between them (they share their arrays until a compaction, so the overlays
# are their cost: some 40 bytes an entry, 2 MB in all). A secondary further behind gets the
# whole zone.
HISTORY = 64
HISTORY_OVERLAY = 50_000


def name_wire(name: str) -> bytes:
    """`name` (dotted, no trailing dot needed) in uncompressed wire form, lowercased."""
    labels = [label for label in name.rstrip(".").lower().split(".") if label]
    return b"".join(bytes((len(label),)) + label.encode() for label in labels) + b"\x00"


def name_labels(name: str) -> tuple[bytes, ...]:
    """The lowercase labels of `name`, leftmost first."""
    return tuple(label.encode() for label in name.rstrip(".").lower().split(".") if label)


def txt_strings(text: str) -> list[bytes]:
    """`text` as the <=255-byte character-strings of one TXT record."""
    data = text.encode()
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


def _rr_tail(rtype: int, ttl: int, rdata: bytes) -> bytes:
    """A resource record without its owner name: type, class, TTL, length and data."""
    return struct.pack(">HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata


def soa_rdata(settings: ZoneSettings, serial: int) -> bytes:
    """The SOA record data of the zone at `serial` (names uncompressed)."""
    return (
        name_wire(settings.ns[0])
        + name_wire(settings.hostmaster)
        + struct.pack(
            ">IIIII",
            serial & 0xFFFFFFFF,
            settings.refresh,
            settings.retry,
            settings.expire,
            settings.negative_ttl,
        )
    )


class PublishedZone:
    """One zone as it is answered now: its settings, its index and its prebuilt records."""

    __slots__ = (
        "_txt_cache",
        "_txt_lead",
        "_txt_parts",
        "a_records",
        "gate",
        "guarded",
        "history",
        "index",
        "key_noerror",
        "key_nxdomain",
        "keys_by_qtype",
        "labels",
        "name",
        "ns_tails",
        "serial",
        "settings",
        "soa_tail",
        "ttl",
        "wire",
    )

    def __init__(
        self,
        settings: ZoneSettings,
        index: ZoneIndex | None,
        history: tuple[ZoneIndex, ...] = (),
        gate: Callable[[str], bool] | None = None,
    ) -> None:
        self.settings = settings
        # The indexes published before this one, oldest first: what IXFR answers from.
        self.history = history
        self.name = settings.name
        self.wire = name_wire(settings.name)
        # Not open to everyone (dnsbl.dns.access): the hot path answers only the sources
        # `gate` admits (and counts), and leaves the others, and key names, to the general path.
        self.guarded = not settings.access.open
        self.gate = gate
        self.labels = name_labels(settings.name)
        self.index = index
        self.serial = index.serial if index is not None else 0
        self.ttl = settings.ttl
        self.soa_tail = _rr_tail(TYPE_SOA, settings.negative_ttl, soa_rdata(settings, self.serial))
        self.ns_tails = tuple(_rr_tail(TYPE_NS, settings.ttl, name_wire(ns)) for ns in settings.ns)
        codes = {settings.default_code, *settings.categories.values()}
        if index is not None:
            codes.update(value.code for value in index.values if value is not None)
            codes.add(index.test_value.code)
        self.a_records = {
            code: QUESTION_POINTER + _rr_tail(TYPE_A, self.ttl, ipaddress.IPv4Address(code).packed)
            for code in codes
        }
        self.key_noerror = (self.name, "NOERROR")
        self.key_nxdomain = (self.name, "NXDOMAIN")
        # The counter keys (zone, qtype, rcode) of the hot path's answers, made once: the hot
        # path only picks one (see dnsbl.node.metrics.query_labels for what reads them).
        self.keys_by_qtype = {
            int(qtype): ((self.name, qtype.name, "NOERROR"), (self.name, qtype.name, "NXDOMAIN"))
            for qtype in FAST_QTYPES
        }
        self._txt_cache: dict[str, bytes] = {}
        self._txt_parts: dict[str, tuple[bytes, bytes] | tuple[()]] = {}
        # Pointer to the question's name, type TXT, class IN, TTL: everything before RDLENGTH.
        self._txt_lead = QUESTION_POINTER + struct.pack(">HHI", TYPE_TXT, CLASS_IN, self.ttl)

    def a_record(self, code: str) -> bytes:
        """The A record answering `code`, owned by the question's name."""
        record = self.a_records.get(code)
        if record is None:  # a code set after this zone was published (not expected)
            rdata = ipaddress.IPv4Address(code).packed
            record = QUESTION_POINTER + _rr_tail(TYPE_A, self.ttl, rdata)
        return record

    def txt_record(self, template: str, family: int, address: int) -> bytes:
        """The TXT record of `template` for `address`, owned by the question's name."""
        if "$" not in template:
            record = self._txt_cache.get(template)
            if record is None:
                record = self._txt_cache[template] = QUESTION_POINTER + _rr_tail(
                    TYPE_TXT, self.ttl, txt_rdata(template)
                )
            return record
        parts = self._txt_parts.get(template)
        if parts is None:
            parts = self._txt_parts[template] = split_template(template)
        if parts:
            # One `$` and a short text: the record is a prefix, the address and a suffix.
            head, tail = parts
            shown = address_text(family, address).encode()
            length = len(head) + len(shown) + len(tail)
            if length < 256:
                return b"".join(
                    (
                        self._txt_lead,
                        (length + 1).to_bytes(2, "big"),
                        bytes((length,)),
                        head,
                        shown,
                        tail,
                    )
                )
        text = render_txt(template, address_text(family, address))
        return QUESTION_POINTER + _rr_tail(TYPE_TXT, self.ttl, txt_rdata(text))

    def answer_records(
        self, qtype: int, values: tuple[Value, ...], family: int, address: int
    ) -> list[bytes]:
        """The answer records of a listed name for `qtype` (A, TXT or ANY; else none)."""
        records: list[bytes] = []
        if qtype in (TYPE_A, TYPE_ANY):
            codes = dict.fromkeys(value.code for value in values)
            records.extend(self.a_record(code) for code in codes)
        if qtype in (TYPE_TXT, TYPE_ANY):
            # One record per distinct text: an RRset holds no duplicates (RFC 2181 §5).
            texts = dict.fromkeys(
                self.txt_record(value.txt, family, address)
                for value in values
                if value.txt is not None
            )
            records.extend(texts)
        return records


def split_template(template: str) -> tuple[bytes, bytes] | tuple[()]:
    """(text before, text after) the one `$` of `template`; () when it is not that simple."""
    if template.count("$") != 1:
        return ()
    head, tail = template.split("$")
    return head.encode(), tail.encode()


def txt_rdata(text: str) -> bytes:
    """TXT record data for `text`: strings of at most 255 bytes."""
    return b"".join(bytes((len(part),)) + part for part in txt_strings(text))


class ZoneTable:
    """The zones of a server by name; `publish` swaps one zone's index."""

    def __init__(
        self, zones: Iterable[ZoneSettings], gates: Mapping[str, Callable[[str], bool]] = {}
    ) -> None:
        self.by_wire: dict[bytes, PublishedZone] = {}
        for settings in zones:
            zone = PublishedZone(settings, None, gate=gates.get(settings.name))
            self.by_wire[zone.wire] = zone
        # Longest first, so that the first suffix that matches is the longest zone.
        self.suffixes: tuple[bytes, ...] = tuple(sorted(self.by_wire, key=len, reverse=True))
        self._by_labels = {zone.labels: wire for wire, zone in self.by_wire.items()}
        # Zones with a zone below them named like an address prefix (`10.bl.example.org`):
        # the hot path leaves their names to the general path's longest-suffix search.
        self.parents = frozenset(
            wire
            for wire, zone in self.by_wire.items()
            for other in self._by_labels
            if len(other) > len(zone.labels)
            and other[-len(zone.labels) :] == zone.labels
            and all(label in OCTETS or label in NIBBLES for label in other[: -len(zone.labels)])
        )

    def publish(self, index: ZoneIndex) -> tuple[PublishedZone, int | None]:
        """Make `index` the answer of its zone; returns the new zone and the serial it replaces."""
        wire = name_wire(index.zone)
        old = self.by_wire.get(wire)
        if old is None:
            raise UnknownZoneError(f"zone {index.zone!r} is not configured on this server")
        history = old.history
        if old.index is not None and old.index.serial != index.serial:
            history = (*history, old.index)[-HISTORY:]
            while history and sum(kept.overlay_size for kept in history) > HISTORY_OVERLAY:
                history = history[1:]
        zone = PublishedZone(old.settings, index, history, old.gate)
        self.by_wire[wire] = zone
        return zone, (old.serial if old.index is not None else None)

    def zone(self, name: str) -> PublishedZone:
        return self.by_wire[name_wire(name)]

    def match(self, labels: tuple[bytes, ...]) -> tuple[PublishedZone, int] | None:
        """The zone `labels` (lowercase) fall in, and how many labels lie below its apex."""
        for count in range(len(labels) + 1):
            wire = self._by_labels.get(labels[count:])
            if wire is not None:
                return self.by_wire[wire], count
        return None

    def __iter__(self) -> Iterator[PublishedZone]:
        return iter(list(self.by_wire.values()))
