"""Response rate limiting over real UDP sockets: one client network flooding gets the rate,
then drops and truncated slips; another network, TCP, exempt networks are untouched."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest

from dnsbl.config import RateLimitSettings
from dnsbl.dns.access import Verdict
from dnsbl.dns.ratelimit import Action, RateLimiter, answer_class, truncated
from tests.dns_support import (
    ZONE,
    answers,
    ask,
    handed_to_python,
    make_index,
    row,
    running,
    udp_flood,
    zone_settings,
)

# Both engines enforce the rules: under native, rate limiting is decided in C (none of the
# flood is handed to the Python path), on the same buckets as what it does hand over.
pytestmark = pytest.mark.usefixtures("dns_engine")

NAME = "1.0.0.10." + ZONE
FLOOD = 40
LIMITS = {"responses_per_second": 1, "window": 15, "slip": 2}


def _split(replies: list[dns.message.Message]) -> tuple[int, int]:
    """(full answers, truncated ones)."""
    slipped = [r for r in replies if r.flags & dns.flags.TC]
    assert all(not r.answer and r.question for r in slipped)
    assert all(answers(r, "A") == ["127.0.0.2"] for r in replies if r not in slipped)
    return len(replies) - len(slipped), len(slipped)


async def test_a_flooding_network_is_limited_and_another_is_untouched() -> None:
    async with running([make_index([row("10.0.0.1")])], rate_limit=LIMITS) as server:
        before = handed_to_python(server)
        answered, slipped = _split(await udp_flood(server, NAME, "127.0.0.2", FLOOD))
        if before is not None:  # native: only the SOA probe went to Python
            assert handed_to_python(server) == before + 1
        counts = server.access.counts
        limited = counts[ZONE, Verdict.SLIPPED] + counts[ZONE, Verdict.RATE_LIMITED]
        assert answered == FLOOD - limited and answered >= 1
        assert limited > FLOOD // 2  # at one answer a second, a burst of 40 is mostly held
        # slip = 2: every second answer held back goes out truncated, the others not at all
        assert slipped == counts[ZONE, Verdict.SLIPPED] == limited // 2
        # Another /24 (127.0.1.0/24), at the same moment, gets its answer; so does TCP.
        other = await ask(server, NAME, source="127.0.1.2")
        assert answers(other, "A") == ["127.0.0.2"]
        same_net = await ask(server, NAME, source="127.0.0.3", tcp=True)
        assert answers(same_net, "A") == ["127.0.0.2"]


@pytest.mark.parametrize(
    "limits",
    [{**LIMITS, "exempt": ["127.0.0.0/24"]}, {**LIMITS, "log_only": True}],
    ids=["exempt", "log_only"],
)
async def test_exempt_networks_and_log_only_get_every_answer(limits: dict[str, object]) -> None:
    async with running([make_index([row("10.0.0.1")])], rate_limit=limits) as server:
        before = handed_to_python(server)
        answered, slipped = _split(await udp_flood(server, NAME, "127.0.0.2", FLOOD))
        assert (answered, slipped) == (FLOOD, 0)
        assert before is None or handed_to_python(server) == before + 1  # the probe
        held = server.access.counts[ZONE, Verdict.RATE_LIMITED]
        assert held == 0 if "exempt" in limits else held > 0  # log_only: counted all the same


async def test_slip_zero_drops_all_and_the_window_ends_it() -> None:
    limiter = RateLimiter(RateLimitSettings(responses_per_second=2, window=3, slip=0))
    answer = dns.message.make_response(dns.message.make_query(NAME, "A"))
    answer.answer.append(dns.rrset.from_text(NAME + ".", 60, "IN", "A", "127.0.0.2"))
    wire = answer.to_wire()
    actions = [limiter.check("192.0.2.1", wire, ZONE, now=100.0) for _ in range(10)]
    assert actions == [Action.SEND] * 2 + [Action.DROP] * 8
    assert limiter.check("192.0.2.99", wire, ZONE, now=100.0) == Action.DROP  # same /24
    assert limiter.check("192.0.3.1", wire, ZONE, now=100.0) == Action.SEND
    assert limiter.check("192.0.2.1", wire, ZONE, proven=True, now=100.0) == Action.SEND
    # The excess is remembered for `window` seconds: quiet that long, it answers again.
    assert limiter.check("192.0.2.1", wire, ZONE, now=102.0) == Action.DROP
    assert limiter.check("192.0.2.1", wire, ZONE, now=106.5) == Action.SEND
    # /56 for IPv6
    v6 = [limiter.check(f"2001:db8:0:{n:x}::1", wire, ZONE, now=200.0) for n in (0, 0xFF, 0x100)]
    assert v6 == [Action.SEND, Action.SEND, Action.SEND]
    assert limiter.check("2001:db8:0:ab::1", wire, ZONE, now=200.0) == Action.DROP
    short = dns.message.from_wire(truncated(wire))
    assert short.flags & dns.flags.TC and not short.answer and short.question
    assert answer_class(wire, ZONE) != answer_class(truncated(wire), ZONE)
    # NXDOMAIN answers of a zone count together, whatever the name (random-name floods).
    nx = [dns.message.make_response(dns.message.make_query(f"{n}.{ZONE}", "A")) for n in (1, 2)]
    for reply in nx:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    assert answer_class(nx[0].to_wire(), ZONE) == answer_class(nx[1].to_wire(), ZONE)


async def test_sources_in_an_allow_list_are_limited_all_the_same() -> None:
    """`allow` says who may ask, not who may flood: only `exempt` exempts."""
    zones = [zone_settings(access={"allow": ["127.0.0.0/24"]})]
    async with running([make_index([row("10.0.0.1")])], zones=zones, rate_limit=LIMITS) as server:
        before = handed_to_python(server)
        answered, slipped = _split(await udp_flood(server, NAME, "127.0.0.2", FLOOD))
        assert answered < FLOOD and slipped > 0
        assert before is None or handed_to_python(server) == before + 1  # the probe
        assert server.access.counts[ZONE, Verdict.ALLOWED] == FLOOD  # (the apex probe is not)
