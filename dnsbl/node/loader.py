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
from dnsbl.index.zone_index import COMPACT_AFTER, Value, ZoneIndex
from dnsbl.listings.store import ChangeRecord, ListingStore

log = logging.getLogger(__name__)


def load_index(engine: Engine, zone: ZoneSettings) -> ZoneIndex:
    """Build the index of `zone` from the active listings in the store."""
    serial, groups, expired = ListingStore(engine).load_groups(zone.name)
    index = ZoneIndex.from_groups(
        zone.name,
        serial,
        groups,
        default_code=zone.default_code,
        default_txt=zone.txt,
        category_codes=zone.categories,
    )
    if expired:
        # Past their expiry but not yet swept: leave them out as if already removed.
        gone = [ChangeRecord(serial, "remove", row) for row in expired]
        index = apply_changes(index, zone, serial, gone).compacted()
    return index


def apply_changes(
    index: ZoneIndex, zone: ZoneSettings, serial: int, changes: list[ChangeRecord]
) -> ZoneIndex:
    """The index with the change log entries applied, at `serial`."""
    decoded = []
    for change in changes:
        row = change.listing
        value = None
        if not row.excluded:
            value = Value(
                row.category,
                row.code if row.code is not None else zone.code_for(row.category),
                (row.txt if row.txt is not None else zone.txt) or None,
            )
        decoded.append((change.action, row.category, row.network, row.excluded, value))
    return index.with_changes(serial, decoded)


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
        self.store = ListingStore(engine)
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
        serials = self.store.serials()
        changed = []
        for name, zone in self.zones.items():
            current = self.indexes.get(name)
            if current is None or serials.get(name, 0) == current.serial:
                continue
            serial, changes = self.store.changes_since(name, current.serial)
            index = apply_changes(current, zone, serial, changes)
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
