"""IP addresses and networks as the list sees them: a family, a first address and a prefix length.

Listings are CIDR networks of either family. Ranges (`a-b`) are split into the fewest CIDR
networks that cover them exactly, so that every entry of the index is a prefix.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dnsbl.errors import AddressError, ReturnCodeError

IPV4_BITS = 32
IPV6_BITS = 128


@dataclass(frozen=True, slots=True, order=True)
class Network:
    """A CIDR network: family (4 or 6), its first address as an integer, and its prefix length."""

    family: int
    first: int
    prefixlen: int

    @property
    def bits(self) -> int:
        return IPV4_BITS if self.family == 4 else IPV6_BITS

    @property
    def last(self) -> int:
        return self.first | ((1 << (self.bits - self.prefixlen)) - 1)

    @property
    def size(self) -> int:
        return 1 << (self.bits - self.prefixlen)

    def contains(self, family: int, address: int) -> bool:
        return family == self.family and self.first <= address <= self.last

    def __str__(self) -> str:
        return f"{address_text(self.family, self.first)}/{self.prefixlen}"

    @property
    def ip_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        if self.family == 4:
            return ipaddress.IPv4Network((self.first, self.prefixlen))
        return ipaddress.IPv6Network((self.first, self.prefixlen))

    @property
    def start_key(self) -> str:
        """The first address as fixed-width hex, so text order is numeric order in the database."""
        return hex_key(self.family, self.first)

    @property
    def end_key(self) -> str:
        return hex_key(self.family, self.last)

    @classmethod
    def from_ip_network(cls, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Network:
        return cls(net.version, int(net.network_address), net.prefixlen)


def hex_key(family: int, address: int) -> str:
    """`address` as fixed-width lowercase hex (8 digits for IPv4, 32 for IPv6)."""
    return format(address, "08x" if family == 4 else "032x")


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse one IP address; IPv4-mapped IPv6 addresses stay IPv6 (RFC 5782 lists them apart)."""
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise AddressError(f"{text!r} is not a valid IPv4 or IPv6 address") from None


def peer_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A peer's address, an IPv4-mapped IPv6 one (what a dual-stack socket sees of an IPv4
    peer) as the IPv4 address it is. Raises `AddressError`."""
    ip = parse_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_network(text: str, *, strict: bool = False) -> Network:
    """Parse `a.b.c.d`, `a.b.c.d/n`, `v6`, or `v6/n` into a `Network`.

    With `strict`, host bits set below the prefix are an error; otherwise they are cleared.
    """
    value = text.strip()
    try:
        net = ipaddress.ip_network(value, strict=strict)
    except ValueError as exc:
        raise AddressError(f"{text!r} is not a valid IP address or network ({exc})") from None
    return Network.from_ip_network(net)


def parse_range(first_text: str, last_text: str) -> list[Network]:
    """The fewest CIDR networks that cover `first`-`last` inclusive."""
    first = parse_address(first_text)
    last = parse_address(last_text)
    if first.version != last.version:
        raise AddressError(f"range {first_text}-{last_text} mixes IPv4 and IPv6")
    if int(last) < int(first):
        raise AddressError(f"range {first_text}-{last_text} ends before it starts")
    return [Network.from_ip_network(net) for net in ipaddress.summarize_address_range(first, last)]


def parse_networks(text: str) -> list[Network]:
    """Parse an address, a CIDR network, or a dash range `a-b` into CIDR networks."""
    if "-" in text:
        first, _, last = text.partition("-")
        return parse_range(first, last)
    return [parse_network(text)]


def parse_return_code(text: str) -> str:
    """`text` as an A return code: an IPv4 address in 127.0.0.0/8 (RFC 5782 §2.1)."""
    try:
        code = ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise ReturnCodeError(f"{text!r} is not an IPv4 address") from None
    if not code.is_loopback:
        raise ReturnCodeError(f"{text!r} is not in 127.0.0.0/8 (RFC 5782 return codes)")
    return str(code)


def ipv4_text(address: int) -> str:
    """Dotted-quad text of an IPv4 address given as an integer (faster than `ipaddress`)."""
    return f"{address >> 24}.{(address >> 16) & 255}.{(address >> 8) & 255}.{address & 255}"


def ipv6_text(address: int) -> str:
    """The compressed text of an IPv6 address given as an integer, as `ipaddress` writes it
    (RFC 5952: the longest run of two or more zero groups, the first of equals, as `::`), in
    a fifth of its time."""
    groups = [format(address >> shift & 0xFFFF, "x") for shift in range(112, -16, -16)]
    best_start = best_length = start = length = 0
    for i, group in enumerate(groups):
        if group == "0":
            if not length:
                start = i
            length += 1
            if length > best_length:
                best_start, best_length = start, length
        else:
            length = 0
    if best_length < 2:
        return ":".join(groups)
    head = ":".join(groups[:best_start])
    tail = ":".join(groups[best_start + best_length :])
    return f"{head}::{tail}"


def address_text(family: int, address: int) -> str:
    """The conventional text form of an address (dotted quad, or compressed IPv6)."""
    if family == 4:
        return ipv4_text(address)
    return ipv6_text(address)


def reverse_name(address: ipaddress.IPv4Address | ipaddress.IPv6Address, zone: str) -> str:
    """The RFC 5782 query name for `address` under `zone` (reversed octets or nibbles)."""
    labels = str(address).split(".") if address.version == 4 else list(format(int(address), "032x"))
    return ".".join(reversed(labels)) + "." + zone.rstrip(".")
