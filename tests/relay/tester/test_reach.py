"""Which addresses the tester may probe."""

from __future__ import annotations

import pytest

from dnsbl.config import TesterSettings
from dnsbl.relay.tester.reach import NEVER_TEST, NOT_AN_ADDRESS, OUTSIDE, why_unreachable

PUBLIC = TesterSettings()
LAB = TesterSettings(testable_networks=["127.0.0.0/8", "::1/128"], never_test=["127.0.0.99"])


@pytest.mark.parametrize(
    ("ip", "settings", "expected"),
    [
        ("8.8.8.8", PUBLIC, None),
        ("2a00:1450:4001::1", PUBLIC, None),
        ("127.0.0.1", PUBLIC, OUTSIDE),
        ("10.1.2.3", PUBLIC, OUTSIDE),
        ("192.168.1.1", PUBLIC, OUTSIDE),
        ("100.64.0.1", PUBLIC, OUTSIDE),  # carrier-grade NAT
        ("192.0.2.1", PUBLIC, OUTSIDE),  # documentation
        ("224.0.0.1", PUBLIC, OUTSIDE),
        ("fe80::1", PUBLIC, OUTSIDE),
        ("127.0.0.10", LAB, None),
        ("::1", LAB, None),
        ("127.0.0.99", LAB, NEVER_TEST),
        ("8.8.8.8", LAB, OUTSIDE),  # an explicit list replaces the public rule
        ("not-an-ip", LAB, NOT_AN_ADDRESS),
        ("127.0.0.1/8", LAB, NOT_AN_ADDRESS),
    ],
)
def test_why_unreachable(ip: str, settings: TesterSettings, expected: str | None) -> None:
    assert why_unreachable(ip, settings) == expected


def test_never_test_wins_over_the_public_rule() -> None:
    settings = TesterSettings(never_test=["8.8.8.0/24"])
    assert why_unreachable("8.8.8.8", settings) == NEVER_TEST
    assert why_unreachable("8.8.4.4", settings) is None
