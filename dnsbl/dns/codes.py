"""DNS protocol numbers, defined once: record types, classes, opcodes and response codes.

IntEnums, as dnspython names them: they compare and pack as the numbers they are. The hot
paths copy the few they use into module constants (an enum attribute costs a lookup per query).
"""

from __future__ import annotations

import enum


class RecordType(enum.IntEnum):
    """Resource record and query types (RFC 1035, 3596, 6891, 8945, 1995, 5936)."""

    A = 1
    NS = 2
    SOA = 6
    TXT = 16
    AAAA = 28
    OPT = 41
    TSIG = 250
    IXFR = 251
    AXFR = 252
    ANY = 255


# The question types the hot path (dnsbl.dns.wire) answers; anything else takes the general one.
FAST_QTYPES = (RecordType.A, RecordType.TXT, RecordType.ANY, RecordType.AAAA)


def qtype_label(qtype: int) -> str:
    """A query type as the metrics name it: a known type's name, else OTHER (so that random
    types sent by anyone cannot grow the label's values without bound)."""
    try:
        return RecordType(qtype).name
    except ValueError:
        return "OTHER"


class RecordClass(enum.IntEnum):
    """Classes: IN for data, ANY for the TSIG record."""

    IN = 1
    ANY = 255


class Opcode(enum.IntEnum):
    QUERY = 0
    NOTIFY = 4


class Rcode(enum.IntEnum):
    """Response codes, extended ones (BADVERS, the TSIG errors) included."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    NOTAUTH = 9
    BADVERS = 16  # also BADSIG for TSIG (RFC 8945): the same number in another field
    BADKEY = 17
    BADTIME = 18
    BADCOOKIE = 23  # RFC 7873: a bad server cookie; retry with the fresh one sent
