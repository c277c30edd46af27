"""Export: rbldnsd loads the rbldnsd export and answers as the index; NSD loads the BIND one."""

from __future__ import annotations

import io
import ipaddress
import random
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import Engine

from dnsbl.addresses import parse_network, reverse_name
from dnsbl.cli import main
from dnsbl.config import Settings
from dnsbl.errors import DnsblError
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.node.loader import load_index
from dnsbl.rbldnsd.exporter import export_zone, rbldnsd_lines
from tests.conftest import ZONE, need_program, write_config
from tests.index.test_records import WildcardResolver
from tests.rbldnsd.test_parity import ask, index_answer, rbldnsd


def _entries() -> list[Entry]:
    def entry(text: str, category: str = "open-relay", **kwargs: object) -> Entry:
        return Entry(parse_network(text), category, **kwargs)  # type: ignore[arg-type]

    return [
        entry("192.0.2.0/24"),
        entry("192.0.2.7", excluded=True),
        entry("192.0.2.9", code="127.0.0.9", txt="own $ and $$"),
        entry("198.51.100.0/25", txt=""),
        entry("198.51.100.0/26", "relay-output"),
        entry("203.0.113.0/24", "relay-output", code="127.0.0.10"),
        entry("127.0.0.0/8", "relay-output"),
        entry("2001:db8::/32"),
        entry("2001:db8::1", excluded=True),
        entry("2001:db8:1::/48", code="127.0.0.6", txt="v6 $"),
    ]


def _probes(
    index: ZoneIndex, rng: random.Random
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    # Not ::ffff:7f00:2: rbldnsd answers IPv4-mapped names from its IPv4 data as well.
    probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.ip_address(text) for text in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "::1")
    ]
    for _, net, _ in index.entries():
        top = (1 << net.bits) - 1
        for value in (
            net.first,
            net.last,
            net.first - 1,
            net.last + 1,
            rng.randint(net.first, net.last),
        ):
            if 0 <= value <= top:
                probes.append(
                    ipaddress.IPv4Address(value)
                    if net.family == 4
                    else ipaddress.IPv6Address(value)
                )
    return probes


@pytest.fixture
def index(store: ListingStore, engine: Engine, settings: Settings) -> ZoneIndex:
    store.add(ZONE, _entries(), actor="t")
    return load_index(engine, settings.zone(ZONE))


def test_rbldnsd_export_has_a_header_values_and_exclusions(
    index: ZoneIndex, settings: Settings
) -> None:
    text = "".join(rbldnsd_lines(index, settings.zone(ZONE)))
    assert f"{ZONE}:combined:FILE" in text
    assert "$DATASET ip4trie:open-relay @\n" in text
    assert "$DATASET ip6trie:open-relay @\n" in text
    assert "!192.0.2.7/32\n" in text
    assert "192.0.2.9/32 :127.0.0.9:own $ and $$\n" in text
    assert "198.51.100.0/25 :127.0.0.2:\n" in text
    assert "!127.0.0.1/32\n" in text
    assert f"$SOA 2100 ns1.example.org hostmaster.example.org {index.serial} " in text
    only_v6 = "".join(rbldnsd_lines(index, settings.zone(ZONE), family=6))
    assert f"{ZONE}:ip6trie:FILE" in only_v6 and "$DATASET" not in only_v6
    assert "192.0.2.0" not in only_v6


async def test_rbldnsd_loads_the_export_and_answers_as_the_index(
    tmp_path: Path, index: ZoneIndex, engine: Engine, settings: Settings
) -> None:
    need_program("rbldnsd")
    data = tmp_path / "data"
    data.mkdir()
    with (data / "zone.txt").open("w") as out:
        export_zone(engine, settings.zone(ZONE), out, "rbldnsd")
    rng = random.Random(1)
    with rbldnsd(data, [f"{ZONE}:combined:zone.txt"]) as port:
        for address in _probes(index, rng):
            name = reverse_name(address, ZONE)
            assert await ask(port, name) == index_answer(index, address), str(address)


async def test_a_single_dataset_zone_is_a_plain_trie_file(
    tmp_path: Path, store: ListingStore, engine: Engine, settings: Settings
) -> None:
    need_program("rbldnsd")
    store.add(
        ZONE,
        [Entry(parse_network("10.0.0.0/8")), Entry(parse_network("10.1.0.0/16"), excluded=True)],
        actor="t",
    )
    index = load_index(engine, settings.zone(ZONE))
    data = tmp_path / "data"
    data.mkdir()
    text = "".join(rbldnsd_lines(index, settings.zone(ZONE)))
    assert f"{ZONE}:ip4trie:FILE" in text and "$DATASET" not in text
    (data / "zone.txt").write_text(text)
    with rbldnsd(data, [f"{ZONE}:ip4trie:zone.txt"]) as port:
        for address in ("10.0.0.1", "10.1.0.1", "10.2.0.1", "127.0.0.2", "11.0.0.1"):
            ip = ipaddress.ip_address(address)
            assert await ask(port, reverse_name(ip, ZONE)) == index_answer(index, ip), address


def test_bind_export_passes_nsd_checkzone_and_answers_as_the_index(
    tmp_path: Path, index: ZoneIndex, engine: Engine, settings: Settings
) -> None:
    checkzone = need_program("nsd-checkzone")
    buffer = io.StringIO()
    export_zone(engine, settings.zone(ZONE), buffer, "bind")
    text = buffer.getvalue()
    assert text.splitlines()[1:3] == [f"$ORIGIN {ZONE}.", "$TTL 2100"]
    path = tmp_path / "zone"
    path.write_text(text)
    checked = subprocess.run([checkzone, ZONE, str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    records = []
    for line in text.splitlines():
        if line.startswith((";", "$", "@")):
            continue
        owner, ttl, _, rtype, rdata = line.split(" ", 4)
        records.append((f"{owner}.{ZONE}", rtype, int(ttl), rdata))
    resolver = WildcardResolver(records, ZONE)
    for address in _probes(index, random.Random(2)):
        got = resolver.resolve(reverse_name(address, ZONE), "A") or set()
        assert got == index_answer(index, address)[0], str(address)


def test_unknown_format_and_family_with_bind_are_refused(
    engine: Engine, settings: Settings
) -> None:
    with pytest.raises(DnsblError):
        export_zone(engine, settings.zone(ZONE), io.StringIO(), "csv")
    with pytest.raises(DnsblError):
        export_zone(engine, settings.zone(ZONE), io.StringIO(), "bind", family=4)


def test_cli_export_writes_the_file_atomically(
    tmp_path: Path, database_url: str, store: ListingStore
) -> None:
    store.add(ZONE, [Entry(parse_network("192.0.2.1"))], actor="t")
    config = write_config(tmp_path / "dnsbl.toml", database_url)
    output = tmp_path / "out.txt"
    assert (
        main(["--config", str(config), "export", ZONE, "--format", "rbldnsd", "-o", str(output)])
        == 0
    )
    assert "192.0.2.1/32 :127.0.0.2:Listed: see https://bl.example.org/lookup/$" in (
        output.read_text()
    )
    assert not output.with_name("out.txt.tmp").exists()


async def test_random_imported_zones_survive_the_round_trip_through_rbldnsd(
    tmp_path: Path, sqlite_url: str
) -> None:
    from dnsbl.config import ZoneSettings
    from dnsbl.db import make_engine
    from dnsbl.rbldnsd.importer import import_files
    from tests.conftest import zone_config
    from tests.rbldnsd.test_parity import _probes as file_probes
    from tests.rbldnsd.test_parity import ip4_file, ip6_file

    need_program("rbldnsd")
    rng = random.Random(99)
    engine = make_engine(sqlite_url)
    store = ListingStore(engine)
    zone = ZoneSettings(**zone_config(ZONE))
    store.ensure_zones([ZONE])
    source = tmp_path / "source"
    source.mkdir()
    files = [source / "v4.txt", source / "v6.txt"]
    files[0].write_text(ip4_file(rng, 200, ranges=True))
    files[1].write_text(ip6_file(rng, 80))
    import_files(store, zone, files, category="a")
    store.add(ZONE, [Entry(parse_network("10.0.0.0/16"), "b", code="127.0.0.20")], actor="t")
    index = load_index(engine, zone)
    data = tmp_path / "data"
    data.mkdir()
    with (data / "zone.txt").open("w") as out:
        export_zone(engine, zone, out, "rbldnsd")
    with rbldnsd(data, [f"{ZONE}:combined:zone.txt"]) as port:
        for address in file_probes(rng, files, 400):
            name = reverse_name(address, ZONE)
            assert await ask(port, name) == index_answer(index, address), str(address)
    engine.dispose()
