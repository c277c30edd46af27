"""The hot path answers exactly as the dnslib path does, and leaves it everything unusual."""

from __future__ import annotations

import dns.message
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from dnsbl.config import DnsSettings
from dnsbl.dns.answers import Responder
from dnsbl.dns.server import DnsServer
from dnsbl.dns.wire import answer_fast
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.rows import ListingRow as Row
from tests.dns.queries import CHILD, query, zone_rows
from tests.dns_support import ZONE, make_index, row, zone_settings


def _server(indexes: list[ZoneIndex]) -> DnsServer:
    server = DnsServer(
        [zone_settings(), zone_settings(CHILD, ttl=60)], DnsSettings.model_validate({})
    )
    for index in indexes:
        server.publish(index)
    return server


def _text(wire: bytes) -> str:
    return dns.message.from_wire(wire).to_text()


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
@given(data=st.data(), rows=zone_rows(), child_rows=zone_rows())
def test_hot_path_equals_the_dnslib_path(
    data: st.DataObject, rows: list[Row], child_rows: list[Row]
) -> None:
    server = _server([make_index(rows, 5), make_index(child_rows, 9, zone_settings(CHILD, ttl=60))])
    responder: Responder = server.responder
    for _ in range(6):
        packet = data.draw(query(rows + child_rows))
        tcp = data.draw(st.booleans())
        fast = answer_fast(packet, server.table, server.max_payload, 65535 if tcp else None)
        slow = responder.respond(packet, tcp=tcp, peer="127.0.0.1")
        (slow_wire,) = list(slow.messages)
        if fast is None:
            event("general path")
            continue
        event("hot path")
        assert _text(fast[0]) == _text(slow_wire)
        assert fast[1] == slow.key


@pytest.mark.parametrize(
    "name",
    [
        "2.0.0.127." + ZONE,
        "1.0.0.10." + ZONE,
        "9.9.9.9." + ZONE.upper(),
        "1.0.0.2." + ZONE,
        "1." + "0." * 23 + "8.b.d.0.1.0.0.2." + ZONE,
        "1." + "0." * 31 + ZONE,
    ],
)
@pytest.mark.parametrize("rdtype", ["A", "TXT"])
@pytest.mark.parametrize("edns", [None, 0])
def test_common_queries_take_the_hot_path(name: str, rdtype: str, edns: int | None) -> None:
    server = _server([make_index([row("10.0.0.1"), row("2001:db8::/32")], 3)])
    packet = dns.message.make_query(
        name, rdtype, use_edns=edns if edns is not None else False
    ).to_wire()
    assert answer_fast(packet, server.table, 1232, None) is not None


def _make(name: str, rdtype: str = "A", **kwargs: object) -> bytes:
    return dns.message.make_query(name, rdtype, **kwargs).to_wire()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "packet",
    [
        _make(ZONE, "SOA"),  # apex
        _make("0.10." + ZONE),  # a prefix name
        _make("2.0.0.10." + ZONE, rdclass="CH"),
        _make("2.0.0.10." + ZONE, "AXFR"),
        _make("2.0.0.10." + ZONE, use_edns=1),  # BADVERS
        _make("2.0.0.10." + ZONE, use_edns=0, options=[dns.edns.NSIDOption(b"")]),
        _make("2.0.0.10.example.com"),
        _make("2.0.0.10." + ZONE) + b"junk",
    ],
)
def test_unusual_queries_take_the_general_path(packet: bytes) -> None:
    server = _server([make_index([row("10.0.0.1")], 3)])
    assert answer_fast(packet, server.table, 1232, None) is None


def test_zone_named_like_an_address_prefix_below_another() -> None:
    child = zone_settings("10." + ZONE)
    server = DnsServer([zone_settings(), child], DnsSettings.model_validate({}))
    server.publish(make_index([row("10.0.0.1")], 3))
    server.publish(make_index([row("1.0.0.0/24")], 4, child))
    packet = _make("1.0.0.10." + ZONE)
    assert answer_fast(packet, server.table, 1232, None) is None
    reply = dns.message.from_wire(next(iter(server.responder.respond(packet).messages)))
    assert reply.authority[0].name.to_text() == "10." + ZONE + "."  # the longest zone


def test_hot_path_leaves_a_big_answer_to_the_general_path() -> None:
    rows = [row("10.0.0.1", f"c{i}", txt=f"{i}" + "z" * 200 + "$") for i in range(4)]
    server = _server([make_index(rows, 3)])
    packet = _make("1.0.0.10." + ZONE, "TXT")
    assert answer_fast(packet, server.table, 1232, None) is None
    assert answer_fast(packet, server.table, 1232, 65535) is not None
