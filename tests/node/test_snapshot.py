"""The node's snapshot (`dns.snapshot`): written after a load and a compaction, read at start,
caught up from the change log, and answering when the database is unreachable."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import dns.rcode
import pytest
from sqlalchemy import Engine

from dnsbl.addresses import Network, parse_network
from dnsbl.config import Settings, load_settings
from dnsbl.index.zone_index import COMPACT_AFTER, ZoneIndex
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.node.loader import ZoneFollower, load_index
from dnsbl.node.snapshot import read_snapshot
from tests.conftest import ZONE, write_config, zone_config
from tests.dns_support import answers
from tests.node.test_loader import codes
from tests.node.test_node import _ask, _process
from tests.smtp_fakes import free_port


def _fill(store: ListingStore) -> None:
    store.add(
        ZONE,
        [
            Entry(parse_network("10.0.0.0/8")),
            Entry(parse_network("10.1.2.3"), excluded=True),
            Entry(parse_network("192.0.2.1"), category="relay-output"),
            Entry(parse_network("2001:db8::/32"), code="127.0.0.9", txt="six $"),
            Entry(parse_network("2001:db8::1"), excluded=True),
        ],
        actor="t",
    )


def _follower(engine: Engine, settings: Settings, path: Path) -> ZoneFollower:
    return ZoneFollower(engine, settings.zones, lambda index: None, snapshot=path)


def _same(one: ZoneIndex, other: ZoneIndex) -> None:
    assert one.serial == other.serial
    assert list(one.entries()) == list(other.entries())


def test_restored_snapshot_answers_then_catches_up(
    engine: Engine, store: ListingStore, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "node.snapshot"
    _fill(store)
    first = _follower(engine, settings, path)
    first.load_all()
    assert path.is_file()  # written after the full load
    held = first.indexes[ZONE]
    store.add(ZONE, [Entry(parse_network("203.0.113.7"))], actor="t")
    store.end(ZONE, [parse_network("192.0.2.1")], actor="t", reason="gone")

    again = _follower(engine, settings, path)
    again.load_all()
    restored = again.indexes[ZONE]
    _same(restored, held)  # as the snapshot held it: the serial it was written at
    assert codes(restored, "10.9.9.9") == ["127.0.0.2"]
    assert codes(restored, "10.1.2.3") == []
    assert [v.txt for v in restored.lookup(6, int(parse_network("2001:db8::5").first))] == ["six $"]
    assert codes(restored, "2001:db8::1") == []
    assert again.poll_once() == [ZONE]  # the change log since the snapshot's serial
    _same(again.indexes[ZONE], load_index(engine, settings.zone(ZONE)))
    assert codes(again.indexes[ZONE], "203.0.113.7") == ["127.0.0.2"]
    assert codes(again.indexes[ZONE], "192.0.2.1") == []


def test_compaction_writes_the_snapshot(
    engine: Engine, store: ListingStore, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "node.snapshot"
    follower = _follower(engine, settings, path)
    follower.load_all()
    written = read_snapshot(path, {ZONE: settings.zone(ZONE)})
    assert written is not None and written.indexes[ZONE].serial == 1
    many = [Entry(Network(4, 0x0B000000 + 2 * i, 32)) for i in range(COMPACT_AFTER + 1)]
    store.add(ZONE, many, actor="t")
    follower.poll_once()  # more than COMPACT_AFTER changes: compacted, so written
    written = read_snapshot(path, {ZONE: settings.zone(ZONE)})
    assert written is not None
    _same(written.indexes[ZONE], load_index(engine, settings.zone(ZONE)))
    assert written.indexes[ZONE].serial == store.serial(ZONE)


def test_a_snapshot_for_another_configuration_or_damaged_is_not_used(
    engine: Engine,
    store: ListingStore,
    settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "node.snapshot"
    _fill(store)
    _follower(engine, settings, path).load_all()
    other = load_settings(
        None, database_url=settings.database_url, zones=[zone_config(txt="Other: $")]
    )
    caplog.set_level(logging.INFO, "dnsbl.node")
    found = read_snapshot(path, {ZONE: other.zone(ZONE)})
    assert found is not None and found.indexes == {}
    follower = _follower(engine, other, path)
    follower.load_all()  # from the database, under the new TXT
    [value] = follower.indexes[ZONE].lookup(4, 0x0A090909)
    assert value.txt == "Other: $"
    assert "for another configuration" in caplog.text

    path.write_bytes(path.read_bytes()[:-3])
    assert read_snapshot(path, {ZONE: other.zone(ZONE)}) is None
    assert "not usable" in caplog.text
    follower = _follower(engine, other, path)
    follower.load_all()
    assert codes(follower.indexes[ZONE], "10.9.9.9") == ["127.0.0.2"]


def _unreachable_database() -> str:
    """A PostgreSQL URL whose port refuses connections (nothing listens there)."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/test?connect_timeout=2"


@pytest.mark.e2e
def test_a_node_restarted_while_the_database_is_down_answers_from_its_snapshot(
    tmp_path: Path, database_url: str
) -> None:
    snapshot = {"DNSBL_DNS__SNAPSHOT": str(tmp_path / "node.snapshot")}
    config = write_config(tmp_path / "dnsbl.toml", database_url)
    subprocess.run(
        [sys.executable, "-m", "dnsbl", "--config", str(config), "list", ZONE, "10.0.0.2"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with _process(config, "dns", tmp_path / "up.log", snapshot) as (process, port):
        assert answers(_ask(port, "2.0.0.10." + ZONE), "A") == ["127.0.0.2"]
        assert (tmp_path / "node.snapshot").is_file()
        process.terminate()
        process.wait(20)
    down = write_config(tmp_path / "down.toml", _unreachable_database())
    started = time.monotonic()
    with _process(down, "dns", tmp_path / "down.log", snapshot) as (process, port):
        listening = time.monotonic() - started
        assert answers(_ask(port, "2.0.0.10." + ZONE), "A") == ["127.0.0.2"]
        assert answers(_ask(port, "2.0.0.10." + ZONE, "TXT"), "TXT") == [
            '"Listed: see https://bl.example.org/lookup/10.0.0.2"'
        ]
        assert _ask(port, "3.0.0.10." + ZONE).rcode() == dns.rcode.NXDOMAIN
        assert process.poll() is None
    log = (tmp_path / "down.log").read_text()
    assert "restored from snapshot" in log, log
    print(f"restarted during the outage: listening after {listening:.2f} s")
