"""The zone loader: builds each zone's index from the store and follows the change log.

This is the only part of a DNS node that touches the database. It reads a consistent snapshot
at start, then polls the zone serials every `dns.sync_interval` seconds and applies the changes
after the serial it holds as an overlay (no full reload per change), compacting the overlay in a
worker thread when it grows. Each new index is handed to `publish`; the server swaps its
reference, so a zone is never unanswered, and a failed load keeps the old index.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import Engine

from dnsbl.config import ZoneSettings
from dnsbl.index.values import ValueDefaults
from dnsbl.index.zone_index import COMPACT_AFTER, ZoneIndex
from dnsbl.listings.feed import ListingFeed
from dnsbl.listings.rows import ChangeAction, ChangeRecord

log = logging.getLogger(__name__)


def load_index(engine: Engine, zone: ZoneSettings) -> ZoneIndex:
    """Build the index of `zone` from the active listings in the store."""
    load = ListingFeed(engine).load(zone.name)
    index = ZoneIndex.from_groups(zone.name, load.serial, load.groups, ValueDefaults.of(zone))
    if load.expired:
        # Past their expiry but not yet swept: leave them out as if already removed.
        gone = [ChangeRecord(load.serial, ChangeAction.REMOVE, row) for row in load.expired]
        index = index.with_changes(load.serial, gone).compacted()
    return index


class ZoneFollower:
    """Keeps an up-to-date index of every configured zone and publishes each new one."""

    def __init__(
        self,
        engine: Engine,
        zones: list[ZoneSettings],
        publish: Callable[[ZoneIndex], None],
        interval: float = 0.25,
    ) -> None:
        self.engine = engine
        self.feed = ListingFeed(engine)
        self.zones = {zone.name: zone for zone in zones}
        self.publish = publish
        self.interval = interval
        self.indexes: dict[str, ZoneIndex] = {}

    def load_all(self) -> None:
        """Build and publish every zone's index (blocking; call before serving)."""
        for zone in self.zones.values():
            index = load_index(self.engine, zone)
            self.indexes[zone.name] = index
            self.publish(index)
            log.info("zone %s loaded: %d entries at serial %d", zone.name, len(index), index.serial)

    def poll_once(self) -> list[str]:
        """Apply whatever changed since the last poll; returns the zones republished."""
        serials = self.feed.serials()
        changed = []
        for name in self.zones:
            current = self.indexes.get(name)
            if current is None or serials.get(name, 0) == current.serial:
                continue
            serial, changes = self.feed.changes_since(name, current.serial)
            index = current.with_changes(serial, changes)
            if index.overlay_size > COMPACT_AFTER:
                index = index.compacted()
            self.indexes[name] = index
            self.publish(index)
            changed.append(name)
        return changed

    async def run(self) -> None:
        """Poll forever; a failed poll is logged and the zones keep their current index."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                changed = await asyncio.to_thread(self.poll_once)
            except Exception:
                log.exception("zone sync failed; serving the indexes held")
                continue
            for name in changed:
                log.debug("zone %s now at serial %d", name, self.indexes[name].serial)
