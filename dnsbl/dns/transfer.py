"""Zone transfers (AXFR, and IXFR answered AXFR-style) and NOTIFY messages. No I/O.

A full transfer is the SOA, the apex NS records, every data record, and the SOA again (RFC
5936). An incremental one (IXFR, RFC 1995) is the new SOA, the secondary's SOA, the records to
delete, the new SOA, the records to add, and the new SOA: one condensed difference, found by
comparing the records under the top-level labels that the change log says changed (see
`dnsbl.index.records.records_under`). Either is split over as many TCP messages as it takes,
each at most 64 KiB. Owner names are compressed
against the question (the zone apex, always at offset 12), so a record costs a few bytes more
than its relative labels and data.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import struct
from collections.abc import Iterable, Iterator

from dnslib import DNSRecord

from dnsbl.addresses import Network, address_text
from dnsbl.config import ZoneSettings
from dnsbl.dns.codes import Opcode
from dnsbl.dns.tsig import ROOM as TSIG_ROOM
from dnsbl.dns.zones import (
    CLASS_IN,
    QUESTION_POINTER,
    TYPE_A,
    TYPE_NS,
    TYPE_SOA,
    TYPE_TXT,
    PublishedZone,
    name_wire,
    soa_rdata,
    split_template,
    txt_rdata,
    txt_strings,
)
from dnsbl.index.records import records_under, top_labels, zone_records
from dnsbl.index.single_addresses import SingleAddresses, single_addresses
from dnsbl.index.txt_template import render_txt
from dnsbl.index.values import Value
from dnsbl.index.zone_index import ZoneIndex

MESSAGE_LIMIT = 65535 - TSIG_ROOM  # a message may get a TSIG record appended
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(rb"\\(\d{3}|.)", re.DOTALL)


def default_records(index: ZoneIndex, zone: ZoneSettings) -> Iterable[tuple[str, str, int, str]]:
    """The data records of `index`: owner, type ("A" or "TXT"), TTL and data as zone text."""
    return zone_records(index, zone)  # shared with `dnsbl export --format bind`


def _rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack(">HHIH", rtype, CLASS_IN, ttl, len(rdata)) + rdata


def _owner(fqdn: str, zone: PublishedZone) -> bytes:
    """`fqdn` (under the zone) in wire form, ending in a pointer to the question's apex."""
    name = fqdn.rstrip(".").lower()
    if name == zone.name:
        return QUESTION_POINTER
    if not name.endswith("." + zone.name):
        return name_wire(name)
    # the labels below the apex (never empty: `name` is longer than the zone's name)
    labels = name[: -len(zone.name) - 1].split(".")
    return b"".join([bytes((len(label),)) + label.encode() for label in labels]) + QUESTION_POINTER


def txt_rdata_from_text(text: str) -> bytes:
    """TXT record data from its zone-file text: quoted strings (with escapes) or one bare word."""
    quoted = _QUOTED.findall(text)
    if quoted:
        parts = [
            _ESCAPE.sub(lambda m: bytes((int(m[1]),)) if m[1].isdigit() else m[1], part.encode())
            for part in quoted
        ]
    else:
        parts = txt_strings(text.strip())
    return b"".join(bytes((len(part),)) + part for part in parts)


def _record(owner: str, rtype: str, ttl: int, rdata: str, zone: PublishedZone) -> bytes:
    if rtype == "A":
        return _rr(_owner(owner, zone), TYPE_A, ttl, _a_rdata(rdata))
    if rtype == "TXT":
        return _rr(_owner(owner, zone), TYPE_TXT, ttl, txt_rdata_from_text(rdata))
    raise ValueError(f"unexpected record type {rtype!r} in zone {zone.name}")


@functools.lru_cache(maxsize=1024)
def _a_rdata(code: str) -> bytes:
    """An A record's data (a zone has few distinct return codes: each is parsed once)."""
    return ipaddress.IPv4Address(code).packed


def _apex_records(zone: PublishedZone) -> tuple[bytes, list[bytes]]:
    settings = zone.settings
    soa = _rr(QUESTION_POINTER, TYPE_SOA, settings.negative_ttl, soa_rdata(settings, zone.serial))
    ns = [_rr(QUESTION_POINTER, TYPE_NS, settings.ttl, name_wire(n)) for n in settings.ns]
    return soa, ns


def _question(query: DNSRecord) -> bytes:
    """The query's question in wire form, its case kept."""
    data = bytes(DNSRecord(q=query.q).pack())[12:]
    return data


def axfr_messages(
    query: DNSRecord, zone: PublishedZone, records: Iterable[tuple[str, str, int, str]]
) -> Iterator[bytes]:
    """The messages of a full transfer of `zone` answering `query` (AXFR or IXFR)."""
    soa, ns = _apex_records(zone)

    def stream() -> Iterator[bytes]:
        yield soa
        yield from ns
        for owner, rtype, ttl, rdata in records:
            yield _record(owner, rtype, ttl, rdata, zone)
        yield soa

    return _messages(query, stream())


def zone_axfr(query: DNSRecord, zone: PublishedZone) -> Iterator[bytes]:
    """The messages of a full transfer of the zone's own records: straight from its arrays
    for a zone of single addresses (`dnsbl.index.single_addresses`), else as `zone_records`
    gives them."""
    assert zone.index is not None
    singles = single_addresses(zone.index)
    if singles is None:
        return axfr_messages(query, zone, default_records(zone.index, zone.settings))
    soa, ns = _apex_records(zone)

    def stream() -> Iterator[bytes]:
        yield soa
        yield from ns
        yield from _single_address_records(singles, zone.settings.ttl)
        yield soa

    return _messages(query, stream())


_OCTET_TEXT = [str(octet) for octet in range(256)]
_OCTET_LABEL = [bytes((len(text),)) + text.encode() for text in _OCTET_TEXT]
_NIBBLE_LABEL = [b"\x01" + format(nibble, "x").encode() for nibble in range(16)]


def _single_address_records(singles: SingleAddresses, ttl: int) -> Iterator[bytes]:
    """The A and TXT records of every listed address: owner names from per-octet labels, the
    A record's tail and the TXT template's two halves made once per value."""
    a_tails: dict[Value, bytes] = {}
    halves: dict[Value, tuple[bytes, bytes] | tuple[()]] = {}
    label, octet = _OCTET_LABEL, _OCTET_TEXT
    pointer = QUESTION_POINTER
    txt_head = struct.pack(">HHI", TYPE_TXT, CLASS_IN, ttl)
    for address, value in singles.v4():
        tail = a_tails.get(value)
        if tail is None:
            tail = a_tails[value] = _rr(b"", TYPE_A, ttl, _a_rdata(value.code))
            halves[value] = split_template(value.txt) if value.txt is not None else ()
        first, second, third = address >> 24, address >> 16 & 255, address >> 8 & 255
        owner = b"".join((label[address & 255], label[third], label[second], label[first]))
        owner += pointer
        yield owner + tail
        if value.txt is None:
            continue
        text = f"{octet[first]}.{octet[second]}.{octet[third]}.{octet[address & 255]}"
        parts = halves[value]
        if parts:
            data = parts[0] + text.encode() + parts[1]
            if len(data) < 256:
                yield owner + txt_head + struct.pack(">HB", len(data) + 1, len(data)) + data
                continue
        yield owner + _rr(b"", TYPE_TXT, ttl, txt_rdata(render_txt(value.txt, text)))
    for address, value in singles.v6_tests():
        owner = b"".join(_NIBBLE_LABEL[address >> shift & 15] for shift in range(0, 128, 4))
        owner += pointer
        yield owner + _rr(b"", TYPE_A, ttl, _a_rdata(value.code))
        if value.txt is not None:
            text = address_text(6, address)
            yield owner + _rr(b"", TYPE_TXT, ttl, txt_rdata(render_txt(value.txt, text)))


def changed_since(zone: PublishedZone, serial: int) -> tuple[ZoneIndex, set[Network]] | None:
    """The index this node published at `serial` and the networks changed since; None when
    the node does not hold that history (it loaded the zone whole since, or it is too old)."""
    if zone.index is None:
        return None
    chain = [*zone.history, zone.index]
    start = next((i for i, index in enumerate(chain) if index.serial == serial), None)
    if start is None:
        return None
    networks: set[Network] = set()
    for previous, index in zip(chain[start:], chain[start + 1 :], strict=False):
        if index.changed is None:
            return None
        since, changed = index.changed
        if since != previous.serial:
            return None
        networks |= changed
    return chain[start], networks


def ixfr_messages(
    query: DNSRecord, zone: PublishedZone, old: ZoneIndex, networks: set[Network]
) -> Iterator[bytes]:
    """An incremental transfer (RFC 1995) from `old` to the zone's index: one difference
    sequence, computed from the names under the labels the changed `networks` touch. Falls
    back to a full transfer when that is not enough (see `records_under`)."""
    assert zone.index is not None
    labels: set[str] = set().union(*(top_labels(network) for network in networks))
    before = records_under(old, zone.settings, labels)
    after = records_under(zone.index, zone.settings, labels)
    if before is None or after is None:
        yield from zone_axfr(query, zone)
        return
    soa, _ = _apex_records(zone)
    settings = zone.settings
    old_soa = _rr(
        QUESTION_POINTER, TYPE_SOA, settings.negative_ttl, soa_rdata(settings, old.serial)
    )

    def stream() -> Iterator[bytes]:
        yield soa
        yield old_soa
        for owner, rtype, ttl, rdata in sorted(before - after):
            yield _record(owner, rtype, ttl, rdata, zone)
        yield soa
        for owner, rtype, ttl, rdata in sorted(after - before):
            yield _record(owner, rtype, ttl, rdata, zone)
        yield soa

    yield from _messages(query, stream())


def _messages(query: DNSRecord, records: Iterable[bytes]) -> Iterator[bytes]:
    """`records` as the answers of as many messages answering `query` as they need."""
    question = _question(query)
    flags = 0x8400 | (query.header.rd << 8)
    batch: list[bytes] = []
    size = 12 + len(question)
    for record in records:
        if batch and size + len(record) > MESSAGE_LIMIT:
            yield _message(query.header.id, flags, question, batch)
            batch = []
            size = 12 + len(question)
        batch.append(record)
        size += len(record)
    yield _message(query.header.id, flags, question, batch)


def up_to_date(query: DNSRecord, zone: PublishedZone) -> bytes:
    """The IXFR answer to a client that already has the current serial: the SOA alone."""
    soa, _ = _apex_records(zone)
    return _message(query.header.id, 0x8400 | (query.header.rd << 8), _question(query), [soa])


def _message(message_id: int, flags: int, question: bytes, records: list[bytes]) -> bytes:
    header = struct.pack(">HHHHHH", message_id, flags, 1, len(records), 0, 0)
    return b"".join((header, question, *records))


def notify_message(zone: PublishedZone, message_id: int) -> bytes:
    """A NOTIFY (RFC 1996) for `zone`: the apex SOA as question, the current SOA as answer."""
    flags = 0x0400 | Opcode.NOTIFY << 11  # AA, opcode NOTIFY
    question = zone.wire + struct.pack(">HH", TYPE_SOA, CLASS_IN)
    soa, _ = _apex_records(zone)
    return _message(message_id, flags, question, [soa])
