"""DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018).

A client sends an 8-byte client cookie in the COOKIE option; the server answers with it and
a server cookie: version 1, three reserved bytes, a 32-bit timestamp and an 8-byte
SipHash-2-4 of (client cookie, version, reserved, timestamp, client address) under a 16-byte
secret. A later query bringing that server cookie back proves its source can receive what is
sent to it: no forged source does, so such a query is exempt from rate limiting.

The secret in use is derived from the configured one (`[dns.cookies] secret`, shared by the
nodes that should accept each other's cookies; random per process when unset) for each
period of `rotate` seconds; a cookie made under the previous period's secret still verifies.
A server cookie is valid for an hour after its timestamp and at most five minutes before it
(clocks differ); every answer carries a fresh one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from enum import Enum
from typing import NamedTuple

from dnsbl.config import CookieSettings
from dnsbl.dns.access import source_address

OPTION_COOKIE = 10  # the EDNS option code (RFC 7873 §4)
VERSION = 1
LIFETIME = 3600  # seconds a server cookie stays valid (RFC 9018 §4.3)
SKEW = 300  # seconds a cookie may seem to come from the future
_MASK = 0xFFFFFFFFFFFFFFFF


def siphash24(key: bytes, data: bytes) -> bytes:
    """SipHash-2-4 of `data` under the 16-byte `key`, as 8 little-endian bytes."""
    k0, k1 = struct.unpack("<QQ", key)
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(v0: int, v1: int, v2: int, v3: int, n: int) -> tuple[int, int, int, int]:
        for _ in range(n):
            v0 = (v0 + v1) & _MASK
            v1 = ((v1 << 13) | (v1 >> 51)) & _MASK ^ v0
            v0 = ((v0 << 32) | (v0 >> 32)) & _MASK
            v2 = (v2 + v3) & _MASK
            v3 = ((v3 << 16) | (v3 >> 48)) & _MASK ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = ((v3 << 21) | (v3 >> 43)) & _MASK ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = ((v1 << 17) | (v1 >> 47)) & _MASK ^ v2
            v2 = ((v2 << 32) | (v2 >> 32)) & _MASK
        return v0, v1, v2, v3

    tail = len(data) & 7
    for (word,) in struct.iter_unpack("<Q", data[: len(data) - tail]):
        v3 ^= word
        v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 2)
        v0 ^= word
    last = (len(data) & 0xFF) << 56 | int.from_bytes(data[len(data) - tail :], "little")
    v3 ^= last
    v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 2)
    v0 ^= last
    v2 ^= 0xFF
    v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 4)
    return struct.pack("<Q", v0 ^ v1 ^ v2 ^ v3)


def server_cookie(secret: bytes, client: bytes, peer: str, stamp: int) -> bytes:
    """The RFC 9018 server cookie of `client` from `peer` at Unix time `stamp`."""
    head = struct.pack(">B3xI", VERSION, stamp & 0xFFFFFFFF)
    return head + siphash24(secret, client + head + _address_bytes(peer))


class CookieState(Enum):
    """What a query's COOKIE option said."""

    NONE = "none"  # no option: nothing to answer
    CLIENT = "client"  # a client cookie only (a first query, or one that lost its state)
    VALID = "valid"  # our server cookie, current: the source is proven
    BAD = "bad"  # a server cookie we did not make, or an expired one


class CookieCheck(NamedTuple):
    """The state of a query's cookie, and the option data to answer with (b"": none)."""

    state: CookieState
    answer: bytes = b""


NO_COOKIE = CookieCheck(CookieState.NONE)


class MalformedCookie(ValueError):
    """A COOKIE option of a length RFC 7873 §5.2.2 does not allow: FORMERR."""


class Cookies:
    """Makes and verifies server cookies under the rotating secret."""

    def __init__(self, settings: CookieSettings) -> None:
        configured = settings.secret
        self.master = base64.b64decode(configured) if configured else secrets.token_bytes(32)
        self.rotate = settings.rotate
        self._secrets: dict[int, bytes] = {}

    def secret(self, period: int) -> bytes:
        """The 16-byte secret of rotation period `period` (derived, so nodes agree)."""
        found = self._secrets.get(period)
        if found is None:
            if len(self._secrets) > 4:
                self._secrets.clear()
            message = b"dnsbl server cookie " + struct.pack(">q", period)
            found = hmac.new(self.master, message, hashlib.sha256).digest()[:16]
            self._secrets[period] = found
        return found

    def make(self, client: bytes, peer: str, now: float | None = None) -> bytes:
        """The server cookie for `client` (8 bytes) from `peer`, stamped `now`."""
        now = time.time() if now is None else now
        return server_cookie(self.secret(int(now) // self.rotate), client, peer, int(now))

    def check(self, option: bytes, peer: str, now: float | None = None) -> CookieCheck:
        """What the COOKIE option data `option` of a query from `peer` says, and the option
        data to answer with (the client cookie and a fresh server cookie)."""
        if len(option) != 8 and not 16 <= len(option) <= 40:
            raise MalformedCookie(f"a COOKIE option of {len(option)} bytes")
        now = time.time() if now is None else now
        client, server = option[:8], option[8:]
        answer = client + self.make(client, peer, now)
        if not server:
            return CookieCheck(CookieState.CLIENT, answer)
        return CookieCheck(
            CookieState.VALID if self._valid(client, server, peer, now) else CookieState.BAD,
            answer,
        )

    def _valid(self, client: bytes, server: bytes, peer: str, now: float) -> bool:
        if len(server) != 16 or server[0] != VERSION or server[1:4] != b"\x00\x00\x00":
            return False
        stamp = int.from_bytes(server[4:8], "big")
        # RFC 1982 arithmetic on 32-bit seconds: how long ago the cookie was made.
        age = (int(now) - stamp) & 0xFFFFFFFF
        if age >= 2**31:
            age -= 2**32
        if not -SKEW <= age <= LIFETIME:
            return False
        # Verified under the secret of the period it was made in: the previous one still
        # verifies (for the cookie's lifetime), an older one never.
        period = (int(now) - age) // self.rotate
        if period < int(now // self.rotate) - 1:
            return False
        expected = siphash24(self.secret(period), client + server[:8] + _address_bytes(peer))
        return hmac.compare_digest(expected, server[8:])


def _address_bytes(peer: str) -> bytes:
    address = source_address(peer)
    return address.packed if address is not None else b""
