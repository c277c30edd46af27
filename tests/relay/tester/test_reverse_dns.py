"""Reverse DNS of the tested host, through the system resolver (only /etc/hosts is touched)."""

from __future__ import annotations

from dnsbl.relay.tester.reverse_dns import reverse_lookup


async def test_a_name_that_resolves_back() -> None:
    # 127.0.0.1 is `localhost` in /etc/hosts everywhere: no DNS query leaves the machine
    found = await reverse_lookup("127.0.0.1", timeout=5)
    assert found.name == "localhost"
    assert found.forward_matches is True
