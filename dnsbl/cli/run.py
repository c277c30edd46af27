"""`dnsbl dns`, `api`, `worker` and `serve`: the long-running roles, stopped by a signal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from dnsbl.cli.context import Context
from dnsbl.errors import ConfigError

if TYPE_CHECKING:
    from dnsbl.traps.metrics import TrapStats

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    dns = subparsers.add_parser("dns", help="run a DNS node (answers the zones from the database)")
    dns.set_defaults(handler=_dns)
    api = subparsers.add_parser("api", help="serve the REST API and the web pages")
    api.set_defaults(handler=_api)
    worker = subparsers.add_parser(
        "worker",
        help="run the relay tester's worker and collector, and the spam trap ([traps]), "
        "until SIGINT/SIGTERM",
    )
    worker.add_argument(
        "--no-collector",
        action="store_true",
        help="leave the collector to another worker (arrivals come through the database)",
    )
    worker.add_argument(
        "--no-traps", action="store_true", help="leave the spam trap to another worker"
    )
    worker.set_defaults(handler=_worker)
    serve = subparsers.add_parser(
        "serve", help="run everything in one process: migrations, then DNS, API, worker"
    )
    serve.set_defaults(handler=_serve)


def _dns(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.node.group import run_dns_group
    from dnsbl.node.node import run_dns_node

    if not context.settings.zones:
        raise ConfigError(
            "zones: none configured, so a DNS node would answer nothing; add a [[zones]] table"
        )
    # The node makes the zones' rows itself, once the database answers (dnsbl.node.node).
    if context.settings.dns.processes > 1:
        return run_dns_group(context.settings, context.engine)
    return run_until_signal([run_dns_node(context.settings, context.engine)])


def _api(context: Context, args: argparse.Namespace) -> int:
    from api.server import run_api

    context.store  # noqa: B018 -- make sure every configured zone has its row
    return run_until_signal([run_api(context.settings, context.engine)])


def _worker(context: Context, args: argparse.Namespace) -> int:
    from dnsbl.relay.worker import run_worker
    from dnsbl.traps.metrics import TrapStats

    context.store  # noqa: B018 -- make sure every configured zone has its row
    trap_stats = TrapStats()
    worker = run_worker(
        context.settings,
        context.engine,
        collector=not args.no_collector,
        collectors=[trap_stats],
    )
    traps = [] if args.no_traps else trap_roles(context, trap_stats)
    return run_until_signal([worker, *traps])


def trap_roles(context: Context, stats: TrapStats) -> list[Coroutine[Any, Any, None]]:
    """The spam trap, when `[traps]` names any trap (domains or addresses)."""
    from dnsbl.traps.service import run_traps

    if not context.settings.traps.enabled:
        return []
    return [run_traps(context.settings, context.engine, stats=stats)]


def serve_roles(context: Context) -> list[Coroutine[Any, Any, None]]:
    """The coroutines `dnsbl serve` runs side by side (one line per role)."""
    from api.server import run_api
    from dnsbl.db import engine_for
    from dnsbl.dns.server import DnsServer
    from dnsbl.node.metrics import NodeCollector, NodeStats
    from dnsbl.node.node import follower_for, run_dns_node
    from dnsbl.relay.metrics import WorkerStats
    from dnsbl.relay.worker import run_worker
    from dnsbl.traps.metrics import TrapStats

    if context.settings.dns.processes > 1:
        log.warning("dns.processes is for `dnsbl dns`: `dnsbl serve` answers DNS in one process")
    settings = context.settings
    dns_server = DnsServer(settings.zones, settings.dns)
    dns_started = asyncio.Event()
    # The DNS node reads through an engine of its own: its connections never carry a
    # writer's large SQLite page cache (see dnsbl.db), so the node stays small.
    dns_engine = engine_for(settings)
    follower = follower_for(settings, dns_engine, dns_server)
    worker_stats = WorkerStats()
    trap_stats = TrapStats()
    # The API reports the DNS node's and the worker's metrics (/metrics), and the DNS
    # node's readiness (/readyz).
    node = NodeCollector(lambda: NodeStats.of(dns_server, follower))
    return [
        run_dns_node(
            settings, dns_engine, started=dns_started, server=dns_server, follower=follower
        ),
        run_api(
            settings,
            context.engine,
            dns_ready=dns_started.is_set,
            collectors=[node, worker_stats, trap_stats],
        ),
        # with the collector, once per process
        run_worker(settings, context.engine, stats=worker_stats),
        *trap_roles(context, trap_stats),
    ]


def _serve(context: Context, args: argparse.Namespace) -> int:
    context.migrate()
    context.store  # noqa: B018 -- make sure every configured zone has its row
    return run_until_signal(serve_roles(context))


def run_until_signal(roles: list[Coroutine[Any, Any, None]]) -> int:
    """Run `roles` until SIGINT or SIGTERM, or until one of them fails; 0 on a clean stop."""
    return asyncio.run(_run(roles))


async def _run(roles: list[Coroutine[Any, Any, None]]) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    tasks = [asyncio.create_task(role) for role in roles]
    waiter = asyncio.create_task(stopping.wait())
    await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    status = 0
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("a role failed, stopping: %s", exc, exc_info=exc)
            status = 1
        task.cancel()
    waiter.cancel()
    await asyncio.gather(*tasks, waiter, return_exceptions=True)
    # The handlers stay until the loop closes: a second signal during shutdown changes nothing.
    return status
