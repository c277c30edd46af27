"""The key follower: keeps a DNS process's access keys current and flushes their use.

Every `KEY_SYNC_INTERVAL` seconds it takes the use the server counted since the last time
(on the event loop, so that no count is lost to a race), writes this process's totals to the
database (`dnsbl.access.keys.record_use`) and reads back the active keys with the day's use
summed over every process. A revoked key is refused from that read on; a quota is enforced
against that sum plus the process's own count since, so a node may overshoot a quota by what
the other processes answered within one interval (and by what any answered while the
database could not be reached: the last keys read stay in force meanwhile).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import secrets
import socket

from sqlalchemy import Engine

from dnsbl.access.keys import active_keys, record_use
from dnsbl.dns.access import KeyBook, utc_day

log = logging.getLogger(__name__)

KEY_SYNC_INTERVAL = 1.0  # seconds between two flushes (and reads) of the keys


class KeyFollower:
    """Moves the access keys from the database into `book`, and their use back."""

    def __init__(self, engine: Engine, book: KeyBook, interval: float = KEY_SYNC_INTERVAL):
        self.engine = engine
        self.book = book
        self.interval = interval
        self.failures = 0
        self.node = ""  # this process's name in the use table, set when it starts following
        self._totals: collections.Counter[tuple[int, str]] = collections.Counter()
        self._unsaved: set[tuple[int, str]] = set()

    def load(self) -> None:
        """Read the active keys and today's use (blocking; call before serving)."""
        day = utc_day()
        self.book.replace(active_keys(self.engine, day), day)

    def first_load(self) -> None:
        """`load`, before serving; a failure leaves no key in force (key names are refused)
        until a later sync succeeds, but does not keep the node from answering the rest."""
        try:
            self.load()
        except Exception:
            self.failures += 1
            log.exception("access keys not loaded; key names are refused until the next sync")

    def sync(self, pending: collections.Counter[tuple[int, str]]) -> None:
        """Write this process's totals grown by `pending`, then read the keys (blocking)."""
        self._totals.update(pending)
        self._unsaved.update(pending)
        today = utc_day()
        record_use(
            self.engine,
            self.node,
            [(day, name, self._totals[day, name]) for day, name in sorted(self._unsaved)],
        )
        self._unsaved.clear()
        for day, name in [entry for entry in self._totals if entry[0] < today - 1]:
            del self._totals[day, name]
        self.load()

    async def run(self) -> None:
        """Flush and reload forever; a failure is logged and the keys held stay in force."""
        # Named here, in the process that answers (a forked child has its own pid), and
        # made unique: two followers must never write each other's row.
        self.node = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(6)}"[-128:]
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                log.exception("access key sync failed; the keys held stay in force")

    async def flush(self) -> None:
        """Take the counted use now and write it (in a worker thread)."""
        await asyncio.to_thread(self.sync, self.book.take_pending())

    async def last_flush(self) -> None:
        """Write the use counted since the last flush, as the process stops (best effort)."""
        try:
            await self.flush()
        except Exception:
            log.exception("the last access key use could not be written")
