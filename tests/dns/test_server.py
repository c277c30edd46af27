"""The DNS server answers RBL queries as RFC 5782 and resolvers expect, over real sockets."""

from __future__ import annotations

import asyncio
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsbl.dns.server import DnsServer
from tests.dns_support import (
    ZONE,
    answers,
    ask,
    make_index,
    row,
    running,
    zone_settings,
)

pytestmark = pytest.mark.usefixtures("dns_engine")  # each engine in turn

V6_NAME = "1." + "0." * 23 + "8.b.d.0.1.0.0.2." + ZONE  # 2001:db8::1

ROWS = [
    row("10.0.0.1"),
    row("192.0.2.0/24", "relay-output", txt="Net $"),
    row("192.0.2.66", excluded=True, category="relay-output"),
    row("2001:db8::/32", code="127.0.0.4"),
]


@pytest.fixture
async def server() -> DnsServer:  # type: ignore[misc]
    async with running([make_index(ROWS, serial=7)]) as server:
        yield server


@pytest.mark.parametrize("tcp", [False, True])
async def test_listed_ipv4_answers_a_and_txt(server: DnsServer, tcp: bool) -> None:
    reply = await ask(server, "1.0.0.10." + ZONE, "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert answers(reply, "A") == ["127.0.0.2"]
    assert reply.answer[0].ttl == 2100
    assert reply.flags & dns.flags.AA and not reply.flags & dns.flags.RA
    txt = await ask(server, "1.0.0.10." + ZONE, "TXT", tcp=tcp)
    assert answers(txt, "TXT") == ['"Listed: see https://bl.example.org/lookup/10.0.0.1"']


async def test_rd_is_copied_and_ra_stays_clear(server: DnsServer) -> None:
    with_rd = await ask(server, "1.0.0.10." + ZONE, rd=True)
    without = await ask(server, "1.0.0.10." + ZONE, rd=False)
    assert with_rd.flags & dns.flags.RD and not without.flags & dns.flags.RD
    assert not (with_rd.flags | without.flags) & dns.flags.RA


async def test_network_listing_renders_the_queried_address(server: DnsServer) -> None:
    reply = await ask(server, "7.2.0.192." + ZONE, "ANY", tcp=True)
    assert answers(reply, "A") == ["127.0.0.3"]
    assert answers(reply, "TXT") == ['"Net 192.0.2.7"']


@pytest.mark.parametrize("edns", [None, 0])
async def test_any_is_minimal_over_udp_and_full_over_tcp(
    server: DnsServer, edns: int | None
) -> None:
    """RFC 8482: over UDP, ANY gets one RRset (a reflection attack's favourite question);
    over TCP, whose source cannot be spoofed, everything."""
    udp = await ask(server, "7.2.0.192." + ZONE, "ANY", edns=edns)
    assert [rrset.rdtype for rrset in udp.answer] == [dns.rdatatype.A]
    tcp = await ask(server, "7.2.0.192." + ZONE, "ANY", tcp=True, edns=edns)
    assert {rrset.rdtype for rrset in tcp.answer} == {dns.rdatatype.A, dns.rdatatype.TXT}
    apex_udp = await ask(server, ZONE, "ANY", edns=edns)
    assert [rrset.rdtype for rrset in apex_udp.answer] == [dns.rdatatype.SOA]
    apex_tcp = await ask(server, ZONE, "ANY", tcp=True, edns=edns)
    assert {rrset.rdtype for rrset in apex_tcp.answer} == {dns.rdatatype.SOA, dns.rdatatype.NS}


async def test_exclusion_is_not_listed(server: DnsServer) -> None:
    reply = await ask(server, "66.2.0.192." + ZONE)
    assert reply.rcode() == dns.rcode.NXDOMAIN


async def test_listed_ipv6_and_nibble_case(server: DnsServer) -> None:
    reply = await ask(server, V6_NAME, "A")
    assert answers(reply, "A") == ["127.0.0.4"]
    upper = await ask(server, V6_NAME.replace("b.d", "B.D"), "TXT")
    assert answers(upper, "TXT") == ['"Listed: see https://bl.example.org/lookup/2001:db8::1"']


@pytest.mark.parametrize("tcp", [False, True])
async def test_one_a_per_distinct_code_and_one_txt_per_distinct_text(tcp: bool) -> None:
    rows = [
        row("198.51.100.1", "open-relay"),
        row("198.51.100.0/24", "relay-output", txt="output $"),
        row("198.51.100.1", "spam", code="127.0.0.2", txt="spam $"),
        # the same text from a fourth category: an RRset has no duplicate records
        row("198.51.100.1", "spam+2", code="127.0.0.3", txt="spam $"),
    ]
    async with running([make_index(rows)]) as server:
        reply = await ask(server, "1.100.51.198." + ZONE, "A", tcp=tcp)
        assert sorted(answers(reply, "A")) == ["127.0.0.2", "127.0.0.3"]
        txt = await ask(server, "1.100.51.198." + ZONE, "TXT", tcp=tcp)
        assert sorted(answers(txt, "TXT")) == sorted(
            [
                '"Listed: see https://bl.example.org/lookup/198.51.100.1"',
                '"output 198.51.100.1"',
                '"spam 198.51.100.1"',
            ]
        )


async def test_long_txt_is_split_into_255_byte_strings() -> None:
    template = "x" * 600 + " $"
    async with running([make_index([row("10.0.0.1", txt=template)])]) as server:
        reply = await ask(server, "1.0.0.10." + ZONE, "TXT", tcp=True)
        strings = reply.answer[0][0].strings
        assert [len(s) for s in strings] == [255, 255, 99]
        assert b"".join(strings).decode() == "x" * 600 + " 10.0.0.1"


async def test_listing_without_text_answers_no_txt() -> None:
    async with running([make_index([row("10.0.0.1", txt="")])]) as server:
        reply = await ask(server, "1.0.0.10." + ZONE, "TXT")
        assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
        assert reply.authority[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize("rdtype", ["AAAA", "MX", "NS", "SOA"])
async def test_other_type_on_listed_name_is_nodata(server: DnsServer, rdtype: str) -> None:
    reply = await ask(server, "1.0.0.10." + ZONE, rdtype)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize("tcp", [False, True])
async def test_not_listed_is_nxdomain_with_soa(server: DnsServer, tcp: bool) -> None:
    reply = await ask(server, "2.0.0.10." + ZONE, tcp=tcp)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert not reply.answer
    (soa_set,) = reply.authority
    assert soa_set.rdtype == dns.rdatatype.SOA and soa_set.ttl == 300
    assert soa_set.name.to_text() == ZONE + "."
    soa = soa_set[0]
    assert (soa.serial, soa.minimum) == (7, 300)
    assert reply.flags & dns.flags.AA


@pytest.mark.parametrize(
    ("name", "rcode"),
    [
        ("10." + ZONE, dns.rcode.NOERROR),  # 10.0.0.1 below it
        ("0.10." + ZONE, dns.rcode.NOERROR),
        ("0.0.10." + ZONE, dns.rcode.NOERROR),
        ("11." + ZONE, dns.rcode.NXDOMAIN),
        ("1.0.10." + ZONE, dns.rcode.NXDOMAIN),
        ("127." + ZONE, dns.rcode.NOERROR),  # 127.0.0.2 is always there
        ("0.0.127." + ZONE, dns.rcode.NOERROR),
        ("2." + ZONE, dns.rcode.NOERROR),  # nibble prefix of 2001:db8::/32
        ("1.0.0.2." + ZONE, dns.rcode.NOERROR),  # the same, four one-digit labels
        ("8.b.d.0.1.0.0.2." + ZONE, dns.rcode.NOERROR),
        ("9.b.d.0.1.0.0.2." + ZONE, dns.rcode.NXDOMAIN),
        ("3." + ZONE, dns.rcode.NXDOMAIN),
        ("f." + ZONE, dns.rcode.NXDOMAIN),
        ("0." + ZONE, dns.rcode.NOERROR),  # ::ffff:7f00:2
        ("www." + ZONE, dns.rcode.NXDOMAIN),
        ("1.1.0.0.10." + ZONE, dns.rcode.NXDOMAIN),
        ("01.0.0.10." + ZONE, dns.rcode.NXDOMAIN),
        ("256.0.0.10." + ZONE, dns.rcode.NXDOMAIN),
    ],
)
async def test_empty_non_terminals(server: DnsServer, name: str, rcode: int) -> None:
    reply = await ask(server, name, "A")
    assert reply.rcode() == rcode
    assert not reply.answer
    assert [rrset.rdtype for rrset in reply.authority] == [dns.rdatatype.SOA]


@pytest.mark.parametrize(
    ("name", "listed"),
    [
        ("2.0.0.127", True),
        ("1.0.0.127", False),
        ("2.0.0.0.0.0.f.7.f.f.f.f." + "0." * 19 + "0", True),  # ::ffff:7f00:2
        ("1.0.0.0.0.0.f.7.f.f.f.f." + "0." * 19 + "0", False),  # ::ffff:7f00:1
        ("1." + "0." * 30 + "0", False),  # ::1
    ],
)
async def test_rfc5782_test_addresses(name: str, listed: bool) -> None:
    everything = [row("127.0.0.0/8"), row("::/0")]
    for rows in ([], everything):
        async with running([make_index(rows)]) as server:
            reply = await ask(server, f"{name}.{ZONE}", "ANY", tcp=True)
            if listed:
                assert answers(reply, "A") == ["127.0.0.2"]
                assert answers(reply, "TXT")
            else:
                assert reply.rcode() == dns.rcode.NXDOMAIN


async def test_question_case_is_echoed(server: DnsServer) -> None:
    name = "1.0.0.10.Bl.EXAMPLE.org."
    reply = await ask(server, name, "A")
    assert reply.question[0].name.to_text() == name
    assert reply.answer[0].name.to_text() == name
    nx = await ask(server, "2.0.0.10.Bl.EXAMPLE.org.", "A", tcp=True)
    assert nx.question[0].name.to_text() == "2.0.0.10.Bl.EXAMPLE.org."


async def test_longest_zone_suffix_wins() -> None:
    parent = zone_settings()
    child = zone_settings("v2." + ZONE, ttl=60)
    async with running(
        [make_index([row("10.0.0.1")], 3), make_index([row("10.0.0.2")], 9, child)],
        zones=[parent, child],
    ) as server:
        reply = await ask(server, "2.0.0.10.v2." + ZONE)
        assert answers(reply, "A") == ["127.0.0.2"] and reply.answer[0].ttl == 60
        nx = await ask(server, "1.0.0.10.v2." + ZONE)
        assert nx.rcode() == dns.rcode.NXDOMAIN
        assert nx.authority[0].name.to_text() == "v2." + ZONE + "."
        assert nx.authority[0][0].serial == 9
        parent_answer = await ask(server, "1.0.0.10." + ZONE)
        assert answers(parent_answer, "A") == ["127.0.0.2"]


async def test_apex_soa_and_ns(server: DnsServer) -> None:
    reply = await ask(server, ZONE, "SOA")
    soa = reply.answer[0][0]
    assert soa.mname.to_text() == "ns1.example.org."
    assert soa.rname.to_text() == "hostmaster.example.org."
    assert (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum) == (
        7,
        3600,
        600,
        604800,
        300,
    )
    ns = await ask(server, ZONE.upper(), "NS", tcp=True)
    assert answers(ns, "NS") == ["ns1.example.org.", "ns2.example.org."]
    assert ns.flags & dns.flags.AA
    other = await ask(server, ZONE, "A")
    assert other.rcode() == dns.rcode.NOERROR and not other.answer
    assert other.authority[0].rdtype == dns.rdatatype.SOA


@pytest.mark.parametrize("name", ["example.org", "2.0.0.127.example.com", "org", "."])
async def test_names_outside_every_zone_are_refused(server: DnsServer, name: str) -> None:
    reply = await ask(server, name)
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.AA
    assert server.counts[("-", "A", "REFUSED")] >= 1


async def test_edns(server: DnsServer) -> None:
    with_edns = await ask(server, "1.0.0.10." + ZONE, edns=0, payload=4096)
    assert with_edns.edns == 0 and with_edns.payload == 1232
    without = await ask(server, "1.0.0.10." + ZONE, edns=None)
    assert without.edns == -1
    badvers = await ask(server, "1.0.0.10." + ZONE, edns=1)
    assert badvers.rcode() == dns.rcode.BADVERS and badvers.edns == 0


async def test_edns_options_are_ignored(server: DnsServer) -> None:
    import dns.edns

    query = dns.message.make_query(
        "1.0.0.10." + ZONE,
        "A",
        use_edns=0,
        options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)],
    )
    host, port = server.endpoints[0]
    reply = await dns.asyncquery.udp(query, host, port=port, timeout=3)
    assert answers(reply, "A") == ["127.0.0.2"] and reply.edns == 0


async def test_big_answer_is_truncated_over_udp_and_whole_over_tcp() -> None:
    rows = [row("10.0.0.1", f"c{i}", txt=f"{i:03d} " + "y" * 200 + " $") for i in range(8)]
    async with running([make_index(rows)]) as server:
        small = await ask(server, "1.0.0.10." + ZONE, "TXT", edns=None)
        assert small.flags & dns.flags.TC and not small.answer
        assert small.question[0].name.to_text() == "1.0.0.10." + ZONE + "."
        capped = await ask(server, "1.0.0.10." + ZONE, "TXT", edns=0, payload=65000)
        assert capped.flags & dns.flags.TC and capped.edns == 0  # our 1232 caps it
        whole = await ask(server, "1.0.0.10." + ZONE, "TXT", tcp=True, edns=None)
        assert not whole.flags & dns.flags.TC and len(answers(whole, "TXT")) == 8
        a_only = await ask(server, "1.0.0.10." + ZONE, "A", edns=None)
        assert not a_only.flags & dns.flags.TC


async def test_publish_is_picked_up_by_the_next_query(server: DnsServer) -> None:
    assert (await ask(server, "2.0.0.10." + ZONE)).rcode() == dns.rcode.NXDOMAIN
    server.publish(make_index([*ROWS, row("10.0.0.2")], serial=8))
    reply = await ask(server, "2.0.0.10." + ZONE)
    assert answers(reply, "A") == ["127.0.0.2"]
    soa = await ask(server, ZONE, "SOA")
    assert soa.answer[0][0].serial == 8


async def test_no_moment_without_an_answer_while_indexes_swap(server: DnsServer) -> None:
    indexes = [make_index([row("10.0.0.2")] if i % 2 else [], serial=10 + i) for i in range(40)]
    stop = False

    def publisher() -> None:
        # From another thread, as the zone follower publishes; a thousand swaps a second or
        # so (the follower makes at most four), and a pause that lets the server's thread
        # have the GIL: a loop that never lets go would starve it whatever it did.
        i = 0
        while not stop:
            server.publish(indexes[i % len(indexes)])
            i += 1
            time.sleep(0.0005)

    thread = asyncio.get_running_loop().run_in_executor(None, publisher)
    seen = set()
    try:
        for _ in range(150):
            reply = await ask(server, "2.0.0.10." + ZONE)
            assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
            seen.add(reply.rcode())
            if reply.rcode() == dns.rcode.NOERROR:
                assert answers(reply, "A") == ["127.0.0.2"]
            else:
                assert reply.authority[0].rdtype == dns.rdatatype.SOA
    finally:
        stop = True
        await thread
    assert seen == {dns.rcode.NOERROR, dns.rcode.NXDOMAIN}


async def test_zone_without_index_is_servfail() -> None:
    async with running([]) as server:
        reply = await ask(server, "2.0.0.127." + ZONE)
        assert reply.rcode() == dns.rcode.SERVFAIL


async def test_counts_by_zone_qtype_and_rcode_and_times_answers(server: DnsServer) -> None:
    await ask(server, "1.0.0.10." + ZONE)
    await ask(server, "1.0.0.10." + ZONE, "TXT")
    await ask(server, "2.0.0.10." + ZONE, tcp=True)
    await ask(server, ZONE, "SOA")
    await ask(server, "example.com")
    await ask(server, "1.0.0.10." + ZONE, "MX")
    await ask(server, "1.0.0.10." + ZONE, "HINFO")  # a type the labels do not name
    assert dict(server.counts) == {
        (ZONE, "A", "NOERROR"): 1,  # the hot path
        (ZONE, "TXT", "NOERROR"): 1,
        (ZONE, "A", "NXDOMAIN"): 1,
        (ZONE, "SOA", "NOERROR"): 1,  # the general path
        ("-", "A", "REFUSED"): 1,
        (ZONE, "OTHER", "NOERROR"): 2,
    }
    latency = server.latency.snapshot()
    udp_buckets, udp_seconds = latency["udp"]
    tcp_buckets, tcp_seconds = latency["tcp"]
    assert (sum(udp_buckets), sum(tcp_buckets)) == (6, 1)  # every answer timed, once
    assert 0 < udp_seconds < 6 and 0 < tcp_seconds < 1


async def test_same_port_for_udp_and_tcp_on_every_listen_address() -> None:
    async with running([make_index([])], listen=["127.0.0.1:0", "127.0.0.2:0"]) as server:
        assert [host for host, _ in server.endpoints] == ["127.0.0.1", "127.0.0.2"]
        for host, port in server.endpoints:
            query = dns.message.make_query("2.0.0.127." + ZONE, "A")
            udp = await dns.asyncquery.udp(query, host, port=port, timeout=3)
            tcp = await dns.asyncquery.tcp(query, host, port=port, timeout=3)
            assert answers(udp, "A") == answers(tcp, "A") == ["127.0.0.2"]


async def test_listens_on_ipv6_loopback() -> None:
    import socket

    from tests.conftest import need

    need(socket.has_ipv6, "no IPv6")
    async with running([make_index([])], listen=["[::1]:0"]) as server:
        host, port = server.endpoints[0]
        assert host == "::1"
        query = dns.message.make_query("2.0.0.127." + ZONE, "A")
        udp = await dns.asyncquery.udp(query, host, port=port, timeout=3)
        tcp = await dns.asyncquery.tcp(query, host, port=port, timeout=3)
        assert answers(udp, "A") == answers(tcp, "A") == ["127.0.0.2"]


async def test_publishing_an_unconfigured_zone_is_an_error(server: DnsServer) -> None:
    from dnsbl.errors import UnknownZoneError

    with pytest.raises(UnknownZoneError):
        server.publish(make_index([], zone=zone_settings("other.example.org")))
    assert answers(await ask(server, "1.0.0.10." + ZONE), "A") == ["127.0.0.2"]
