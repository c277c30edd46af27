"""The hot path: the common query answered by slicing bytes, without dnslib.

The common case is one A, TXT, ANY or AAAA question of class IN for a full IPv4 (`d.c.b.a`) or
IPv6 (32 nibbles) name under a zone, with no EDNS or a plain OPT record (version 0, no
options). Anything else, and any answer that would not fit, returns None: the caller then
takes the general path (`answers`), which the property tests hold this one equal to. No I/O.
"""

from __future__ import annotations

import re
import struct

from dnsbl.dns.query import OCTETS
from dnsbl.dns.zones import ZoneTable

_FAST_QTYPES = {b"\x00\x01": 1, b"\x00\x10": 16, b"\x00\xff": 255, b"\x00\x1c": 28}
_COUNTS_NO_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_NIBBLES = re.compile(rb"[0-9a-f]{32}")
_HEADER = struct.Struct(">2sBBHHHH")
_NXDOMAIN = 3
Key = tuple[str, str]


def answer_fast(
    packet: bytes, table: ZoneTable, max_payload: int, limit: int | None
) -> tuple[bytes, Key] | None:
    """The response to `packet` and its (zone, rcode) count key, or None for the general path.

    `max_payload` is the UDP payload size we advertise in OPT; `limit` the largest response
    the transport takes (None: the client's EDNS payload size, or 512, capped by ours).
    """
    size = len(packet)
    if size < 17 or packet[2] & 0xFE or packet[4:12] not in (_COUNTS_NO_EDNS, _COUNTS_EDNS):
        return None
    # The question name: plain labels only (a pointer in a query's question is unusual).
    pos = 12
    starts = []
    while True:
        length = packet[pos]
        if not length:
            break
        if length > 63:
            return None
        starts.append(pos)
        pos += length + 1
        if pos >= size:
            return None
    qend = pos + 5
    if pos > 266 or packet[pos + 3 : qend] != b"\x00\x01":  # name <= 255 bytes, class IN
        return None
    qtype = _FAST_QTYPES.get(packet[pos + 1 : pos + 3])
    if qtype is None:
        return None
    if packet[11]:
        # One OPT record, exactly: root owner, type 41, version 0, no options, nothing after.
        if size != qend + 11 or packet[qend : qend + 3] != b"\x00\x00\x29":
            return None
        if packet[qend + 6] or packet[qend + 9 : qend + 11] != b"\x00\x00":
            return None
        payload = packet[qend + 3] << 8 | packet[qend + 4]
        opt = b"\x00\x00\x29" + max_payload.to_bytes(2, "big") + b"\x00\x00\x00\x00\x00\x00"
        if limit is None:
            limit = min(max(payload, 512), max_payload)
    else:
        if size != qend:
            return None
        opt = b""
        if limit is None:
            limit = 512

    qname = packet[12 : pos + 1].lower()
    for suffix in table.suffixes:
        if qname.endswith(suffix):
            offset = len(qname) - len(suffix) + 12
            if offset in starts:
                break
    else:
        return None
    zone = table.by_wire[suffix]
    index = zone.index
    if index is None:
        return None
    count = starts.index(offset)
    if count == 4:
        octets = [OCTETS.get(packet[s + 1 : s + 1 + packet[s]]) for s in starts[:4]]
        if None in octets:
            return None
        family = 4
        address = octets[3] << 24 | octets[2] << 16 | octets[1] << 8 | octets[0]  # type: ignore[operator]
    elif count == 32 and offset == 76:
        nibbles = qname[1:64:2]
        if not _NIBBLES.fullmatch(nibbles):
            return None
        family = 6
        address = int(nibbles[::-1], 16)
    else:
        return None

    values = index.lookup(family, address)
    soa = (0xC000 | offset).to_bytes(2, "big") + zone.soa_tail
    if values:
        records = zone.answer_records(qtype, values, family, address)
        rcode = 0
        key = zone.key_noerror
    elif offset == 20 and index.has_names_under(6, int(qname[7:0:-2], 16) << 112, 16):
        # Four one-digit labels also name an IPv6 /16, which has names under it.
        records = []
        rcode = 0
        key = zone.key_noerror
    else:
        records = []
        rcode = _NXDOMAIN
        key = zone.key_nxdomain
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
        response = b"".join((header, packet[12:qend], soa, opt))
    if len(response) > limit:
        return None
    return response, key
