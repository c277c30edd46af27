"""The zone loader: builds each zone's index from the store and follows the change log.

This is the only part of a DNS node that touches the database (and, with `dns.snapshot`, the
node's last-known-good index on disk: read first at start, written after each full load and
compaction; see `dnsbl.node.snapshot`). It reads a consistent view of the store at start,
then polls the zone serials every `dns.sync_interval` seconds and applies the changes after the
serial it holds as an overlay (no full reload per change), compacting the overlay in a worker
thread when it grows. Each new index is handed to `publish`; the server swaps its
reference, so a zone is never unanswered, and a failed load keeps the old index.

Expiry: a listing whose `expires_at` has passed is out of force, but only an expiry sweep
(`ListingStore.expire_due`, run by a worker every `tester.sweep_interval`) ends it in the
store, with a new serial. Until then the node hides it by itself, writing nothing: every
index it builds, at the full load and while following, goes through `_hide_expired`, the one
place that rule lives (see there). The index so changed keeps its serial, which breaks what a
serial stands for in a zone transfer; see `ZoneFollower.poll_once` for how IXFR copes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from dnsbl.config import ZoneSettings
from dnsbl.db import is_unavailable
from dnsbl.index.values import ValueDefaults
from dnsbl.index.zone_index import COMPACT_AFTER, ZoneIndex
from dnsbl.listings.feed import ListingFeed
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow
from dnsbl.logs import OutageLog
from dnsbl.models import utcnow
from dnsbl.node.snapshot import read_snapshot, write_snapshot
from dnsbl.timestamps import aware

log = logging.getLogger(__name__)


def load_index(engine: Engine, zone: ZoneSettings, now: datetime | None = None) -> ZoneIndex:
    """Build the index of `zone` from the listings in force in the store (at `now`)."""
    return _load(engine, zone, now or utcnow())[0]


def _load(engine: Engine, zone: ZoneSettings, now: datetime) -> tuple[ZoneIndex, bool]:
    """The index of `zone` at `now`, and whether it hides listings past their expiry."""
    load = ListingFeed(engine).load(zone.name, now)
    index = ZoneIndex.from_groups(zone.name, load.serial, load.groups, ValueDefaults.of(zone))
    gone = _hide_expired([], load.expired, load.serial, now)
    if gone:
        index = index.with_changes(load.serial, gone).compacted()
    return index, bool(gone)


def _hide_expired(
    changes: list[ChangeRecord], expired: Iterable[ListingRow], serial: int, now: datetime
) -> list[ChangeRecord]:
    """`changes` with the listings whose expiry passed by `now` taken out of the zone.

    The rule of expiry in a DNS node, for the full load and for following alike: a listing
    past its `expires_at` is not answered, whether or not a sweep has ended it yet. So an
    "add" of a listing that is already past its expiry (written so, or read late) becomes a
    "remove", and each of `expired` (listings not ended whose expiry passed, as the store
    reports them) is removed after the changes. Removing what the index does not hold is
    harmless, and the sweep's own "remove" later finds the entry gone.
    """
    hidden = [
        dataclasses.replace(change, action=ChangeAction.REMOVE)
        if change.action == ChangeAction.ADD
        and change.expires_at is not None
        and aware(change.expires_at) <= now
        else change
        for change in changes
    ]
    hidden += [ChangeRecord(serial, ChangeAction.REMOVE, row) for row in expired]
    return hidden


class ZoneFollower:
    """Keeps an up-to-date index of every configured zone and publishes each new one."""

    def __init__(
        self,
        engine: Engine,
        zones: list[ZoneSettings],
        publish: Callable[[ZoneIndex], None],
        interval: float = 0.25,
        snapshot: Path | None = None,
    ) -> None:
        self.engine = engine
        # where the last-known-good indexes are written and read (None: no snapshot)
        self.snapshot = snapshot
        self.feed = ListingFeed(engine)
        self.zones = {zone.name: zone for zone in zones}
        self.publish = publish
        self.interval = interval
        self.indexes: dict[str, ZoneIndex] = {}
        # for the node's metrics: each zone's serial in the database at the last good poll
        self.database_serials: dict[str, int] = {}
        self.last_sync = 0.0  # Unix time of the last load or poll that succeeded
        self.sync_failures = 0
        # An unavailable database is logged as an outage: a line a minute, not one per poll.
        self.outage = OutageLog(log, "database")
        # Every listing whose expiry passed by this moment is out of the indexes held.
        self.expired_until: datetime | None = None
        # Zones whose index hid expired listings under a serial that had held them.
        self._rewritten: set[str] = set()

    def load_all(self) -> None:
        """Build and publish every zone's index (blocking; call before serving).

        Zones the snapshot holds come from it (the first poll then catches up from the change
        log after its serials); the others are loaded whole from the database.
        """
        if self.snapshot is not None and self.restore_snapshot():
            missing = [zone for name, zone in self.zones.items() if name not in self.indexes]
            if not missing:
                return
        else:
            missing = list(self.zones.values())
        now = utcnow()
        for zone in missing:
            started = time.monotonic()
            index, hid = _load(self.engine, zone, now)
            if hid:
                self._rewritten.add(zone.name)
            self.indexes[zone.name] = index
            self.publish(index)
            self.database_serials[zone.name] = index.serial
            log.info(
                "zone %s loaded from the database: %d entries at serial %d in %.1f s",
                zone.name,
                len(index),
                index.serial,
                time.monotonic() - started,
            )
        self.last_sync = time.time()
        if self.expired_until is None:
            self.expired_until = now
        self.save_snapshot()

    def restore_snapshot(self) -> bool:
        """Publish the zones the snapshot holds (load from snapshot); whether it held any."""
        assert self.snapshot is not None
        found = read_snapshot(self.snapshot, self.zones)
        if found is None or not found.indexes:
            return False
        for name, index in found.indexes.items():
            self.indexes[name] = index
            self.publish(index)
        self._rewritten |= found.rewritten
        # Listings that expired after the snapshot are hidden by the first poll.
        self.expired_until = found.expired_until
        return True

    def serve_from_snapshot(self) -> bool:
        """With the database unreachable: publish what the snapshot holds; whether that was
        every zone (the node then answers from it while it waits for the database)."""
        if self.snapshot is None or not self.restore_snapshot():
            return False
        return all(name in self.indexes for name in self.zones)

    def save_snapshot(self) -> None:
        """Write the indexes held to the snapshot, if the node keeps one. A failure (a full
        disk) is logged: the node goes on answering, with the older snapshot left in place."""
        if self.snapshot is None:
            return
        started = time.monotonic()
        try:
            size = write_snapshot(
                self.snapshot,
                self.indexes,
                self.zones,
                expired_until=self.expired_until,
                rewritten=self._rewritten,
            )
        except OSError as exc:
            log.warning("snapshot %s not written: %s", self.snapshot, exc)
            return
        log.info(
            "snapshot %s written: %d bytes in %.2f s",
            self.snapshot,
            size,
            time.monotonic() - started,
        )

    def poll_once(self) -> list[str]:
        """Apply whatever changed since the last poll, and hide the listings whose expiry
        passed since; returns the zones republished."""
        now = utcnow()  # before reading: a listing read later is hidden if expired by now
        serials = self.feed.serials()
        expired = self.feed.expired_between(self.expired_until, now)
        changed = []
        compacted = False
        for name in self.zones:
            current = self.indexes.get(name)
            if current is None:
                continue
            if serials.get(name, current.serial) < current.serial:
                # The database is behind the index held: a snapshot of another database, or
                # one restored from a backup. Its change log cannot lead here: load it whole.
                log.warning("zone %s: the database is at an older serial; reloading", name)
                index, hid = _load(self.engine, self.zones[name], now)
                if hid:
                    self._rewritten.add(name)
                else:
                    self._rewritten.discard(name)
                self.indexes[name] = index
                self.publish(index)
                changed.append(name)
                compacted = True  # a new whole index: worth a snapshot
                continue
            serial, changes = current.serial, list[ChangeRecord]()
            if serials.get(name, 0) != current.serial:
                serial, changes = self.feed.changes_since(name, current.serial)
            changes = _hide_expired(changes, expired.get(name, ()), serial, now)
            if not changes and serial == current.serial:
                continue
            index = current.with_changes(serial, changes)
            if serial == current.serial:
                # Expiry alone: the same serial with other content, no NOTIFY. A secondary
                # that took this serial before still has the listing, and an IXFR from it,
                # a difference from this index, would never remove it.
                self._rewritten.add(name)
            elif name in self._rewritten:
                # So the next serial is not offered as a difference from the rewritten one:
                # IXFR from it (or from before it) gets the whole zone.
                self._rewritten.discard(name)
                index = dataclasses.replace(index, changed=None)
            if index.overlay_size > COMPACT_AFTER:
                index = index.compacted()
                compacted = True
            self.indexes[name] = index
            self.publish(index)
            changed.append(name)
        self.expired_until = now
        if compacted:
            self.save_snapshot()
        self.database_serials.update(
            (name, serials[name]) for name in self.zones if name in serials
        )
        self.last_sync = time.time()
        return changed

    async def run(self) -> None:
        """Poll forever; a failed poll is logged and the zones keep their current index."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                changed = await asyncio.to_thread(self.poll_once)
            except Exception as exc:
                self.sync_failures += 1
                if is_unavailable(exc):
                    self.outage.failed(exc)
                else:
                    log.exception("zone sync failed; serving the indexes held")
                continue
            self.outage.recovered()
            for name in changed:
                log.debug("zone %s now at serial %d", name, self.indexes[name].serial)
