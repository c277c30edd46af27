"""Zone transfers (AXFR, and IXFR answered AXFR-style) and NOTIFY messages. No I/O.

A full transfer is the SOA, the apex NS records, every data record, and the SOA again (RFC
5936). An incremental one (IXFR, RFC 1995) is the new SOA, the secondary's SOA, the records to
delete, the new SOA, the records to add, and the new SOA: one condensed difference, found by
comparing the records under the smallest names that hold the networks the change log says
changed (see `dnsbl.index.difference`), so it costs what the change touches. Either is
split over as many TCP messages as it takes, each at most 64 KiB. Owner names are compressed
against the question (the zone apex, always at offset 12), so a record costs a few bytes more
than its relative labels and data.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import struct
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate

from dnslib import DNSRecord

from dnsbl.addresses import Network, address_text, ipv4_text
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
from dnsbl.index.difference import zone_difference
from dnsbl.index.records import Record, TextForm, written_records, zone_records
from dnsbl.index.segments import Answer
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

    def stream() -> Iterator[Sequence[bytes]]:
        yield [soa, *ns]
        yield [_record(owner, rtype, ttl, rdata, zone) for owner, rtype, ttl, rdata in records]
        yield [soa]

    return _messages(query, stream())


def zone_axfr(query: DNSRecord, zone: PublishedZone) -> Iterator[bytes]:
    """The messages of a full transfer of the zone's own records: straight from its arrays
    for a zone of single addresses (`dnsbl.index.single_addresses`), else as `zone_records`
    gives them."""
    index = zone.index
    assert index is not None
    singles = single_addresses(index)
    form = WireForm(zone)
    soa, ns = _apex_records(zone)

    def stream() -> Iterator[Sequence[bytes]]:
        yield [soa, *ns]
        if singles is not None:
            yield from _single_address_records(singles, form)
        else:
            yield from written_records(index, zone.settings, form)
        yield [soa]

    return _messages(query, stream())


_OCTET_BYTES = [str(octet).encode() for octet in range(256)]
_OCTET_LABEL = [bytes((len(text),)) + text for text in _OCTET_BYTES]
_NIBBLE_LABEL = {nibble: b"\x01" + nibble.encode() for nibble in "0123456789abcdef"}


class WireForm:
    """The zone walk's records in wire form (a `RecordForm`), owner names ending in a pointer
    to the question's apex.

    The names of the walk's IPv4 fast path are the hot loop of a large transfer: an address's
    owner is joined from a table of octet labels, and an answer's A records and the two halves
    of its TXT template around `$` are made once for a run of names that share the answer.
    Anything else (names of both families, IPv6, answers of several categories) is written as
    text and encoded, as `axfr_messages` encodes any record.
    """

    def __init__(self, zone: PublishedZone) -> None:
        self.zone = zone
        self.ttl = zone.settings.ttl
        self.text = TextForm(zone.settings)
        self.txt_head = struct.pack(">HHI", TYPE_TXT, CLASS_IN, self.ttl)
        # the answer last written, and its parts: None for an answer of several values
        self.last: Answer | None = None
        self.parts: tuple[bytes, str | None, tuple[bytes, bytes] | tuple[()]] | None = None
        self.halves_size = 0

    def named(self, labels: tuple[str, ...], answer: Answer, text: str) -> list[bytes]:
        return self.encoded(self.text.named(labels, answer, text))

    def address(self, family: int, address: int, answer: Answer) -> list[bytes]:
        if answer is not self.last:
            self.prepare(answer)
        if self.parts is None:
            return self.encoded(self.text.address(family, address, answer))
        if family == 6:
            owner = _nibble_labels(address, 32) + QUESTION_POINTER
            return self.records(owner, address_text(6, address).encode())
        label = _OCTET_LABEL
        first, second, third, fourth = (
            address >> 24,
            address >> 16 & 255,
            address >> 8 & 255,
            address & 255,
        )
        owner = b"".join(
            (label[fourth], label[third], label[second], label[first], QUESTION_POINTER)
        )
        octet = _OCTET_BYTES
        return self.records(
            owner, b".".join((octet[first], octet[second], octet[third], octet[fourth]))
        )

    def wildcard(self, family: int, start: int, depth: int, answer: Answer) -> list[bytes]:
        if answer is not self.last:
            self.prepare(answer)
        if self.parts is None:
            return self.encoded(self.text.wildcard(family, start, depth, answer))
        if family == 4:
            labels = [_OCTET_LABEL[start >> (24 - 8 * i) & 255] for i in range(depth)]
            owner = b"".join((b"\x01*", *reversed(labels), QUESTION_POINTER))
            return self.records(owner, f"{ipv4_text(start)}/{8 * depth}".encode())
        owner = b"".join((b"\x01*", _nibble_labels(start, depth), QUESTION_POINTER))
        return self.records(owner, str(Network(6, start, 4 * depth)).encode())

    def records(self, owner: bytes, shown: bytes) -> list[bytes]:
        """The A and TXT records at `owner` of the one-value answer prepared, `$` in its
        template standing for `shown`: made from the template's halves when they make one
        string (its length and the record's then a byte each), else rendered."""
        assert self.parts is not None
        a_tail, template, halves = self.parts
        if template is None:
            return [owner + a_tail]
        if halves:
            size = self.halves_size + len(shown)
            if size < 255:
                txt = (
                    owner,
                    self.txt_head,
                    bytes((0, size + 1, size)),
                    halves[0],
                    shown,
                    halves[1],
                )
                return [owner + a_tail, b"".join(txt)]
        rdata = txt_rdata(render_txt(template, shown.decode()))
        return [owner + a_tail, owner + _rr(b"", TYPE_TXT, self.ttl, rdata)]

    def prepare(self, answer: Answer) -> None:
        """Make the parts of `answer`'s records: its A record's tail, its TXT template and
        the template's halves around `$` (() when `$` is not there once)."""
        self.last = answer
        self.parts = None
        if len(answer) == 1:
            [value] = answer
            halves = split_template(value.txt) if value.txt is not None else ()
            self.parts = (_rr(b"", TYPE_A, self.ttl, _a_rdata(value.code)), value.txt, halves)
            self.halves_size = sum(map(len, halves))

    def encoded(self, records: Iterable[Record]) -> list[bytes]:
        return [
            _record(owner, rtype, ttl, rdata, self.zone) for owner, rtype, ttl, rdata in records
        ]


def _nibble_labels(start: int, depth: int) -> bytes:
    """The labels of the first `depth` nibbles of the IPv6 address `start`, least significant
    first (as a name has them)."""
    return b"".join(_NIBBLE_LABEL[nibble] for nibble in reversed(f"{start:032x}"[:depth]))


def _single_address_records(singles: SingleAddresses, form: WireForm) -> Iterator[Sequence[bytes]]:
    """The A and TXT records of every listed address, in address order (in lists of a few
    thousand)."""
    value: Value | None = None
    answer: Answer = ()
    out: list[bytes] = []
    for address, listed in singles.v4():
        if listed is not value:  # one answer object for a run of addresses: `form` reuses
            value, answer = listed, (listed,)  # its parts while the answer stays the same
        out += form.address(4, address, answer)
        if len(out) >= 4096:
            yield out
            out = []
    yield out
    for address, listed in singles.v6_tests():
        yield form.named(tuple(f"{address:032x}"), (listed,), address_text(6, address))


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
    sequence, computed from the names that hold the changed `networks`. Falls back to a full
    transfer when that is not enough (see `zone_difference`)."""
    assert zone.index is not None
    difference = zone_difference(old, zone.index, zone.settings, networks)
    if difference is None:
        yield from zone_axfr(query, zone)
        return
    removed, added = difference
    soa, _ = _apex_records(zone)
    settings = zone.settings
    old_soa = _rr(
        QUESTION_POINTER, TYPE_SOA, settings.negative_ttl, soa_rdata(settings, old.serial)
    )

    def stream() -> Iterator[Sequence[bytes]]:
        yield [soa, old_soa]
        yield [
            _record(owner, rtype, ttl, rdata, zone) for owner, rtype, ttl, rdata in sorted(removed)
        ]
        yield [soa]
        yield [
            _record(owner, rtype, ttl, rdata, zone) for owner, rtype, ttl, rdata in sorted(added)
        ]
        yield [soa]

    yield from _messages(query, stream())


def _messages(query: DNSRecord, records: Iterable[Sequence[bytes]]) -> Iterator[bytes]:
    """`records` (given in lists) as the answers of as many messages answering `query` as
    they need: each list cut where a message is full, found by bisecting its running sizes
    (a walk's list holds a /8's records: tens of thousands)."""
    question = _question(query)
    flags = 0x8400 | (query.header.rd << 8)
    batch: list[bytes] = []
    empty = size = 12 + len(question)
    for chunk in records:
        total = sum(map(len, chunk))
        if size + total <= MESSAGE_LIMIT:  # the whole list fits
            batch += chunk
            size += total
            continue
        ends = list(accumulate(map(len, chunk)))  # where each record ends, from the chunk's start
        taken = 0  # records of the chunk in messages
        done = 0  # their bytes
        while taken < len(chunk):
            fits = bisect_right(ends, done + MESSAGE_LIMIT - size, taken)
            if fits == taken:  # the next record does not fit
                if batch:
                    yield _message(query.header.id, flags, question, batch)
                    batch = []
                    size = empty
                    continue
                fits = taken + 1  # one larger than a message goes alone
            batch += chunk[taken:fits]
            size += ends[fits - 1] - done
            done = ends[fits - 1]
            taken = fits
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
