"""Tester throughput: how many hosts a minute one worker tests, against local fake mail servers.

N fake hosts listen on 127.0.1.1 … 127.0.1.N (one port for all, as port 25 would be), served
by a separate process so they do not share the worker's interpreter: a mix of open relays
(take every message, then deliver it to the collector from their own address), closed
servers (refuse relaying at RCPT) and slow ones (greet after `--slow-delay` seconds, then
open or closed). One worker with the collector in-process (`run_worker`) tests all N
nominations, on SQLite or (`--database-url`) on a fresh PostgreSQL schema; the figure is N
over the time from the worker's start to the last verdict, and every verdict is checked
against what the host is. With `--tls` every host offers STARTTLS (a throwaway self-signed
certificate), so every session of the battery pays a TLS handshake.

    .venv/bin/python -m bench.tester_throughput [--hosts 200] [--concurrency 50] [--tls]
        [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import bench_database

BASE = "127.0.1."
DOMAIN = "relaytest.example"


def _kind(n: int) -> str:
    """Host n's behaviour: 2 open, 2 closed, 1 slow (open or closed in turn) of every 5."""
    return ("open", "closed", "open", "closed", "slow-open" if n % 10 < 5 else "slow-closed")[n % 5]


# -- the fake hosts (in their own process) --------------------------------------------------


def _serve_fakes(
    count: int, port: int, collector_port: int, delay: float, tls: Any, ready: Any
) -> None:
    asyncio.run(_fakes(count, port, collector_port, delay, tls, ready))


async def _fakes(
    count: int, port: int, collector_port: int, delay: float, tls: Any, ready: Any
) -> None:
    import aiosmtplib
    from aiosmtpd.smtp import SMTP, Envelope, Session

    from dnsbl.relay.tester.tokens import find_token

    class Handler:
        def __init__(self, address: str, kind: str) -> None:
            self.address, self.kind = address, kind

        async def handle_RCPT(
            self, server: SMTP, session: Session, envelope: Envelope, rcpt: str, options: Any
        ) -> str:
            if self.kind.endswith("closed"):
                return "554 5.7.1 Relay access denied"
            envelope.rcpt_tos.append(rcpt)
            return "250 2.1.5 OK"

        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            tokens = [t for t in map(find_token, envelope.rcpt_tos) if t]
            if tokens:
                # Like a real relay: take the message, answer, deliver from the queue after.
                delivery = asyncio.create_task(self._deliver(envelope, tokens))
                deliveries.add(delivery)
                delivery.add_done_callback(deliveries.discard)
            return "250 2.0.0 queued"

        async def _deliver(self, envelope: Envelope, tokens: list[str]) -> None:
            try:
                await aiosmtplib.send(
                    envelope.original_content or b"",
                    sender=f"relay@[{self.address}]",
                    recipients=[f"rt-{token}@{DOMAIN}" for token in tokens],
                    hostname="127.0.0.1",
                    port=collector_port,
                    source_address=(self.address, 0),
                    timeout=30,
                )
            except (aiosmtplib.SMTPException, OSError) as exc:
                print(f"fake {self.address}: delivery failed: {exc}", file=sys.stderr)

    deliveries: set[asyncio.Task[None]] = set()

    class SlowSMTP(SMTP):
        async def _handle_client(self) -> None:
            await asyncio.sleep(delay)
            await super()._handle_client()

    context = None
    if tls is not None:
        from tests.smtp_fakes import server_tls_context

        context = server_tls_context(*tls)
    loop = asyncio.get_running_loop()
    servers = []
    for n in range(1, count + 1):
        address, kind = f"{BASE}{n}", _kind(n)
        handler = Handler(address, kind)
        cls = SlowSMTP if kind.startswith("slow") else SMTP

        def factory(
            cls: type[SMTP] = cls, handler: Handler = handler, name: str = f"host{n}.bench.example"
        ) -> SMTP:
            return cls(handler, hostname=name, tls_context=context)

        servers.append(await loop.create_server(factory, address, port))
    ready.set()
    await asyncio.Event().wait()


# -- the worker ------------------------------------------------------------------------------


async def _measure(args: argparse.Namespace, directory: Path) -> int:
    from tests.smtp_fakes import free_port, self_signed_certificate

    port, collector_port = free_port(), free_port()
    tls = self_signed_certificate(directory, "bench.example") if args.tls else None
    with bench_database(args.database_url, directory) as url:
        return await _run(args, url, port, collector_port, tls)


async def _run(args: argparse.Namespace, url: str, port: int, collector_port: int, tls: Any) -> int:
    from dnsbl.config import load_settings
    from dnsbl.db import make_engine
    from dnsbl.relay.nominations import get_nomination, submit_nomination
    from dnsbl.relay.worker import run_worker

    settings = load_settings(
        None,
        database_url=url,
        zones=[
            {
                "name": "bl.example.org",
                "ns": ["ns1.example.org"],
                "hostmaster": "hostmaster.example.org",
            }
        ],
        tester={
            "collector_domain": DOMAIN,
            "collector_listen": f"127.0.0.1:{collector_port}",
            "port": port,
            "testable_networks": ["127.0.0.0/8"],
            "reverse_dns_timeout": 0,
            "concurrency": args.concurrency,
            "wait_window": args.wait_window,
            "poll_interval": 0.05,
            "nominations_per_submitter": args.hosts,
            "nominations_per_network": args.hosts,
            "nominations_per_window": args.hosts,
        },
    )
    engine = make_engine(url)
    ready = multiprocessing.Event()
    fakes = multiprocessing.Process(
        target=_serve_fakes,
        args=(args.hosts, port, collector_port, args.slow_delay, tls, ready),
        daemon=True,
    )
    fakes.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the fake hosts did not start")
        ids = {
            f"{BASE}{n}": submit_nomination(engine, settings, f"{BASE}{n}", "bench").id
            for n in range(1, args.hosts + 1)
        }
        started, stop = asyncio.Event(), asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, engine, started=started, stop=stop))
        await started.wait()
        begin = time.perf_counter()
        # One cheap count per look, so that watching does not load the database it measures.
        while await asyncio.to_thread(_settled, engine) < len(ids):
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - begin
        stop.set()
        await worker
        verdicts: dict[str, str | None] = {}
        for address, nomination_id in ids.items():
            view = get_nomination(engine, nomination_id)
            verdicts[address] = view.verdict if view is not None else None
    finally:
        fakes.terminate()
        fakes.join()
        engine.dispose()
    wrong = [
        (address, verdict)
        for address, verdict in verdicts.items()
        if verdict
        != ("confirmed" if _kind(int(address.rsplit(".", 1)[1])).endswith("open") else "closed")
    ]
    rate = len(ids) / elapsed * 60
    kinds = Counter(_kind(n) for n in range(1, args.hosts + 1))
    print(
        f"hosts: {len(ids)} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}); "
        f"concurrency {args.concurrency}; slow greeting {args.slow_delay:g} s; "
        f"database {url.split(':', 1)[0]}{'; STARTTLS offered' if tls else ''}"
    )
    print(f"verdicts: {dict(Counter(verdicts.values()))}; wrong: {len(wrong)} {wrong[:5]}")
    print(f"elapsed: {elapsed:.1f} s")
    print(f"throughput: {rate:.0f} hosts/min (target >= 100)")
    return 0 if not wrong and rate >= 100 else 1


def _settled(engine: Any) -> int:
    from sqlalchemy import func, select

    from dnsbl.models.relay import Nomination

    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).where(Nomination.status == "done")) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--slow-delay", type=float, default=3.0)
    parser.add_argument("--wait-window", type=float, default=120.0)
    parser.add_argument("--tls", action="store_true", help="every host offers STARTTLS")
    parser.add_argument(
        "--database-url", help="a PostgreSQL URL to run on (a fresh schema); default SQLite"
    )
    args = parser.parse_args(argv)
    if args.hosts > 254:
        parser.error("--hosts: at most 254 (127.0.1.1 … 127.0.1.254)")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DNSBL_LOG_LEVEL", "WARNING")
    with tempfile.TemporaryDirectory() as directory:
        return asyncio.run(_measure(args, Path(directory)))


if __name__ == "__main__":
    sys.exit(main())
