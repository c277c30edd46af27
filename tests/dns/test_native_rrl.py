"""Response rate limiting: the native engine's C buckets decide every sequence of (source,
answer, zone, time) exactly as `dnsbl.dns.ratelimit.RateLimiter`, the rules' one definition,
including the sweeps of a small table and its bound."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsbl.config import RateLimitSettings
from dnsbl.dns.access import Verdict
from dnsbl.dns.native import NativeRateLimiter, native_available
from dnsbl.dns.ratelimit import Action, RateLimiter, truncated
from tests.conftest import need
from tests.dns_support import (
    ZONE,
    eventually,
    handed_to_python,
    make_index,
    raw_udp,
    row,
    running,
    udp_flood,
    zone_settings,
)


@pytest.fixture(autouse=True)
def _native() -> None:
    need(native_available(), "the native DNS engine was not built (no C compiler?)")


SOURCES = [
    "192.0.2.1",
    "192.0.2.200",  # the same /24
    "192.0.3.1",
    "::ffff:192.0.2.7",  # IPv4-mapped: the first /24 again
    "2001:db8:0:1::1",
    "2001:db8:0:ff::2",  # the same /56
    "2001:db8:0:100::1",
    "10.1.2.3",  # exempt below
    "fe80::1%lo",
]


def _answer(name: str, rcode: int = 0, listed: bool = True, rdtype: str = "A") -> bytes:
    reply = dns.message.make_response(dns.message.make_query(name, rdtype))
    reply.set_rcode(rcode)
    if listed:
        data = "127.0.0.2" if rdtype == "A" else "::1"
        reply.answer.append(dns.rrset.from_text(name, 60, "IN", rdtype, data))
    return reply.to_wire()


ANSWERS = [
    _answer(f"1.0.0.10.{ZONE}."),
    _answer(f"1.0.0.10.{ZONE.upper()}."),  # the same class: names compare lowercased
    _answer(f"2.0.0.10.{ZONE}."),
    _answer(f"1.0.0.10.{ZONE}.", rdtype="AAAA"),
    _answer(f"3.0.0.10.{ZONE}.", rcode=dns.rcode.NXDOMAIN, listed=False),
    _answer(f"4.0.0.10.{ZONE}.", rcode=dns.rcode.NXDOMAIN, listed=False),
    _answer(f"5.0.0.10.{ZONE}.", listed=False),  # empty: counted by its zone
    _answer(f"x.{ZONE}.", rcode=dns.rcode.REFUSED, listed=False),
    _answer(f"x.{ZONE}.", rcode=dns.rcode.SERVFAIL, listed=False),
    b"\x00\x01\x81\x80\x00\x01\x00\x01",  # shorter than a header
    b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x3f\x01",  # a cut name
]
ZONES = [ZONE, "other.example"]

step = st.tuples(
    st.sampled_from(SOURCES),
    st.sampled_from(ANSWERS),
    st.sampled_from(ZONES),
    st.sampled_from([0.0, 0.0, 0.001, 0.05, 0.3, 1.0, 2.5, 6.0, 20.0]),
)
limits = st.builds(
    RateLimitSettings,
    responses_per_second=st.integers(1, 8),
    window=st.integers(1, 20),
    slip=st.integers(0, 3),
    exempt=st.sampled_from([[], ["10.0.0.0/8"], ["192.0.2.0/25", "2001:db8::/48"]]),
    log_only=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(limits, st.integers(2, 12), st.lists(step, max_size=150))
def test_the_native_buckets_decide_as_the_python_ones(
    limit_settings: RateLimitSettings, table: int, steps: list[tuple[str, bytes, str, float]]
) -> None:
    start = 1000.0
    python = RateLimiter(limit_settings, limit=table, now=start)
    native = NativeRateLimiter(limit_settings, limit=table, now=start)
    now = start
    for n, (peer, answer, zone, wait) in enumerate(steps):
        now += wait
        expected = python.check(peer, answer, zone, now=now)
        assert native.check(peer, answer, zone, now=now) == expected, f"step {n}"
        assert native.buckets.buckets() <= table


def test_a_proven_source_is_never_limited() -> None:
    native = NativeRateLimiter(RateLimitSettings(responses_per_second=1, slip=0), now=0.0)
    assert [native.check("192.0.2.1", ANSWERS[0], ZONE, now=1.0) for _ in range(3)][-1] == 2
    assert native.check("192.0.2.1", ANSWERS[0], ZONE, proven=True, now=1.0) == 0


def test_a_full_table_is_swept_and_started_afresh_alike(caplog: pytest.LogCaptureFixture) -> None:
    """5,000 networks in turn against a bound of 3,000 buckets: the forced sweeps, the
    growth of the C table and its fresh starts decide as the Python table does."""
    limits = RateLimitSettings(responses_per_second=2, window=3, slip=2)
    python = RateLimiter(limits, limit=3000, now=0.0)
    native = NativeRateLimiter(limits, limit=3000, now=0.0)
    now = 0.0
    for n in range(20_000):
        now += 0.0007
        k = n % 5000
        peer, answer = f"10.{k >> 8}.{k & 255}.1", ANSWERS[n % 3]
        assert native.check(peer, answer, ZONE, now=now) == python.check(
            peer, answer, ZONE, now=now
        )
        assert native.buckets.buckets() == len(python._buckets) <= 3000
    fresh = [r for r in caplog.records if "starting afresh" in r.getMessage()]
    assert fresh and len(fresh) % 2 == 0  # each fresh start logged once by each limiter


async def test_a_slipped_native_answer_is_the_truncated_answer() -> None:
    limits = {"responses_per_second": 1, "slip": 1}  # every held-back answer slips
    async with running(
        [make_index([row("10.0.0.1")])], engine="native", rate_limit=limits
    ) as server:
        assert server.native is not None
        packet = dns.message.make_query(f"1.0.0.10.{ZONE}", "A", id=7).to_wire()
        before = server.native.handed
        full = await raw_udp(server, packet)
        slipped = await raw_udp(server, packet)
        assert full is not None and not full[2] & 0x02
        assert slipped == truncated(full)  # byte for byte what the Python path sends
        # The second probe too, which the event loop answers after the loop's own answers
        # went out (raw_udp returns on the first reply): counted once it has been answered.
        native = server.native

        async def probes_answered() -> bool:
            return native.handed == before + 2  # the two SOA probes of raw_udp, no more

        await eventually(probes_answered, "both probes handed to Python and answered")
        assert server.access.counts[ZONE, Verdict.SLIPPED] == 2


async def test_under_native_both_paths_share_the_buckets() -> None:
    """What the C loop answered drains the bucket the Python path (cookies, ANY) checks."""
    limits = {"responses_per_second": 1, "window": 15, "slip": 2}
    async with running(
        [make_index([row("10.0.0.1")])], engine="native", rate_limit=limits
    ) as server:
        assert server.native is not None and isinstance(server.limiter, NativeRateLimiter)
        await udp_flood(server, f"1.0.0.10.{ZONE}", "127.0.5.2", 10)
        answer = server.native.answer(dns.message.make_query(f"1.0.0.10.{ZONE}", "A").to_wire())
        assert answer is not None
        assert server.limiter.check("127.0.5.9", answer, ZONE) != Action.SEND  # same /24
        assert server.limiter.check("127.0.6.9", answer, ZONE) == Action.SEND


async def test_over_ipv6_an_allowed_source_is_answered_and_limited_in_c() -> None:
    zones = [zone_settings(access={"allow": ["::1/128"]})]
    limits = {"responses_per_second": 1, "window": 15, "slip": 2}
    async with running(
        [make_index([row("10.0.0.1")])],
        zones=zones,
        engine="native",
        listen=["[::1]:0"],
        rate_limit=limits,
    ) as server:
        before = handed_to_python(server)
        replies = await udp_flood(server, f"1.0.0.10.{ZONE}", "::1", 20)
        assert handed_to_python(server) == before + 1  # the SOA probe
        full = [r for r in replies if r.answer]
        assert len(full) == 1 and len(replies) == 1 + 19 // 2  # one answer, then every 2nd slips
        counts = server.access.counts
        assert counts[ZONE, Verdict.ALLOWED] == 20
        assert (counts[ZONE, Verdict.SLIPPED], counts[ZONE, Verdict.RATE_LIMITED]) == (9, 10)
