"""TSIG on transfers and on the queries of secondaries, checked by dnspython's own TSIG code.

With keys: transfers only when signed, signed queries get signed answers, a bad signature
is NOTAUTH with the error (BADKEY, BADSIG, BADTIME) in a TSIG record, and unsigned ordinary
queries are answered as ever, unsigned. Without keys: transfers unsigned, and any signed
query is BADKEY (RFC 8945: a key the server does not have).
"""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import time

import dns.asyncquery
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest
from dns.rdtypes.ANY.TSIG import TSIG

from dnsbl.config import ConfigError, load_settings
from dnsbl.dns.server import DnsServer
from tests.conftest import zone_config
from tests.dns_support import ZONE, answers, ask, change, make_index, row, running

pytestmark = pytest.mark.usefixtures("dns_engine")  # each engine in turn

SECRET = base64.b64encode(bytes(range(32))).decode()
KEY = {"name": "xfr.example.org", "secret": SECRET}
RING = dns.tsigkeyring.from_text({"xfr.example.org": ("hmac-sha256", SECRET)})
# Enough names for a transfer of several messages, each signed in sequence.
ROWS = [row(f"10.{i >> 8}.{i & 255}.1", txt="Listed $ " + "x" * 40) for i in range(3000)]


def _xfr(server: DnsServer, **kwargs: object) -> list[dns.message.Message]:
    host, port = server.endpoints[0]
    return list(dns.query.xfr(host, ZONE, port=port, timeout=5, lifetime=30, **kwargs))  # type: ignore[arg-type]


async def test_a_signed_transfer_is_answered_signed_message_by_message() -> None:
    async with running([make_index(ROWS, serial=5)], transfer_keys=[KEY]) as server:
        messages = await asyncio.to_thread(_xfr, server, keyring=RING, keyname="xfr.example.org")
        # dnspython verified every message's TSIG against the one before it
        assert len(messages) > 3 and all(m.had_tsig for m in messages)
        names = {rrset.name for m in messages for rrset in m.answer}
        assert len(names) > 3000


async def test_without_a_valid_signature_there_is_no_transfer() -> None:
    async with running([make_index(ROWS[:5], serial=5)], transfer_keys=[KEY]) as server:
        host, port = server.endpoints[0]
        unsigned = dns.message.make_query(ZONE, "AXFR")
        reply = await dns.asyncquery.tcp(unsigned, host, port=port, timeout=5)
        assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
        other = dns.tsigkeyring.from_text({"other.example.org": ("hmac-sha256", SECRET)})
        wrong_secret = dns.tsigkeyring.from_text(
            {"xfr.example.org": ("hmac-sha256", base64.b64encode(b"y" * 32).decode())}
        )
        cases = (
            (other, "other.example.org", dns.rcode.BADKEY),
            (wrong_secret, "xfr.example.org", dns.rcode.BADSIG),
        )
        for ring, name, error in cases:
            query = dns.message.make_query(ZONE, "AXFR")
            query.use_tsig(ring, keyname=name)
            reply = await asyncio.to_thread(_unverified_tcp, query.to_wire(), host, port)
            assert reply.rcode() == dns.rcode.NOTAUTH and not reply.answer
            # the TSIG record says what was wrong, for the key the client used (RFC 8945 5.3.2)
            assert reply.keyname == dns.name.from_text(name)
            assert reply.tsig[0].error == error and reply.tsig[0].mac == b""


async def test_signed_queries_get_signed_answers_and_ixfr_too() -> None:
    base = make_index(ROWS[:20], serial=5)
    async with running([base], transfer_keys=[KEY]) as server:
        host, port = server.endpoints[0]
        soa = dns.message.make_query(ZONE, "SOA")
        soa.use_tsig(RING, keyname="xfr.example.org")
        reply = await asyncio.to_thread(dns.query.udp, soa, host, port=port, timeout=5)
        assert reply.had_tsig and reply.answer[0][0].serial == 5  # dnspython verified it
        zone = dns.zone.Zone(ZONE)
        await asyncio.to_thread(
            dns.query.inbound_xfr,
            host,
            zone,
            query=_signed(dns.xfr.make_query(zone)[0]),
            port=port,
            timeout=5,
        )
        added = change("add", "192.0.2.9", code="127.0.0.5", txt="")
        server.publish(base.with_changes(6, [added]))
        await asyncio.to_thread(
            dns.query.inbound_xfr,
            host,
            zone,
            query=_signed(dns.xfr.make_query(zone)[0]),
            port=port,
            timeout=5,
        )
        assert zone.find_rdataset("9.2.0.192", "A")[0].to_text() == "127.0.0.5"


def _unverified_tcp(wire: bytes, host: str, port: int) -> dns.message.Message:
    """Send `wire` over TCP; the reply as it is (dnspython would insist on its TSIG)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(len(wire).to_bytes(2, "big") + wire)
        length = int.from_bytes(sock.recv(2), "big")
        data = b""
        while len(data) < length:
            data += sock.recv(length - len(data))
    return dns.message.from_wire(data, keyring=False)


def _signed(query: dns.message.Message) -> dns.message.Message:
    query.use_tsig(RING, keyname="xfr.example.org")
    return query


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ({"name": "k", "secret": "not base64!"}, "not base64"),
        ({"name": "k", "secret": base64.b64encode(b"short").decode()}, "shorter than 16"),
        ({"name": "k", "secret": SECRET, "algorithm": "hmac-md4"}, "unsupported TSIG"),
    ],
)
def test_bad_keys_are_refused_at_start(key: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as refused:
        load_settings(None, zones=[zone_config()], dns={"transfer_keys": [key]})
    assert "dns.transfer_keys.0" in str(refused.value)


# -- BADTIME, and the paths without TSIG -------------------------------------------------------


def _signed_at(query: dns.message.Message, when: int) -> tuple[bytes, bytes]:
    """`query` signed with KEY as if at `when` (seconds since the epoch); wire and MAC.

    dnspython signs at the current time only, so the TSIG record is made with its own
    `dns.tsig.sign` and appended the way its renderer does."""
    key = dns.tsig.Key(KEY["name"], SECRET, "hmac-sha256")
    wire = query.to_wire()
    blank = TSIG(
        dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, 0, 300, b"", query.id, 0, b""
    )
    rdata, _ = dns.tsig.sign(wire, key, blank, when, b"")
    record = io.BytesIO()
    dns.rrset.from_rdata(key.name, 0, rdata).to_wire(record)
    additional = int.from_bytes(wire[10:12], "big") + 1
    return wire[:10] + additional.to_bytes(2, "big") + wire[12:] + record.getvalue(), rdata.mac


def _exchange_udp(wire: bytes, host: str, port: int, mac: bytes) -> dns.message.Message:
    """Send `wire`; the reply as dnspython reads it for the query of `mac` (TSIG checked)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        dns.query.send_udp(sock, wire, (host, port))
        reply, _ = dns.query.receive_udp(
            sock, (host, port), time.time() + 5, keyring=RING, request_mac=mac
        )
    return reply


async def test_a_signature_far_outside_the_fudge_gets_badtime() -> None:
    async with running([make_index(ROWS[:5], serial=5)], transfer_keys=[KEY]) as server:
        host, port = server.endpoints[0]
        # The same signing, at the current time: a signed answer (so the signature is good).
        wire, mac = _signed_at(dns.message.make_query(ZONE, "SOA"), int(time.time()))
        reply = await asyncio.to_thread(_exchange_udp, wire, host, port, mac)
        assert reply.had_tsig and reply.answer[0][0].serial == 5
        # An hour off, where the fudge is five minutes.
        for query in (dns.message.make_query(ZONE, "SOA"), dns.message.make_query(ZONE, "AXFR")):
            wire, mac = _signed_at(query, int(time.time()) - 3600)
            with pytest.raises(dns.tsig.PeerBadTime):  # dnspython reads the error record
                await asyncio.to_thread(_exchange_udp, wire, host, port, mac)
            raw = await asyncio.to_thread(_unverified_tcp, wire, host, port)
            assert raw.rcode() == dns.rcode.NOTAUTH and not raw.answer
            assert raw.keyname == dns.name.from_text(KEY["name"])
            assert raw.tsig[0].error == dns.rcode.BADTIME


async def test_without_keys_transfers_are_unsigned_and_a_signed_query_gets_badkey() -> None:
    async with running([make_index(ROWS[:5], serial=5)]) as server:  # no transfer_keys
        host, port = server.endpoints[0]
        zone = dns.zone.Zone(ZONE)
        await asyncio.to_thread(dns.query.inbound_xfr, host, zone, port=port, timeout=5)
        assert zone.get_soa().serial == 5
        assert zone.find_rdataset("1.0.0.10", "A")[0].to_text() == "127.0.0.2"
        # A key this server does not have is BADKEY (RFC 8945 §5.2.1), whatever the query.
        with pytest.raises(dns.tsig.PeerBadKey):
            await asyncio.to_thread(_xfr, server, keyring=RING, keyname="xfr.example.org")
        soa = _signed(dns.message.make_query(ZONE, "SOA"))
        with pytest.raises(dns.tsig.PeerBadKey):
            await asyncio.to_thread(dns.query.udp, soa, host, port=port, timeout=5)
        for qtype in ("AXFR", "SOA"):
            query = _signed(dns.message.make_query(ZONE, qtype))
            raw = await asyncio.to_thread(_unverified_tcp, query.to_wire(), host, port)
            assert raw.rcode() == dns.rcode.NOTAUTH and not raw.answer
            assert raw.tsig[0].error == dns.rcode.BADKEY and raw.tsig[0].mac == b""


async def test_unsigned_ordinary_queries_are_answered_unsigned_when_keys_are_set() -> None:
    async with running([make_index(ROWS[:5], serial=5)], transfer_keys=[KEY]) as server:
        listed = ask(server, "1.0.0.10." + ZONE)  # the hot path
        for reply in (await listed, await ask(server, "1.0.0.10." + ZONE, "TXT", tcp=True)):
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer
            assert not reply.had_tsig and not reply.tsig
        assert answers(await ask(server, "1.0.0.10." + ZONE), "A") == ["127.0.0.2"]
        for qtype in ("SOA", "NS"):  # the general path
            for tcp in (False, True):
                reply = await ask(server, ZONE, qtype, tcp=tcp)
                assert reply.rcode() == dns.rcode.NOERROR and reply.answer
                assert not reply.had_tsig and not reply.tsig
        assert (await ask(server, ZONE, "SOA")).answer[0][0].serial == 5
