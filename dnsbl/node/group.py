"""A DNS node of several processes answering on the same sockets (`dns.processes` > 1).

One Python process answers some tens of thousands of queries a second, most of it spent in
the system calls of receiving and sending. To use more cores, `dnsbl dns` binds its UDP and
TCP sockets once, loads every zone once, and forks `dns.processes` answering processes that
share both: the kernel hands each datagram and each TCP connection to one of them, and the
indexes' big arrays stay shared copy-on-write. Each process then follows the change log on
its own (with its own database connections), exactly as a single node does; only the first
sends NOTIFY, so secondaries hear of a change once.

The parent only supervises: SIGTERM or SIGINT is passed on to every child, and a child that
dies is replaced by a fresh fork (which catches up from the change log). Because the parent
keeps the sockets, there is no moment where the port is closed, and no way for a second
instance to join the group by accident, as SO_REUSEPORT would allow. A child whose parent is
gone stops within a second.

Metrics (`dns.metrics_listen`) are served by the first process, for the whole group: every
process writes its stats to a directory of the parent's every second, and the first merges
them at each scrape (`dnsbl.node.metrics.SharedStats`). The parent runs no thread, so that
forking a replacement is always safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType

from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.dns.notify import Notifier
from dnsbl.dns.server import DnsServer
from dnsbl.dns.sockets import Listener, bind
from dnsbl.metrics import DEFAULT_DNS_PORT, MetricsEndpoint, registry_of
from dnsbl.node.access_keys import KeyFollower
from dnsbl.node.loader import ZoneFollower
from dnsbl.node.metrics import NodeCollector, NodeStats, SharedStats
from dnsbl.node.node import first_load, follower_for, key_follower_for

log = logging.getLogger(__name__)

_PARENT_CHECK = 1.0  # seconds between a child's looks at whether its parent still runs
_FAILING_START = 2.0  # a child failing sooner than this after its fork will fail again


def run_dns_group(settings: Settings, engine: Engine) -> int:
    """Run `settings.dns.processes` DNS processes until SIGTERM/SIGINT; 0 on a clean stop."""
    metrics_listen = settings.dns.metrics_listen
    if metrics_listen is not None:
        MetricsEndpoint.check(metrics_listen, DEFAULT_DNS_PORT)  # a clear error, before forking
    listeners = bind(settings.dns.listen)
    server = DnsServer(settings.zones, settings.dns)
    follower = follower_for(settings, engine, server)
    asyncio.run(first_load(settings, engine, follower))
    keys = key_follower_for(settings, engine, server)
    if keys is not None:
        keys.first_load()
    engine.dispose()  # no database connection is shared with the children
    endpoints = ", ".join("{}:{}".format(*udp.getsockname()[:2]) for udp, _ in listeners)
    log.info("DNS listening on %s with %d processes", endpoints, settings.dns.processes)
    directory = Path(tempfile.mkdtemp(prefix="dnsbl-dns-stats-"))
    try:
        group = _Group(server, follower, keys, listeners, SharedStats(directory), metrics_listen)
        return group.run(settings.dns.processes)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class _Group:
    """The parent: forks the answering processes and keeps their number up."""

    def __init__(
        self,
        server: DnsServer,
        follower: ZoneFollower,
        keys: KeyFollower | None,
        listeners: list[Listener],
        shared: SharedStats,
        metrics_listen: str | None,
    ):
        self.server = server
        self.follower = follower
        self.keys = keys
        self.listeners = listeners
        self.shared = shared
        self.metrics_listen = metrics_listen
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (slot, fork time)
        self.stopping = False

    def run(self, processes: int) -> int:
        previous = {
            signum: signal.signal(signum, self._stop) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        status = 0
        try:
            for slot in range(processes):
                self._fork(slot)
            while self.children:
                pid, wait_status = os.wait()
                slot, forked = self.children.pop(pid, (-1, 0.0))
                if slot >= 0:
                    self.shared.ended(slot, pid)
                if self.stopping or slot < 0:
                    continue
                code = os.waitstatus_to_exitcode(wait_status)  # negative: killed by a signal
                log.error("DNS process %d (pid %d) ended with status %d", slot, pid, code)
                young = time.monotonic() - forked < _FAILING_START
                if young and code > 0:
                    log.error("DNS process %d failed right after starting: stopping", slot)
                    status = 1
                    self._stop(signal.SIGTERM, None)
                    continue
                if young:
                    time.sleep(_FAILING_START)  # killed as soon as forked: not in a tight loop
                if not self.stopping:
                    self._fork(slot)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for udp, tcp in self.listeners:
                udp.close()
                tcp.close()
        log.info("DNS group stopped")
        return status

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _fork(self, slot: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.children[pid] = (slot, time.monotonic())
            return
        # The child: never return into the parent's code.
        code = 1
        try:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            self.follower.engine.dispose(close=False)  # the parent's pool is not ours
            if slot:
                self.server.notifier = Notifier([])
                self.follower.snapshot = None  # the first process writes the group's snapshot
            code = asyncio.run(self._answer(slot, parent))
        except BaseException:
            log.exception("DNS process %d failed", slot)
        finally:
            logging.shutdown()
            os._exit(code)

    async def _answer(self, slot: int, parent: int) -> int:
        """One answering process: serve the shared sockets, follow the change log, share
        its stats (and, in the first, serve the group's metrics)."""
        server, follower, shared = self.server, self.follower, self.shared
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await server.start(self.listeners)
        endpoint = None
        if slot == 0 and self.metrics_listen is not None:
            group = NodeCollector(lambda: shared.merged(slot, NodeStats.of(server, follower)))
            endpoint = MetricsEndpoint(registry_of([group]), self.metrics_listen, DEFAULT_DNS_PORT)
        following = asyncio.create_task(follower.run())
        keys = asyncio.create_task(self.keys.run()) if self.keys is not None else None
        last_shared = 0.0
        try:
            while not stop.is_set():
                if os.getppid() != parent:
                    log.error("the DNS group's parent is gone: stopping")
                    break
                if loop.time() - last_shared >= SharedStats.EVERY:
                    last_shared = loop.time()
                    shared.write(slot, NodeStats.of(server, follower))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(_PARENT_CHECK, SharedStats.EVERY))
        finally:
            following.cancel()
            if keys is not None:
                keys.cancel()
            await asyncio.gather(following, *([keys] if keys else []), return_exceptions=True)
            await server.stop()
            if self.keys is not None:
                await self.keys.last_flush()
            shared.write(slot, NodeStats.of(server, follower))
            if endpoint is not None:
                endpoint.stop()
        return 0
