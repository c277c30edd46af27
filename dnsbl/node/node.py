"""A DNS node: the zone loader feeding a DNS server, for `dnsbl dns` and `dnsbl serve`.

The loader (`node.loader.ZoneFollower`) is the only part that reads the database; the server
only ever sees the indexes it publishes.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.dns.server import DnsServer
from dnsbl.node.loader import ZoneFollower

log = logging.getLogger(__name__)


async def run_dns_node(
    settings: Settings,
    engine: Engine,
    *,
    started: asyncio.Event | None = None,
    server: DnsServer | None = None,
) -> None:
    """Load every zone, answer DNS, and follow the change log until cancelled.

    `started` is set once the server answers with every zone loaded. Pass `server` (not yet
    started) to read its `endpoints` and `counts` from outside, e.g. for /metrics.
    """
    if server is None:
        server = DnsServer(settings.zones, settings.dns)
    follower = ZoneFollower(engine, settings.zones, server.publish, settings.dns.sync_interval)
    await asyncio.to_thread(follower.load_all)
    await server.start()
    try:
        if started is not None:
            started.set()
        await follower.run()
    finally:
        await server.stop()
        log.info("DNS node stopped")
