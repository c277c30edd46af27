"""The tested host's reverse DNS: its PTR name and whether that name resolves back to it.

Recorded as evidence only (a host is never listed for its DNS). Done through the system
resolver in a thread, with a deadline, because a slow resolver must not hold up a test.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class ReverseDns:
    """The PTR name of an address (None if it has none) and whether it resolves forward to it."""

    name: str | None
    forward_matches: bool | None


NOTHING = ReverseDns(None, None)


async def reverse_lookup(ip: str, timeout: float) -> ReverseDns:
    """Look up the PTR of `ip` and check the name's addresses; `NOTHING` on failure or timeout."""
    loop = asyncio.get_running_loop()
    try:
        name, _ = await asyncio.wait_for(loop.getnameinfo((ip, 0), socket.NI_NAMEREQD), timeout)
    except (TimeoutError, OSError, UnicodeError):
        return NOTHING
    wanted = ipaddress.ip_address(ip)
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), timeout
        )
    except (TimeoutError, OSError, UnicodeError):
        return ReverseDns(name, False)
    found = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    return ReverseDns(name, wanted in found)
