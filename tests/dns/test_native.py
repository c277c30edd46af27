"""The native engine answers byte for byte what the Python hot path answers (and so what the
dnslib path answers), hands everything else to Python, and sees a published index at once."""

from __future__ import annotations

import concurrent.futures
import random
import subprocess
import sys
import threading

import dns.edns
import dns.message
import dns.opcode
import dns.query
import dns.tsig
import dns.tsigkeyring
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from dnsbl.config import DnsSettings, ZoneSettings
from dnsbl.dns.native import NativeEngine, native_available
from dnsbl.dns.server import DnsServer
from dnsbl.dns.wire import answer_fast
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.rows import ListingRow as Row
from tests.conftest import need
from tests.dns.queries import CHILD, query, zone_rows
from tests.dns_support import ZONE, answers, ask, change, make_index, row, running, zone_settings

# Texts long enough that a few categories together come near the 512-byte limit.
NEAR_LIMIT = ["a" * 120 + " $", "b" * 150, "$$ " + "c" * 90 + " $ $"]


@pytest.fixture(autouse=True)
def _native_built() -> None:
    need(native_available(), "the native DNS engine was not built (no C compiler?)")


def _server(indexes: list[ZoneIndex], zones: list[ZoneSettings] | None = None) -> DnsServer:
    zones = zones or [zone_settings(), zone_settings(CHILD, ttl=60)]
    server = DnsServer(zones, DnsSettings(engine="native"))
    for index in indexes:
        server.publish(index)
    return server


def _native(server: DnsServer) -> NativeEngine:
    assert server.native is not None
    return server.native


@st.composite
def _zone_rows(draw: st.DrawFn) -> list[Row]:
    rows = draw(zone_rows())
    for _ in range(draw(st.integers(0, 3))):
        network = draw(st.sampled_from(["10.0.0.0/8", "10.1.2.3", "192.0.2.0/24", "10.1.2.0/31"]))
        category = draw(st.sampled_from(["c1", "c2", "c3", "manual"]))
        rows.append(row(network, category, txt=draw(st.sampled_from(NEAR_LIMIT))))
    return rows


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
@given(data=st.data(), rows=_zone_rows(), child_rows=zone_rows(), changed=zone_rows())
def test_native_answers_as_the_python_path(
    data: st.DataObject, rows: list[Row], child_rows: list[Row], changed: list[Row]
) -> None:
    index = make_index(rows, 5)
    if changed:  # an overlay from the change log, as a following node has
        changes = [
            change(
                data.draw(st.sampled_from(["add", "remove"])),
                item.network,
                item.category,
                code=item.code,
                txt=item.txt,
                excluded=item.excluded,
            )
            for item in [*changed, *rows[:2]]
        ]
        index = index.with_changes(6, changes)
    server = _server([index, make_index(child_rows, 9, zone_settings(CHILD, ttl=60))])
    native = _native(server)
    queries = [*rows, *child_rows, *changed]
    for _ in range(8):
        packet = data.draw(query(queries))
        native_reply = native.answer(packet)
        fast = answer_fast(packet, server.table, server.max_payload, None)
        if native_reply is None:
            event("handed to Python")
            continue
        event("answered natively")
        assert fast is not None, "native answered what the Python hot path leaves"
        assert native_reply == fast[0]
        (general,) = server.responder.respond(packet, tcp=False, peer="127.0.0.1").messages
        assert dns.message.from_wire(native_reply).to_text() == (
            dns.message.from_wire(general).to_text()
        )


def _make(name: str, rdtype: str = "A", **kwargs: object) -> bytes:
    return dns.message.make_query(name, rdtype, **kwargs).to_wire()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "1.0.0.10." + ZONE,
        "9.9.9.19." + ZONE.upper(),
        "1." + "0." * 23 + "8.b.d.0.1.0.0.2." + ZONE,
        "5." + "0." * 31 + ZONE,
        "7.2.0.192." + CHILD,
    ],
)
@pytest.mark.parametrize("rdtype", ["A", "TXT", "AAAA"])
@pytest.mark.parametrize("edns", [None, 0])
def test_common_queries_are_answered_natively(name: str, rdtype: str, edns: int | None) -> None:
    rows = [row("10.0.0.1"), row("10.0.0.0/8", "open-relay", txt="literal"), row("2001:db8::/32")]
    server = _server([make_index(rows, 3), make_index([], 4, zone_settings(CHILD))])
    packet = _make(name, rdtype, use_edns=edns if edns is not None else False)
    fast = answer_fast(packet, server.table, 1232, None)
    assert fast is not None
    assert _native(server).answer(packet) == fast[0]


_KEYRING = dns.tsigkeyring.from_text({"k.": "c2VjcmV0c2VjcmV0c2VjcmV0"})


def _signed() -> bytes:
    message = dns.message.make_query("1.0.0.10." + ZONE, "A")
    message.use_tsig(_KEYRING, keyname="k.")
    return message.to_wire()


def _notify() -> bytes:
    message = dns.message.make_query(ZONE, "SOA")
    message.set_opcode(dns.opcode.NOTIFY)
    return message.to_wire()


@pytest.mark.parametrize(
    "packet",
    [
        _make(ZONE, "SOA"),  # apex
        _make("0.10." + ZONE),  # a prefix name
        _make("1.0.0.2." + ZONE),  # also an IPv6 /16: maybe an empty non-terminal
        _make("2.0.0.127." + ZONE),  # RFC 5782 test entries
        _make("1.0.0.127." + ZONE),
        _make("2.0.0.10." + ZONE, rdclass="CH"),
        _make("2.0.0.10." + ZONE, "AXFR"),
        _make("2.0.0.10." + ZONE, "MX"),
        _make("1.0.0.10." + ZONE, "ANY"),  # what ANY gets over UDP is the Python path's policy
        _make("2.0.0.10." + ZONE, use_edns=1),  # BADVERS
        _make("2.0.0.10." + ZONE, use_edns=0, options=[dns.edns.CookieOption(b"c" * 8, b"")]),
        _make("2.0.0.10." + ZONE, use_edns=0, options=[dns.edns.NSIDOption(b"")]),
        _make("2.0.0.10.example.com"),
        _make("2.0.0.10." + ZONE) + b"junk",
        _signed(),
        _notify(),
        _make("5." + "0." * 31 + ZONE, "TXT"),  # ::5 as text: inet_ntop writes ::0.0.0.5
    ],
)
def test_everything_else_is_handed_to_python(packet: bytes) -> None:
    rows = [row("10.0.0.1", txt="Listed $"), row("::/64", txt="Listed $")]
    assert _native(_server([make_index(rows, 3)])).answer(packet) is None


def test_a_zone_the_hand_off_rule_keeps_is_answered_by_python() -> None:
    server = _server([make_index([row("10.0.0.1")], 3)])
    packet = _make("1.0.0.10." + ZONE)
    assert _native(server).answer(packet) is not None
    # A zone with a zone below it named like an address prefix needs the longest match.
    child = zone_settings("10." + ZONE)
    server = _server([make_index([row("10.0.0.1")], 3)], [zone_settings(), child])
    assert _native(server).answer(packet) is None


def test_too_long_an_answer_is_handed_to_python_which_sets_tc() -> None:
    rows = [row("10.0.0.1", f"c{i}", txt=f"{i}" + "z" * 200 + "$") for i in range(4)]
    server = _server([make_index(rows, 3)])
    packet = _make("1.0.0.10." + ZONE, "TXT")
    assert _native(server).answer(packet) is None
    assert _native(server).answer(_make("1.0.0.10." + ZONE, "TXT", use_edns=0)) is not None


def test_random_mutations_never_upset_the_native_engine() -> None:
    """20,000 mutated queries straight into the C code (under AddressSanitizer in CI): each
    answer it gives is the Python hot path's, and parses."""
    rows = [row("10.0.0.1", txt="Listed $"), row("10.0.0.0/8", "open-relay"), row("::1:0/112")]
    server = _server(
        [make_index(rows, 3), make_index([row("192.0.2.0/24")], 4, zone_settings(CHILD))]
    )
    native = _native(server)
    bases = [
        _make("1.0.0.10." + ZONE, rdtype, use_edns=edns)
        for rdtype in ("A", "TXT", "ANY", "AAAA")
        for edns in (False, 0)
    ] + [_make("5." + "0." * 31 + ZONE), _make("1.2.0.192." + CHILD, "TXT")]
    rng = random.Random(8)
    answered = 0
    for _ in range(20_000):
        packet = bytearray(rng.choice(bases))
        kind = rng.randrange(4)
        if kind == 0:
            for _ in range(rng.randrange(1, 4)):
                packet[rng.randrange(len(packet))] = rng.randrange(256)
        elif kind == 1:
            del packet[rng.randrange(len(packet)) :]
        elif kind == 2:
            packet += rng.randbytes(rng.randrange(1, 20))
        else:
            packet[rng.randrange(12, len(packet))] = rng.choice(b"\x00\x01\x03\x20\x29\xc0Aa9")
        reply = native.answer(bytes(packet))
        if reply is not None:
            answered += 1
            fast = answer_fast(bytes(packet), server.table, server.max_payload, None)
            assert fast is not None and fast[0] == reply
            dns.message.from_wire(reply)
    assert answered > 500  # many mutations leave a common query (a changed id, a flag)


async def test_a_published_index_is_answered_from_at_once() -> None:
    async with running([make_index([row("10.0.0.1")], 1)], engine="native") as server:
        assert server.engine == "native"
        assert answers(await ask(server, "1.0.0.10." + ZONE), "A") == ["127.0.0.2"]
        for serial in range(2, 30):
            code = f"127.0.0.{serial}"
            server.publish(make_index([row("10.0.0.1", code=code)], serial))
            # The publish has returned: no query after it sees the old index.
            assert answers(await ask(server, "1.0.0.10." + ZONE, edns=None), "A") == [code]
        assert server.counts[(ZONE, "A", "NOERROR")] == 29


async def test_the_native_loop_answers_on_its_own_thread_and_ends_with_the_server() -> None:
    """Its own thread: a common query is answered while the event loop is held up (here
    waiting for that very answer, with the GIL free), and the thread is gone once the server
    has stopped."""
    async with running([make_index([row("10.0.0.1")], 1)], engine="native") as server:
        host, port = server.endpoints[0]
        query = dns.message.make_query("1.0.0.10." + ZONE, "A")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            asked = pool.submit(dns.query.udp, query, host, port=port, timeout=5)
            reply = asked.result(timeout=30)  # blocks the event loop until it is answered
            assert answers(reply, "A") == ["127.0.0.2"]
        assert any(t.name.startswith("dns-udp-") for t in threading.enumerate())
    assert not any(t.name.startswith("dns-udp-") for t in threading.enumerate())


async def test_the_python_engine_when_asked_for() -> None:
    async with running([make_index([row("10.0.0.1")], 1)], engine="python") as server:
        assert server.engine == "python" and server.native is None
        assert answers(await ask(server, "1.0.0.10." + ZONE), "A") == ["127.0.0.2"]


def test_without_the_extension_auto_answers_in_python_with_one_warning() -> None:
    """Where no compiler built it (here: its import made to fail, in a fresh interpreter)."""
    code = (
        "import sys, logging\n"
        "sys.modules['dnsbl.dns._native'] = None\n"
        "logging.basicConfig(format='%(levelname)s %(message)s')\n"
        "from dnsbl.config import DnsSettings\n"
        "from dnsbl.dns.server import DnsServer\n"
        "from dnsbl.errors import ConfigError\n"
        "from tests.dns_support import zone_settings\n"
        "print(DnsServer([zone_settings()], DnsSettings(engine='auto')).engine)\n"
        "try:\n"
        "    DnsServer([zone_settings()], DnsSettings(engine='native'))\n"
        "except ConfigError as exc:\n"
        "    print('refused:', exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "python"
    assert "refused: dns.engine is 'native' but the native engine was not built" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert warnings == [
        "WARNING the native DNS engine was not built: answering with the Python engine"
    ]
