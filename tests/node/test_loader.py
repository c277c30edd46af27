"""The zone follower: a full load at start, then the change log applied without reloads."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Engine

from dnsbl.addresses import parse_address, parse_network
from dnsbl.config import Settings
from dnsbl.index.zone_index import ZoneIndex
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.node.loader import ZoneFollower, load_index
from tests.conftest import ZONE


def codes(index: ZoneIndex, address: str) -> list[str]:
    ip = parse_address(address)
    return [value.code for value in index.lookup(ip.version, int(ip))]


def test_load_builds_the_active_zone(
    engine: Engine, store: ListingStore, settings: Settings
) -> None:
    store.add(
        ZONE,
        [
            Entry(parse_network("10.0.0.0/8")),
            Entry(parse_network("10.1.2.3"), excluded=True),
            Entry(parse_network("192.0.2.1"), category="relay-output"),
        ],
        actor="t",
    )
    store.add(ZONE, [Entry(parse_network("198.51.100.1"))], actor="t")
    store.end(ZONE, [parse_network("198.51.100.1")], actor="t", reason="gone")
    index = load_index(engine, settings.zone(ZONE))
    assert index.serial == store.serial(ZONE)
    assert codes(index, "10.9.9.9") == ["127.0.0.2"]
    assert codes(index, "10.1.2.3") == []
    assert codes(index, "192.0.2.1") == ["127.0.0.3"]
    assert codes(index, "198.51.100.1") == []
    [value] = index.lookup(4, int(parse_address("10.9.9.9")))
    assert value.txt == settings.zone(ZONE).txt


def test_follower_applies_changes_as_they_commit(
    engine: Engine, store: ListingStore, settings: Settings
) -> None:
    published: list[ZoneIndex] = []
    follower = ZoneFollower(engine, settings.zones, published.append)
    follower.load_all()
    assert follower.poll_once() == []
    store.add(ZONE, [Entry(parse_network("203.0.113.0/24"))], actor="cli")
    assert follower.poll_once() == [ZONE]
    assert codes(published[-1], "203.0.113.9") == ["127.0.0.2"]
    assert published[-1].overlay_size == 1  # applied as an overlay, not reloaded
    store.add(ZONE, [Entry(parse_network("203.0.113.9"), excluded=True)], actor="cli")
    store.end(ZONE, [parse_network("203.0.113.0/24")], actor="cli", reason="x")
    store.add(ZONE, [Entry(parse_network("203.0.113.0/25"), code="127.0.0.7")], actor="cli")
    follower.poll_once()
    latest = published[-1]
    assert latest.serial == store.serial(ZONE)
    assert codes(latest, "203.0.113.9") == []
    assert codes(latest, "203.0.113.10") == ["127.0.0.7"]
    assert codes(latest, "203.0.113.200") == []
    reloaded = load_index(engine, settings.zone(ZONE))
    for address in ("203.0.113.9", "203.0.113.10", "203.0.113.200", "10.0.0.1"):
        assert codes(reloaded, address) == codes(latest, address)


def test_follower_compacts_a_large_overlay(
    engine: Engine, store: ListingStore, settings: Settings, monkeypatch
) -> None:
    import dnsbl.node.loader

    monkeypatch.setattr(dnsbl.node.loader, "COMPACT_AFTER", 10)
    published: list[ZoneIndex] = []
    follower = ZoneFollower(engine, settings.zones, published.append)
    follower.load_all()
    store.add(ZONE, [Entry(parse_network(f"192.0.2.{i}")) for i in range(20)], actor="t")
    follower.poll_once()
    assert published[-1].overlay_size == 0
    assert codes(published[-1], "192.0.2.19") == ["127.0.0.2"]


async def test_follower_survives_a_broken_database_and_catches_up(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import time

    from sqlalchemy import text

    from dnsbl.config import load_settings
    from dnsbl.db import make_engine
    from tests.conftest import zone_config

    settings = load_settings(None, database_url=sqlite_url, zones=[zone_config()])
    engine = make_engine(sqlite_url)
    store = ListingStore(engine)
    store.ensure_zones([ZONE])
    follower = ZoneFollower(engine, settings.zones, lambda index: None, interval=0.05)
    follower.load_all()
    held = follower.indexes[ZONE]
    with engine.begin() as conn:  # every poll now fails: "no such table: zones"
        conn.execute(text("ALTER TABLE zones RENAME TO zones_away"))
    task = asyncio.create_task(follower.run())
    deadline = time.monotonic() + 30

    while follower.sync_failures < 3:  # several polls failed, and the follower went on
        assert time.monotonic() < deadline and not task.done(), caplog.text
        await asyncio.sleep(0.05)
    assert follower.indexes[ZONE] is held and not task.done()
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE zones_away RENAME TO zones"))
    store.add(ZONE, [Entry(parse_network("192.0.2.77"))], actor="t")
    deadline = time.monotonic() + 30
    while follower.indexes[ZONE] is held and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    task.cancel()
    assert codes(follower.indexes[ZONE], "192.0.2.77") == ["127.0.0.2"]
    # the outage is one line as it began and one as it ended, however many polls failed
    lines = [  # the warnings: whether the info lines are captured depends on earlier tests
        record.getMessage()
        for record in caplog.records
        if record.name.endswith("loader") and record.levelno >= logging.WARNING
    ]
    assert [line.split(":")[0].split(" after")[0] for line in lines] == [
        "database unavailable",
        "database available again",
    ], lines
    engine.dispose()
