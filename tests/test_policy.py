"""The never-list rule: a network that meets a never-list network in any way is refused."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from dnsbl.addresses import Network, parse_network
from dnsbl.policy import NeverList, PolicyNetworkView, add_policy_network

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _never(*networks: str) -> NeverList:
    return NeverList(
        [PolicyNetworkView(i, n, "never-list", f"r{i}", AT, "t") for i, n in enumerate(networks)]
    )


@pytest.mark.parametrize(
    ("network", "refused"),
    [
        ("198.51.100.5", True),  # inside
        ("198.51.100.0/24", True),  # the same
        ("198.51.0.0/16", True),  # covers it
        ("198.51.100.128/25", True),  # the upper half
        ("198.51.99.255", False),  # just below
        ("198.51.101.0", False),  # just above
        ("198.51.98.0/23", False),  # adjacent, below
        ("2001:db8::1", False),  # the other family
        ("2001:db8:ffff::/48", True),
        ("2001:db8::/32", True),
        ("2001:db9::/32", False),
    ],
)
def test_overlap_in_any_way_is_refused(network: str, refused: bool) -> None:
    never = _never("198.51.100.0/24", "2001:db8:ffff::/48")
    why = never.refusal_of(parse_network(network))
    assert (why is not None) == refused
    if why is not None:
        assert why.startswith("on the never-list list (")


def test_the_refusal_names_the_entry_it_meets() -> None:
    never = _never("10.0.0.0/8", "192.0.2.0/24", "192.0.2.128/25")
    assert never.refusal_of(parse_network("192.0.2.200")) in (
        "on the never-list list (192.0.2.0/24: r1)",
        "on the never-list list (192.0.2.128/25: r2)",
    )
    assert never.refusal_of(parse_network("10.9.9.9")) == "on the never-list list (10.0.0.0/8: r0)"
    assert not _never() and never


@settings(max_examples=200, deadline=None)
@given(st.randoms(use_true_random=False))
def test_agrees_with_a_brute_force_overlap(rnd: random.Random) -> None:
    def network() -> Network:
        length = rnd.choice([8, 16, 20, 24, 28, 32])
        first = rnd.getrandbits(32) >> (32 - length) << (32 - length)
        return Network(4, first, length)

    spans = [network() for _ in range(rnd.randint(0, 8))]
    never = _never(*(str(net) for net in spans))
    for _ in range(50):
        entry = network()
        expected = any(s.first <= entry.last and s.last >= entry.first for s in spans)
        assert (never.refusal_of(entry) is not None) == expected


def test_loaded_from_the_database(engine: Engine) -> None:
    add_policy_network(engine, "198.51.100.0/24", "never-list", "ours", "t")
    add_policy_network(engine, "203.0.113.0/24", "never-test", "not this one", "t")
    never = NeverList.load(engine)
    assert never.refusal_of(parse_network("198.51.0.0/16")) == (
        "on the never-list list (198.51.100.0/24: ours)"
    )
    assert never.refusal_of(parse_network("203.0.113.1")) is None
