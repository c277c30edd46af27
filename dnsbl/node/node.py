"""A DNS node: the zone loader feeding a DNS server, for `dnsbl dns` and `dnsbl serve`.

The loader (`node.loader.ZoneFollower`) is the only part that reads the database; the server
only ever sees the indexes it publishes.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterator

from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.db import is_unavailable
from dnsbl.dns.server import DnsServer
from dnsbl.listings.store import ListingStore
from dnsbl.metrics import DEFAULT_DNS_PORT, MetricsEndpoint, registry_of
from dnsbl.node.access_keys import KeyFollower
from dnsbl.node.loader import ZoneFollower
from dnsbl.node.metrics import NodeCollector, NodeStats

log = logging.getLogger(__name__)
_SWITCH_INTERVAL = 0.0005  # seconds; see run_dns_node


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
    # The change log is polled on a thread. A thread holding the GIL keeps it up to the
    # switch interval (5 ms by default) before the thread woken by a query (the native
    # loop's, or the event loop) gets it back: a query arriving during a poll waited that
    # long. 0.5 ms bounds that wait (measured in bench/README.md: average latency at 20k
    # queries/s).
    sys.setswitchinterval(_SWITCH_INTERVAL)
    if server is None:
        server = DnsServer(settings.zones, settings.dns)
    if follower is None:
        follower = follower_for(settings, engine, server)
    await first_load(settings, engine, follower)
    keys = key_follower_for(settings, engine, server)
    if keys is not None:
        await asyncio.to_thread(keys.first_load)
    endpoint = None
    if settings.dns.metrics_listen is not None:
        collector = NodeCollector(lambda: NodeStats.of(server, follower))
        endpoint = MetricsEndpoint(
            registry_of([collector]), settings.dns.metrics_listen, DEFAULT_DNS_PORT
        )
    await server.start()
    following = asyncio.create_task(keys.run()) if keys is not None else None
    try:
        if started is not None:
            started.set()
        await follower.run()
    finally:
        await server.stop()
        if keys is not None and following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
            await keys.last_flush()
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


def key_follower_for(settings: Settings, engine: Engine, server: DnsServer) -> KeyFollower | None:
    """The access key follower of `server`, when a zone takes keys (else None)."""
    if not any(zone.access.keys for zone in settings.zones):
        return None
    return KeyFollower(engine, server.access.keys)


FIRST_RETRY = 0.5  # seconds before the first retry of a failed first load
LONGEST_RETRY = 30.0  # the delay doubles up to this


def _retry_delays() -> Iterator[float]:
    delay = FIRST_RETRY
    while True:
        yield delay
        delay = min(delay * 2, LONGEST_RETRY)


def _load_everything(settings: Settings, engine: Engine, follower: ZoneFollower) -> None:
    ListingStore(engine).ensure_zones(settings.zone_names)  # a zone new to the config
    follower.load_all()


async def first_load(
    settings: Settings,
    engine: Engine,
    follower: ZoneFollower,
    *,
    fallback: Callable[[], bool] | None = None,
) -> None:
    """Load every zone before the node serves; while the database is unavailable, retry
    (0.5 s, then twice as long each time, up to 30 s). The node answers nothing until then.

    The outage goes to `follower.outage`: one line as it begins, one a minute, one at the end.
    `fallback` is where a node that has another source (a last-known-good snapshot) plugs it
    in: tried after each failed attempt, it returns True once it has published every zone, and
    the node then serves those while the follower catches up with the database.
    """
    if fallback is None and follower.snapshot is not None:
        fallback = follower.serve_from_snapshot
    for delay in _retry_delays():
        try:
            await asyncio.to_thread(_load_everything, settings, engine, follower)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            follower.outage.failed(exc)
            if fallback is not None and fallback():
                return
            await asyncio.sleep(delay)
        else:
            follower.outage.recovered()
            return
