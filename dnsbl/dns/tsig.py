"""TSIG (RFC 8945): zone transfers, and the queries of secondaries, signed with shared keys.

With `dns.transfer_keys` set, a transfer (AXFR, IXFR) must carry a valid TSIG of one of the
keys, besides coming from `dns.transfer_peers`; a query that is signed (a secondary's SOA
check) gets a signed reply, every message of a transfer signed in sequence (§5.3.1); NOTIFY
goes out signed with the first key. Verifying and the HMAC itself are dnspython's: the
messages are ours, built as bytes, so the TSIG record is appended here and ARCOUNT raised.

A signature that does not verify is answered NOTAUTH with an unsigned TSIG record that
names the error (RFC 8945 §5.3.2): BADKEY for a key that is not ours, BADSIG for a MAC that
does not match, BADTIME for a clock further off than the fudge (which RFC 8945 would have
signed, with our time; the rcode and error say the same).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.tsig
from dns.rdtypes.ANY.TSIG import TSIG

from dnsbl.config import TsigKeySettings
from dnsbl.dns.codes import RecordClass, RecordType

FUDGE = 300  # seconds of clock difference accepted, as the RFC recommends
ROOM = 512  # bytes a message leaves free for its TSIG record (name, algorithm and MAC)


BADSIG, BADKEY, BADTIME = 16, 17, 18


class TsigError(Exception):
    """A signed query whose signature does not verify; `record` is the TSIG record (with the
    error code) for the NOTAUTH reply, empty when the query's own could not be read."""

    def __init__(self, detail: str, packet: bytes, error: int) -> None:
        super().__init__(detail)
        self.record = _error_record(packet, error)


@dataclass(frozen=True)
class Signer:
    """Signs the replies to one signed query, with its key and after its MAC."""

    key: dns.tsig.Key
    request_mac: bytes

    def sign(self, messages: Iterable[bytes]) -> Iterator[bytes]:
        """`messages` signed; several in a row are signed as one sequence (a transfer)."""
        context: Any = None
        for message in messages:
            signed, context = sign(message, self.key, self.request_mac, context, multi=True)
            yield signed


class TsigKeys:
    """The configured keys, by name."""

    def __init__(self, keys: Iterable[TsigKeySettings]) -> None:
        self.keyring = {
            dns.name.from_text(key.name): dns.tsig.Key(key.name, key.secret, key.algorithm)
            for key in keys
        }

    def __bool__(self) -> bool:
        return bool(self.keyring)

    @property
    def first(self) -> dns.tsig.Key | None:
        return next(iter(self.keyring.values()), None)

    def verify(self, packet: bytes) -> Signer:
        """The signer of the replies to a query that carries a TSIG record; raises TsigError
        when the key is not ours or the signature does not verify."""
        try:
            message = dns.message.from_wire(packet, keyring=self.keyring)
        except dns.message.UnknownTSIGKey as exc:
            raise TsigError(f"unknown key: {exc}", packet, BADKEY) from None
        except dns.tsig.BadTime as exc:
            raise TsigError(f"BadTime: {exc}", packet, BADTIME) from None
        except (dns.tsig.BadSignature, dns.tsig.PeerError) as exc:
            raise TsigError(f"{type(exc).__name__}: {exc}", packet, BADSIG) from None
        except dns.exception.DNSException as exc:
            raise TsigError(f"cannot verify: {exc}", packet, BADSIG) from None
        if message.keyname is None:
            raise TsigError("no TSIG record", packet, BADSIG)
        return Signer(self.keyring[message.keyname], message.mac or b"")


def sign(
    message: bytes,
    key: dns.tsig.Key,
    request_mac: bytes = b"",
    context: Any = None,
    *,
    multi: bool = False,
) -> tuple[bytes, Any]:
    """`message` with a TSIG record of `key` appended; and the digest context that signs the
    next message of a sequence (pass it back with `multi`)."""
    message_id = int.from_bytes(message[:2], "big")
    blank = TSIG(
        dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, 0, FUDGE, b"", message_id, 0, b""
    )
    rdata, context = dns.tsig.sign(
        message, key, blank, int(time.time()), request_mac, context, multi
    )
    return with_record(message, _record(key.name, rdata)), context


def with_record(message: bytes, record: bytes) -> bytes:
    """`message` with `record` appended to its additional section."""
    additional = int.from_bytes(message[10:12], "big") + 1
    return message[:10] + additional.to_bytes(2, "big") + message[12:] + record


def _record(name: dns.name.Name, rdata: TSIG) -> bytes:
    data = rdata.to_wire() or b""
    owner = name.to_wire() or b""
    return owner + struct.pack(">HHIH", RecordType.TSIG, RecordClass.ANY, 0, len(data)) + data


def _error_record(packet: bytes, error: int) -> bytes:
    """The unsigned TSIG record telling the sender of `packet` what was wrong with its own."""
    try:
        query = dns.message.from_wire(packet, keyring=False)
    except dns.exception.DNSException:
        return b""
    if query.keyname is None or not query.tsig:
        return b""
    theirs = query.tsig[0]
    rdata = TSIG(
        dns.rdataclass.ANY,
        dns.rdatatype.TSIG,
        theirs.algorithm,
        int(time.time()),
        theirs.fudge,
        b"",
        theirs.original_id,
        error,
        b"",
    )
    return _record(query.keyname, rdata)
