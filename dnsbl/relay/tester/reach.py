"""Which addresses the tester may connect to: the testable networks minus the never-test list.

The schedule refuses a nomination with this check before a test is queued; the probe checks again
before it connects, so a bad row in the queue can never aim the tester at a forbidden host.
"""

from __future__ import annotations

import ipaddress

from dnsbl.config import TesterSettings

OUTSIDE = "outside testable networks"
NEVER_TEST = "on the never-test list"
NOT_AN_ADDRESS = "not an IP address"


def _networks(texts: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(text, strict=False) for text in texts]


def why_unreachable(ip: str, settings: TesterSettings) -> str | None:
    """None when the tester may probe `ip`, else the reason it may not.

    An empty `testable_networks` means every globally routable unicast address; an explicit
    list (a lab's `127.0.0.0/8`) replaces that rule. `never_test` wins over both.
    """
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return NOT_AN_ADDRESS
    if any(address in network for network in _networks(settings.never_test)):
        return NEVER_TEST
    if settings.testable_networks:
        allowed = any(address in network for network in _networks(settings.testable_networks))
    else:
        allowed = address.is_global and not address.is_multicast
    return None if allowed else OUTSIDE
