"""rbldnsd's address notation: abbreviated prefixes, CIDR, dash ranges, IPv6 prefixes.

Read the way rbldnsd reads them (checked against its source and a running rbldnsd): `10.1`
is 10.1.0.0/16, `10.1.2.3-10` a range within the last octet, a CIDR with host bits set is an
error. The dataset semantics (values, exclusions, ties) live in `dnsbl.rbldnsd.data`.
"""

from __future__ import annotations

import re
import socket
import sys
from array import array
from collections.abc import Iterator
from functools import partial
from itertools import repeat

_LOOPBACK = 0x7F000000
_DIGITS = re.compile(r"[0-9]+")
_HEX = frozenset("0123456789abcdefABCDEF")
LINE_BLANKS = " \t\r\n"  # what is stripped from both ends of a line
_PTON4 = partial(socket.inet_pton, socket.AF_INET)
_LITTLE_ENDIAN = sys.byteorder == "little"
IP4 = re.compile(r"([0-9]+)(?:\.([0-9]+)(?:\.([0-9]+)(?:\.([0-9]+))?)?)?")


class BadLine(Exception):
    """A line that cannot be read; its message says why."""


def maxrange(text: str) -> int:
    try:
        if text.startswith("/"):
            bits = int(text[1:])
            if not 0 <= bits <= 32:
                raise ValueError
            return 1 << (32 - bits)
        size = int(text)
        if size <= 0:
            raise ValueError
        return size
    except ValueError:
        raise BadLine("invalid or unrecognized special entry") from None


def abbreviated_address(parts: list[int]) -> int:
    """rbldnsd's ip4addr for an A value: `a` = 127.0.0.a (later), `a.b` = a.0.0.b, ..."""
    if len(parts) == 1:
        return _LOOPBACK | parts[0] if parts[0] else 0
    if len(parts) == 2:
        return parts[0] << 24 | parts[1]
    if len(parts) == 3:
        return parts[0] << 24 | parts[1] << 16 | parts[2]
    return parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3]


def ip4_prefix(text: str, position: int = 0) -> tuple[int, int, int]:
    """rbldnsd's ip4prefix: (address, bits 8/16/24/32, end position)."""
    match = IP4.match(text, position)
    if not match:
        raise BadLine("invalid address")
    address = 0
    bits = 0
    for shift, group in zip((24, 16, 8, 0), match.groups(), strict=True):
        if group is None:
            break
        octet = int(group)
        if octet > 255:
            raise BadLine("invalid address")
        address |= octet << shift
        bits += 8
    return address, bits, match.end()


def mask4(bits: int) -> int:
    return (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF


def mask_bits(text: str, position: int, limit: int) -> tuple[int, int]:
    match = _DIGITS.match(text, position)
    if not match or int(match.group()) > limit:
        raise BadLine("invalid address")
    return int(match.group()), match.end()


def ip4_range(text: str) -> tuple[int, int, int]:
    """An ip4set entry: prefix, CIDR or range → (first, last, end position)."""
    first, bits, end = ip4_prefix(text)
    if text[end : end + 1] == "-":
        last, last_bits, end = ip4_prefix(text, end + 1)
        if last_bits == 8:
            # `1.2.3.4-9`: a lone number is the last octet of the first prefix.
            last = (last >> (bits - 8)) | (first & mask4(bits - 8))
            last_bits = bits
        elif last_bits != bits:
            raise BadLine("invalid address")
        last |= ~mask4(last_bits) & 0xFFFFFFFF
        if first > last:
            raise BadLine("invalid address")
        return first, last, end
    if text[end : end + 1] == "/":
        bits, end = mask_bits(text, end + 1, 32)
    elif bits == 8:
        raise BadLine("invalid address")
    if first & ~mask4(bits) & 0xFFFFFFFF:
        raise BadLine("invalid range (non-zero host part)")
    return first, first | (~mask4(bits) & 0xFFFFFFFF), end


def ip4_cidr(text: str) -> tuple[int, int, int]:
    """An ip4trie entry: prefix or CIDR → (first, bits, end position)."""
    first, bits, end = ip4_prefix(text)
    if text[end : end + 1] == "/":
        bits, end = mask_bits(text, end + 1, 32)
    elif bits == 8:
        raise BadLine("invalid address")
    if first & ~mask4(bits) & 0xFFFFFFFF:
        raise BadLine("invalid range (non-zero host part)")
    return first, bits, end


def ip6_prefix(text: str) -> tuple[int, int, int]:
    """rbldnsd's ip6prefix: (address, bits, end position); groups of 16 bits, `::` = /128."""
    groups: list[int] = []
    gap = -1
    position = 0
    length = len(text)
    if text.startswith("::"):
        gap = 0
        position = 2
    bits = -1
    while True:
        start = position
        value = 0
        while position < length and text[position] in _HEX:
            value = (value << 4) | int(text[position], 16)
            if value > 0xFFFF:
                break
            position += 1
        if position == start or value > 0xFFFF:
            break
        groups.append(value)
        if text[position : position + 1] != ":" or len(groups) >= 8:
            bits = 16 * len(groups)
            break
        position += 1
        if gap < 0 and text[position : position + 1] == ":":
            gap = len(groups)
            position += 1
    if gap >= 0:
        missing = 8 - len(groups)
        if missing == 0:
            raise BadLine("invalid address")
        groups[gap:gap] = [0] * missing
        bits = 128
    if bits < 0:
        raise BadLine("invalid address")
    groups += [0] * (8 - len(groups))
    address = 0
    for group in groups:
        address = (address << 16) | group
    return address, bits, position


def ip6_cidr(text: str) -> tuple[int, int, int]:
    """An ip6trie entry → (first, bits, end position); host bits set are refused."""
    address, bits, end = ip6_prefix(text)
    if text[end : end + 1] == "/":
        bits, end = mask_bits(text, end + 1, 128)
    elif bits == 16:
        raise BadLine("invalid address")
    if address & ((1 << (128 - bits)) - 1):
        raise BadLine("invalid range (non-zero host part)")
    return address, bits, end


def ip4set_units(first: int, last: int) -> Iterator[tuple[int, int, int]]:
    """rbldnsd's ip4range_expand: (level 0-3 = /32 /24 /16 /8, first address, unit count)."""
    a, b = first, last
    for bits in (0, 8, 16):
        level = bits // 8
        if (a | 255) >= b:
            if b - a == 255:
                yield level + 1, a << bits, 1
            elif b >= a:
                yield level, a << bits, b - a + 1
            return
        if a & 255:
            yield level, a << bits, 256 - (a & 255)
            a = (a >> 8) + 1
        else:
            a >>= 8
        if (b & 255) != 255:
            yield level, (b & ~255) << bits, (b & 255) + 1
            b = (b >> 8) - 1
        else:
            b >>= 8
    if b >= a:
        yield 3, a << 24, b - a + 1


def plain_addresses(lines: list[str]) -> array[int] | None:
    """The addresses of `lines` if each is one dotted quad, blanks around it and nothing else,
    converted at C speed (None if any line is another). inet_pton takes exactly a.b.c.d with
    octets up to 255 and no leading zero, which means the same to rbldnsd."""
    try:
        packed = b"".join(map(_PTON4, map(str.strip, lines, repeat(LINE_BLANKS))))
    except (OSError, ValueError):  # not an address (ValueError: a NUL byte)
        return None
    addresses = array("I")
    addresses.frombytes(packed)
    if _LITTLE_ENDIAN:
        addresses.byteswap()  # inet_pton's bytes are in network order
    return addresses
