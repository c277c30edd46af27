"""The hot path: the common query answered by slicing bytes, without dnslib.

The common case is one A, TXT, ANY or AAAA question of class IN for a full IPv4 (`d.c.b.a`) or
IPv6 (32 nibbles) name under a zone, with no EDNS or a plain OPT record (version 0, no
options). Anything else, and any answer that would not fit, returns None: the caller then
takes the general path (`answers`), which the property tests hold this one equal to. No I/O.
"""

from __future__ import annotations

import re
import struct

from dnsbl.dns.codes import FAST_QTYPES, Rcode, RecordClass, RecordType
from dnsbl.dns.query import OCTETS as _OCTETS
from dnsbl.dns.zones import ZoneTable

_FAST_QTYPES = {qtype.to_bytes(2, "big"): int(qtype) for qtype in FAST_QTYPES}
_COUNTS_NO_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x01"
# Strict octets (0-255, no leading zero) and nibbles; one group per label form.
_V4 = re.compile(rb"(?:\x01(\d)|\x02([1-9]\d)|\x03(1\d\d|2[0-4]\d|25[0-5]))" * 4)
_V6 = re.compile(rb"(?:\x01[0-9a-fA-F]){32}")
_HEADER = struct.Struct(">2sBBHHHH")
_NOERROR = int(Rcode.NOERROR)
_CLASS_IN = RecordClass.IN.to_bytes(2, "big")
_OPT_AT_ROOT = b"\x00" + RecordType.OPT.to_bytes(2, "big")  # root owner, type OPT
_NXDOMAIN = int(Rcode.NXDOMAIN)
_TYPE_A = int(RecordType.A)
_TYPE_ANY = int(RecordType.ANY)
Key = tuple[str, str, str]  # zone, qtype, rcode: what DnsServer.counts counts


def answer_fast(
    packet: bytes, table: ZoneTable, max_payload: int, limit: int | None, peer: str | None = None
) -> tuple[bytes, Key] | None:
    """The response to `packet` and its (zone, qtype, rcode) count key, or None for the general
    path.

    `max_payload` is the UDP payload size we advertise in OPT; `limit` the largest response
    the transport takes (None: UDP, the client's EDNS payload size, or 512, capped by ours).
    A zone with access rules is answered here only for a `peer` its gate admits.
    ANY over UDP gets one RRset, the A records (RFC 8482 §4.1): a full ANY answer is what a
    reflection attack asks for. Over TCP (a source that cannot be spoofed) it gets them all.
    """
    size = len(packet)
    udp = limit is None
    if size < 17 or packet[2] & 0xFE or packet[4:12] not in (_COUNTS_NO_EDNS, _COUNTS_EDNS):
        return None
    # The name is four octet labels or 32 nibble labels, then exactly a zone's name.
    by_wire = table.by_wire
    zone = None
    octets = _V4.match(packet, 12)
    if octets is not None:
        offset = octets.end()
        end = packet.find(b"\x00", offset)
        zone = by_wire.get(packet[offset : end + 1].lower())
    if zone is None:
        if _V6.match(packet, 12) is None:
            return None
        offset = 76
        end = packet.find(b"\x00", offset)
        zone = by_wire.get(packet[offset : end + 1].lower())
        if zone is None:
            return None
        family = 6
        address = int(packet[75:12:-2], 16)
    else:
        family = 4
        g = octets.groups()  # type: ignore[union-attr]
        address = (
            _OCTETS[g[9] or g[10] or g[11]] << 24
            | _OCTETS[g[6] or g[7] or g[8]] << 16
            | _OCTETS[g[3] or g[4] or g[5]] << 8
            | _OCTETS[g[0] or g[1] or g[2]]
        )
    index = zone.index
    if index is None or zone.wire in table.parents or end > 266:
        return None  # not loaded, a longer zone may match, or a name over 255 bytes
    if zone.guarded and (peer is None or zone.gate is None or not zone.gate(peer)):
        return None  # access rules: the general path refuses, or answers with a code
    qend = end + 5
    if packet[end + 3 : qend] != _CLASS_IN:
        return None
    qtype = _FAST_QTYPES.get(packet[end + 1 : end + 3])
    if qtype is None:
        return None
    if packet[11]:
        # One OPT record, exactly: root owner, type 41, version 0, no options, nothing after.
        if size != qend + 11 or packet[qend : qend + 3] != _OPT_AT_ROOT:
            return None
        if packet[qend + 6] or packet[qend + 9 : qend + 11] != b"\x00\x00":
            return None
        payload = packet[qend + 3] << 8 | packet[qend + 4]
        opt = _OPT_AT_ROOT + max_payload.to_bytes(2, "big") + b"\x00\x00\x00\x00\x00\x00"
        if limit is None:
            limit = min(max(payload, 512), max_payload)
    else:
        if size != qend:
            return None
        opt = b""
        if limit is None:
            limit = 512

    values = index.lookup(family, address)
    keys = zone.keys_by_qtype[qtype]
    if values:
        records = zone.answer_records(
            _TYPE_A if udp and qtype == _TYPE_ANY else qtype, values, family, address
        )
        rcode = _NOERROR
        key = keys[0]
    elif offset == 20 and index.has_names_under(6, int(packet[19:12:-2], 16) << 112, 16):
        # Four one-digit labels also name an IPv6 /16, which has names under it.
        records = []
        rcode = _NOERROR
        key = keys[0]
    else:
        records = []
        rcode = _NXDOMAIN
        key = keys[1]
    header = _HEADER.pack(
        packet[:2],
        0x84 | (packet[2] & 1),
        (packet[3] & 0x10) | rcode,
        1,
        len(records),
        0 if records else 1,
        1 if opt else 0,
    )
    if records:
        response = b"".join((header, packet[12:qend], *records, opt))
    else:
        # The SOA's owner is the zone apex: a pointer to it inside the question's name.
        soa = (0xC000 | offset).to_bytes(2, "big") + zone.soa_tail
        response = b"".join((header, packet[12:qend], soa, opt))
    if len(response) > limit:
        return None
    return response, key
