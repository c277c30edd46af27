"""The trap as a role: its sink, run by `dnsbl worker` and `dnsbl serve` when traps are set.

The sink's threads call `take_trap_hit` for each message; the database write happens there
(one transaction for the listing, one for the evidence), and the sink answers once both are
done. Several workers may each run a trap on their own `traps.listen`: sources are listed in
the database, which every process shares.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.traps.intake import take_trap_hit
from dnsbl.traps.metrics import TrapStats
from dnsbl.traps.sink import TrapSink

log = logging.getLogger(__name__)


async def run_traps(
    settings: Settings,
    engine: Engine,
    *,
    stats: TrapStats | None = None,
    started: asyncio.Event | None = None,
) -> None:
    """Run the trap until cancelled."""
    sink = TrapSink(settings.traps, partial(take_trap_hit, engine, settings), stats)
    await asyncio.to_thread(sink.start)
    try:
        if started is not None:
            started.set()
        await asyncio.Event().wait()
    finally:
        await asyncio.to_thread(sink.stop)
