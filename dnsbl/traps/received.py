"""The source of a message: the first host outside our own relays, read from its Received chain.

As SpamAssassin's trusted_networks: a message that reached us through relays we trust (our own
MXes in front of a trap, or a reporter's mail system) carries one Received header per hop,
newest first. Each header written by a trusted relay names the host it received the message
from (`from helo (rdns [192.0.2.1])`); walking down the chain while the hop is trusted, the
first untrusted one is the source. Headers written by untrusted hosts are not read: a spammer
can forge any of them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from dnsbl.addresses import parse_address
from dnsbl.errors import AddressError

# The connecting address in a Received header's from-clause: `[192.0.2.1]`, `[IPv6:2001:db8::1]`
# (Postfix, Exim, Sendmail), or `(192.0.2.1)` / `([192.0.2.1])` where a name comes first.
_FROM_CLAUSE = re.compile(r"^\s*from\s+(?P<clause>.*?)(?:\s+by\s|;|$)", re.IGNORECASE | re.DOTALL)
_BRACKETED = re.compile(r"\[(?:IPv6:)?(?P<ip>[0-9A-Fa-f:.]+)\]")
_PARENTHESIZED = re.compile(r"\((?:[^()\[\]]*\s)?(?P<ip>\d{1,3}(?:\.\d{1,3}){3})\)")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(texts: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(text, strict=False) for text in texts]


def received_from(header: str) -> str | None:
    """The address a Received header says the message came from, or None if it names none."""
    match = _FROM_CLAUSE.match(" ".join(header.split()))
    if match is None:
        return None
    clause = match.group("clause")
    for pattern in (_BRACKETED, _PARENTHESIZED):
        for found in pattern.finditer(clause):
            try:
                return str(_unmapped(found.group("ip")))
            except AddressError:
                continue
    return None


def _unmapped(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = parse_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == net.version and ip in net for net in trusted)


def source_of(
    received: Sequence[str], trusted: Sequence[Network], peer: str | None = None
) -> str | None:
    """The source of a message delivered by `peer` (None: handed in by a trusted party, as a
    report is) with these Received headers, newest first; None if every hop is trusted or a
    trusted hop names no address (then nobody can be blamed)."""
    current = None if peer is None else str(_unmapped(peer))
    chain = iter(received)
    while current is None or _trusted(current, trusted):
        header = next(chain, None)
        if header is None:
            return None
        current = received_from(header)
        if current is None:
            return None
    return current
