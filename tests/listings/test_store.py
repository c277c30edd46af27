"""The listing store on SQLite and PostgreSQL: serials, replacement, ending, history."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dnsbl.addresses import parse_network
from dnsbl.errors import UnknownZoneError
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.feed import ListingFeed
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.models import utcnow
from tests.conftest import ZONE


def net(text: str):
    return parse_network(text)


def test_each_write_bumps_the_serial_once(store: ListingStore) -> None:
    start = store.serial(ZONE)
    result = store.add(ZONE, [Entry(net("192.0.2.1")), Entry(net("198.51.100.0/24"))], actor="t")
    assert result.serial == start + 1 and result.added == 2
    assert store.serial(ZONE) == start + 1
    serial, changes = ListingFeed(store.engine).changes_since(ZONE, start)
    assert serial == start + 1
    assert sorted(str(c.listing.network) for c in changes) == ["192.0.2.1/32", "198.51.100.0/24"]
    assert {c.action for c in changes} == {"add"}


def test_same_values_are_left_alone_and_new_values_replace(store: ListingStore) -> None:
    store.add(ZONE, [Entry(net("192.0.2.1"), reason="first")], actor="t")
    serial = store.serial(ZONE)
    again = store.add(ZONE, [Entry(net("192.0.2.1"), reason="first")], actor="t")
    assert (again.added, again.unchanged, again.serial) == (0, 1, serial)
    changed = store.add(ZONE, [Entry(net("192.0.2.1"), code="127.0.0.9", reason="x")], actor="t")
    assert (changed.added, changed.removed, changed.serial) == (1, 1, serial + 1)
    listings = listings_containing(store.engine, "192.0.2.1", active_only=False)
    assert [(item.code, item.active) for item in listings] == [("127.0.0.9", True), (None, False)]
    assert listings[1].end_reason == "replaced"


def test_later_entry_in_one_batch_wins(store: ListingStore) -> None:
    store.add(
        ZONE,
        [Entry(net("192.0.2.1"), code="127.0.0.3"), Entry(net("192.0.2.1"), code="127.0.0.4")],
        actor="t",
    )
    [listing] = listings_containing(store.engine, "192.0.2.1")
    assert listing.code == "127.0.0.4"


def test_ending_keeps_history_and_logs_a_removal(store: ListingStore) -> None:
    store.add(ZONE, [Entry(net("192.0.2.0/24"), reason="open relay")], actor="t")
    before = store.serial(ZONE)
    result = store.end(ZONE, [net("192.0.2.0/24")], actor="admin", reason="fixed")
    assert result.removed == 1 and result.serial == before + 1
    assert listings_containing(store.engine, "192.0.2.7") == []
    [old] = listings_containing(store.engine, "192.0.2.7", active_only=False)
    assert (old.ended_by, old.end_reason, old.reason) == ("admin", "fixed", "open relay")
    _, changes = ListingFeed(store.engine).changes_since(ZONE, before)
    assert [c.action for c in changes] == ["remove"]


def test_ending_nothing_changes_nothing(store: ListingStore) -> None:
    before = store.serial(ZONE)
    assert store.end(ZONE, [net("203.0.113.1")], actor="t", reason="x").removed == 0
    assert store.serial(ZONE) == before


def test_listings_containing_orders_most_specific_first(store: ListingStore) -> None:
    store.add(
        ZONE,
        [
            Entry(net("10.0.0.0/8")),
            Entry(net("10.1.0.0/16"), excluded=True),
            Entry(net("10.1.2.3")),
            Entry(net("2001:db8::/32")),
        ],
        actor="t",
    )
    assert [x.network for x in listings_containing(store.engine, "10.1.2.3")] == [
        "10.1.2.3/32",
        "10.1.0.0/16",
        "10.0.0.0/8",
    ]
    assert [x.network for x in listings_containing(store.engine, "2001:db8::1")] == [
        "2001:db8::/32"
    ]
    assert listings_containing(store.engine, "11.0.0.1") == []


def test_expired_listings_are_swept_with_a_trace(store: ListingStore) -> None:
    past = utcnow() - timedelta(minutes=1)
    store.add(ZONE, [Entry(net("192.0.2.1"), expires_at=past), Entry(net("192.0.2.2"))], actor="t")
    assert [x.network for x in listings_containing(store.engine, "192.0.2.1")] == []
    serials = store.expire_due()
    assert list(serials) == [ZONE]
    [old] = listings_containing(store.engine, "192.0.2.1", active_only=False)
    assert (old.ended_by, old.end_reason) == ("expiry", "expired")


def test_the_feed_loads_sorted_starts_per_value(store: ListingStore) -> None:
    store.add(
        ZONE,
        [Entry(net(f"192.0.2.{i}")) for i in (9, 3, 5)]
        + [Entry(net("198.51.100.0/24"), excluded=True), Entry(net("2001:db8::1"))],
        actor="t",
    )
    load = ListingFeed(store.engine).load(ZONE)
    assert load.serial == store.serial(ZONE) and load.expired == []
    by_length = {(g.family, g.prefixlen): g for g in load.groups}
    assert list(by_length[(4, 32)].starts) == [net(f"192.0.2.{i}").first for i in (3, 5, 9)]
    assert by_length[(4, 24)].excluded
    assert list(by_length[(6, 128)].starts) == [net("2001:db8::1").first]


def test_unknown_zone_is_refused_and_nothing_is_written(store: ListingStore) -> None:
    with pytest.raises(UnknownZoneError):
        store.add("nope.example.org", [Entry(net("192.0.2.1"))], actor="t")
    assert listings_containing(store.engine, "192.0.2.1", active_only=False) == []


def test_a_failing_batch_writes_nothing(store: ListingStore) -> None:
    before = store.serial(ZONE)

    def entries():
        yield Entry(net("192.0.2.1"))
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        store.add(ZONE, entries(), actor="t")
    assert store.serial(ZONE) == before
    assert listings_containing(store.engine, "192.0.2.1", active_only=False) == []
