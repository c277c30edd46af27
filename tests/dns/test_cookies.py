"""DNS cookies (RFC 7873, server cookies as RFC 9018) over real sockets: a client cookie gets a
server cookie back; that server cookie proves the source and exempts it from rate limiting; a
bad one is answered with a fresh one, or BADCOOKIE over UDP when rate limiting is on."""

from __future__ import annotations

import base64

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from dnsbl.config import CookieSettings
from dnsbl.dns.cookies import Cookies, CookieState, server_cookie, siphash24
from dnsbl.dns.server import DnsServer
from tests.dns_support import (
    ZONE,
    answers,
    ask,
    handed_to_python,
    make_index,
    row,
    running,
    udp_flood,
)

# Both engines enforce the rules: under native, a query with a cookie is handed to the Python
# path (the C loop takes only a bare OPT), which checks it on the engine's own buckets.
pytestmark = pytest.mark.usefixtures("dns_engine")

NAME = "1.0.0.10." + ZONE
CLIENT = bytes.fromhex("2464c4abcf10c957")
SECRET = base64.b64encode(bytes(range(16))).decode()


def test_siphash_and_the_rfc_9018_test_vectors() -> None:
    assert siphash24(bytes(range(16)), bytes(range(15))).hex() == "e545be4961ca29a1"
    secret = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")
    cookie = server_cookie(secret, CLIENT, "198.51.100.100", 1559731985)
    assert cookie.hex() == "010000005cf79f111f8130c3eee29480"  # RFC 9018 appendix A.1


def test_a_cookie_verifies_for_its_lifetime_and_one_rotation() -> None:
    cookies = Cookies(CookieSettings(secret=SECRET, rotate=600))
    made = CLIENT + cookies.make(CLIENT, "192.0.2.1", now=10_000)
    assert cookies.check(made, "192.0.2.1", now=10_100).state is CookieState.VALID
    assert cookies.check(made, "192.0.2.1", now=10_700).state is CookieState.VALID  # rotated
    assert cookies.check(made, "192.0.2.1", now=11_300).state is CookieState.BAD  # twice
    assert cookies.check(made, "192.0.2.2", now=10_100).state is CookieState.BAD  # elsewhere
    other = Cookies(CookieSettings(secret=SECRET, rotate=600))  # another node, same secret
    assert other.check(made, "192.0.2.1", now=10_100).state is CookieState.VALID
    assert Cookies(CookieSettings()).check(made, "192.0.2.1", now=10_100).state is CookieState.BAD
    long_rotation = Cookies(CookieSettings(secret=SECRET, rotate=86400))
    old = CLIENT + long_rotation.make(CLIENT, "192.0.2.1", now=10_000)
    assert long_rotation.check(old, "192.0.2.1", now=13_700).state is CookieState.BAD  # > 1 h


async def _ask_cookie(
    server: DnsServer, server_part: bytes = b"", *, tcp: bool = False, source: str = "127.0.0.2"
) -> dns.message.Message:
    option = dns.edns.CookieOption(CLIENT, server_part)
    return await ask(server, NAME, tcp=tcp, source=source, options=[option])


def _cookie_of(reply: dns.message.Message) -> dns.edns.CookieOption:
    (option,) = [o for o in reply.options if o.otype == dns.edns.OptionType.COOKIE]
    assert isinstance(option, dns.edns.CookieOption)
    return option


@pytest.mark.parametrize("tcp", [False, True])
async def test_a_client_cookie_gets_a_server_cookie(tcp: bool) -> None:
    async with running([make_index([row("10.0.0.1")])]) as server:
        first = await _ask_cookie(server, tcp=tcp)
        assert answers(first, "A") == ["127.0.0.2"]
        cookie = _cookie_of(first)
        assert cookie.client == CLIENT and len(cookie.server) == 16 and cookie.server[0] == 1
        again = await _ask_cookie(server, cookie.server, tcp=tcp)
        assert answers(again, "A") == ["127.0.0.2"] and _cookie_of(again).client == CLIENT
        # Without rate limiting a bad server cookie is answered, with a fresh one.
        bad = await _ask_cookie(server, bytes(16), tcp=tcp)
        assert answers(bad, "A") == ["127.0.0.2"] and _cookie_of(bad).server != bytes(16)


async def test_a_malformed_cookie_is_formerr() -> None:
    async with running([make_index([row("10.0.0.1")])]) as server:
        query = dns.message.make_query(NAME, "A", use_edns=0)
        query.use_edns(0, options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"short")])
        host, port = server.endpoints[0]
        reply = await dns.asyncquery.udp(query, host, port=port, timeout=3)
        assert reply.rcode() == dns.rcode.FORMERR


LIMITS = {"responses_per_second": 1, "window": 15, "slip": 2}


async def test_a_valid_server_cookie_is_exempt_from_rate_limiting() -> None:
    async with running([make_index([row("10.0.0.1")])], rate_limit=LIMITS) as server:
        cookie = _cookie_of(await _ask_cookie(server)).server
        proven = [dns.edns.CookieOption(CLIENT, cookie)]
        before = handed_to_python(server)
        replies = await udp_flood(server, NAME, "127.0.0.2", 40, proven)
        assert len(replies) == 40
        assert before is None or handed_to_python(server) == before + 41  # and the probe
        assert all(answers(r, "A") == ["127.0.0.2"] and not r.flags & dns.flags.TC for r in replies)
        # The same flood with a client cookie alone (nothing proven) is limited. (From
        # another network: the probe that ends a flood is answered once per network here.)
        unproven = [dns.edns.CookieOption(CLIENT, b"")]
        replies = await udp_flood(server, NAME, "127.0.3.2", 40, unproven)
        assert sum(1 for r in replies if answers(r, "A") and not r.flags & dns.flags.TC) < 40


@pytest.mark.parametrize("tcp", [False, True])
async def test_with_rate_limiting_a_bad_cookie_gets_badcookie_over_udp(tcp: bool) -> None:
    async with running([make_index([row("10.0.0.1")])], rate_limit=LIMITS) as server:
        reply = await _ask_cookie(server, bytes(16), tcp=tcp, source="127.0.2.2")
        fresh = _cookie_of(reply).server
        assert fresh != bytes(16) and len(fresh) == 16
        if tcp:
            assert answers(reply, "A") == ["127.0.0.2"]
            return
        assert reply.rcode() == dns.rcode.BADCOOKIE and not reply.answer
        retried = await _ask_cookie(server, fresh, source="127.0.2.2")
        assert answers(retried, "A") == ["127.0.0.2"]
