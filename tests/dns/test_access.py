"""Query access per zone: allow list, denied as REFUSED or as a code, access keys with quotas.
Real UDP and TCP queries from several loopback source addresses (127.0.0.x)."""

from __future__ import annotations

import dns.message
import dns.rcode
import pytest

from dnsbl.dns.access import KeyEntry, Verdict, key_digest, utc_day
from dnsbl.dns.server import DnsServer
from dnsbl.dns.wire import answer_fast
from tests.dns_support import (
    ZONE,
    answers,
    ask,
    handed_to_python,
    make_index,
    row,
    running,
    zone_settings,
)

# Both engines enforce the rules: under native, an allowed source is answered in C, and
# everyone else (and every key name) is handed to the Python path, which refuses or codes.
pytestmark = pytest.mark.usefixtures("dns_engine")

LISTED = "1.0.0.10"
V6_LISTED = "1." + "0." * 23 + "8.b.d.0.1.0.0.2"  # 2001:db8::1
KEY = "k" * 26 + "234567"  # the shape `dnsbl accesskey create` gives: 32 of [a-z2-7]
ROWS = [row("10.0.0.1"), row("2001:db8::/32")]
INSIDE, OUTSIDE = "127.0.0.2", "127.0.0.3"


def _private(**access: object) -> list:
    return [zone_settings(access={"allow": ["127.0.0.2/32", "::1/128"], **access})]


def _give_key(server: DnsServer, quota: int | None = None, used: int = 0) -> None:
    server.access.keys.replace({key_digest(KEY): KeyEntry("partner", quota, used)}, utc_day())


@pytest.mark.parametrize("tcp", [False, True])
async def test_allowed_sources_are_answered_and_others_refused(tcp: bool) -> None:
    async with running([make_index(ROWS)], zones=_private()) as server:
        before = handed_to_python(server)
        inside = await ask(server, f"{LISTED}.{ZONE}", tcp=tcp, source=INSIDE)
        assert answers(inside, "A") == ["127.0.0.2"]
        assert before is None or handed_to_python(server) == before  # answered in C
        outside = await ask(server, f"{LISTED}.{ZONE}", tcp=tcp, source=OUTSIDE)
        assert outside.rcode() == dns.rcode.REFUSED and not outside.answer
        if before is not None and not tcp:
            assert handed_to_python(server) == before + 1  # decided in Python
        nx = await ask(server, f"9.9.9.9.{ZONE}", tcp=tcp, source=OUTSIDE)
        assert nx.rcode() == dns.rcode.REFUSED  # not even whether a name is listed
        # The apex is what any resolver must reach first: answered to everyone.
        apex = await ask(server, ZONE, "SOA", tcp=tcp, source=OUTSIDE)
        assert apex.rcode() == dns.rcode.NOERROR and answers(apex, "SOA")
        counts = server.access.counts
        assert counts[ZONE, Verdict.ALLOWED] == 1 and counts[ZONE, Verdict.DENIED] == 2


async def test_allowed_sources_take_the_hot_path_and_the_others_the_general_one() -> None:
    async with running([make_index(ROWS)], zones=_private(keys=True)) as server:
        packet = dns.message.make_query(f"{LISTED}.{ZONE}", "A").to_wire()
        assert answer_fast(packet, server.table, 1232, None, INSIDE) is not None
        assert server.access.counts[ZONE, Verdict.ALLOWED] == 1
        for peer in (OUTSIDE, None):
            assert answer_fast(packet, server.table, 1232, None, peer) is None
        keyed = dns.message.make_query(f"{LISTED}.{KEY}.{ZONE}", "A").to_wire()
        assert answer_fast(keyed, server.table, 1232, None, INSIDE) is None


async def test_open_zones_answer_everyone_on_the_hot_path() -> None:
    async with running([make_index(ROWS)]) as server:
        for source in (INSIDE, OUTSIDE):
            reply = await ask(server, f"{LISTED}.{ZONE}", source=source)
            assert answers(reply, "A") == ["127.0.0.2"]
        assert not server.access.counts


async def test_denied_code_answers_127_255_255_254_and_says_why() -> None:
    async with running([make_index(ROWS)], zones=_private(denied="code")) as server:
        a = await ask(server, f"{LISTED}.{ZONE}", source=OUTSIDE)
        assert a.rcode() == dns.rcode.NOERROR and answers(a, "A") == ["127.255.255.254"]
        txt = await ask(server, f"9.9.9.9.{ZONE}", "TXT", source=OUTSIDE)
        (text,) = answers(txt, "TXT")
        assert "may not query" in text
        other = await ask(server, f"{LISTED}.{ZONE}", "AAAA", source=OUTSIDE)
        assert other.rcode() == dns.rcode.NOERROR and not other.answer and other.authority
        inside = await ask(server, f"{LISTED}.{ZONE}", source=INSIDE)
        assert answers(inside, "A") == ["127.0.0.2"]


@pytest.mark.parametrize("tcp", [False, True])
async def test_a_key_is_answered_from_any_source_as_the_name_without_it(tcp: bool) -> None:
    async with running([make_index(ROWS)], zones=_private(keys=True)) as server:
        _give_key(server)
        for name in (f"{LISTED}.{KEY}.{ZONE}", f"{LISTED}.{KEY.upper()}.{ZONE}"):
            reply = await ask(server, name, tcp=tcp, source=OUTSIDE)
            assert answers(reply, "A") == ["127.0.0.2"]
        v6 = await ask(server, f"{V6_LISTED}.{KEY}.{ZONE}", tcp=tcp, source=OUTSIDE)
        assert answers(v6, "A") == ["127.0.0.2"]
        nx = await ask(server, f"9.9.9.9.{KEY}.{ZONE}", tcp=tcp, source=OUTSIDE)
        assert nx.rcode() == dns.rcode.NXDOMAIN
        assert nx.authority[0].name.to_text() == f"{KEY}.{ZONE}."
        # A QNAME-minimising resolver asks KEY.<zone> and what lies between: like the apex.
        for rdtype in ("SOA", "NS"):
            apex = await ask(server, f"{KEY}.{ZONE}", rdtype, tcp=tcp, source=OUTSIDE)
            assert apex.rcode() == dns.rcode.NOERROR and answers(apex, rdtype)
        between = await ask(server, f"10.{KEY}.{ZONE}", "NS", tcp=tcp, source=OUTSIDE)
        assert between.rcode() == dns.rcode.NOERROR and not between.answer
        assert server.access.keys.answered["partner"] == 7
        assert server.access.counts[ZONE, Verdict.KEY] == 7
        # Without the key the outside source is still refused.
        plain = await ask(server, f"{LISTED}.{ZONE}", tcp=tcp, source=OUTSIDE)
        assert plain.rcode() == dns.rcode.REFUSED


async def test_a_key_name_is_decided_in_python_even_from_an_allowed_source() -> None:
    async with running([make_index(ROWS)], zones=_private(keys=True)) as server:
        _give_key(server)
        before = handed_to_python(server)
        reply = await ask(server, f"{LISTED}.{KEY}.{ZONE}", source=INSIDE)
        assert answers(reply, "A") == ["127.0.0.2"]
        assert server.access.counts[ZONE, Verdict.KEY] == 1  # the key was used, not the list
        assert before is None or handed_to_python(server) == before + 1


async def test_an_unknown_or_revoked_key_is_refused() -> None:
    async with running([make_index(ROWS)], zones=_private(keys=True, denied="code")) as server:
        _give_key(server)
        assert answers(await ask(server, f"{LISTED}.{KEY}.{ZONE}", source=OUTSIDE), "A")
        server.access.keys.replace({}, utc_day())  # revoked: the follower drops it
        for name in (f"{LISTED}.{KEY}.{ZONE}", f"{LISTED}.{'x' * 32}.{ZONE}"):
            reply = await ask(server, name, source=OUTSIDE)
            assert reply.rcode() == dns.rcode.REFUSED  # REFUSED even with denied = "code"


async def test_over_its_daily_quota_a_key_gets_127_255_255_255() -> None:
    async with running([make_index(ROWS)], zones=_private(keys=True)) as server:
        _give_key(server, quota=3, used=1)  # one already answered by another node today
        name = f"{LISTED}.{KEY}.{ZONE}"
        for _ in range(2):
            assert answers(await ask(server, name, source=OUTSIDE), "A") == ["127.0.0.2"]
        over = await ask(server, name, source=OUTSIDE)
        assert answers(over, "A") == ["127.255.255.255"]
        (text,) = answers(await ask(server, name, "TXT", source=OUTSIDE), "TXT")
        assert "quota" in text
        assert server.access.counts[ZONE, Verdict.OVER_QUOTA] == 2
        # Only answered queries are use; the next UTC day starts afresh.
        assert sum(server.access.keys.pending.values()) == 2
        keys = server.access.keys
        keys.replace({key_digest(KEY): KeyEntry("partner", 3, 3)}, utc_day() - 1)
        keys.take_pending()
        assert answers(await ask(server, name, source=OUTSIDE), "A") == ["127.0.0.2"]
