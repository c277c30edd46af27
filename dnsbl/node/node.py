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
from dnsbl.metrics import DEFAULT_DNS_PORT, MetricsEndpoint, registry_of
from dnsbl.node.loader import ZoneFollower
from dnsbl.node.metrics import NodeCollector, NodeStats

log = logging.getLogger(__name__)


async def run_dns_node(
    settings: Settings,
    engine: Engine,
    *,
    started: asyncio.Event | None = None,
    server: DnsServer | None = None,
    follower: ZoneFollower | None = None,
) -> None:
    """Load every zone, answer DNS, and follow the change log until cancelled.

    `started` is set once the server answers with every zone loaded. Pass `server` (not yet
    started) and `follower` (made with `follower_for`) to read them from outside, e.g. for
    the API's /metrics under `dnsbl serve`. With `dns.metrics_listen` set, the node's metrics
    are served there.
    """
    if server is None:
        server = DnsServer(settings.zones, settings.dns)
    if follower is None:
        follower = follower_for(settings, engine, server)
    await asyncio.to_thread(follower.load_all)
    endpoint = None
    if settings.dns.metrics_listen is not None:
        collector = NodeCollector(lambda: NodeStats.of(server, follower))
        endpoint = MetricsEndpoint(
            registry_of([collector]), settings.dns.metrics_listen, DEFAULT_DNS_PORT
        )
    await server.start()
    try:
        if started is not None:
            started.set()
        await follower.run()
    finally:
        await server.stop()
        if endpoint is not None:
            endpoint.stop()
        log.info("DNS node stopped")


def follower_for(settings: Settings, engine: Engine, server: DnsServer) -> ZoneFollower:
    """The zone loader that feeds `server` from `engine`."""
    return ZoneFollower(
        engine,
        settings.zones,
        server.publish,
        settings.dns.sync_interval,
        snapshot=settings.dns.snapshot,
    )
