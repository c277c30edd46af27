"""Spam traps: trap hit → DNS answer latency, and how many hits a second one trap takes.

`dnsbl serve` runs as an operator would run it (DNS, API, worker, collector and the trap in one
process) on SQLite, or (`--database-url`) on a fresh PostgreSQL schema. Then:

1. latency: `--samples` hits, one at a time, each from a new 127.0.2.x source (smtplib bound to
   it); for each, the time from the trap's 250 to the first positive DNS answer for the source
   (asked every 2 ms over UDP), and from the start of the SMTP session to that answer;
2. throughput: `--hits` messages from 250 sources (127.0.3.x, a connection per message, as
   spammers send), `--clients` at a time; hits/s is their number over the time from the first
   connection to the last 250. Every hit must be recorded: the evidence rows and the listed
   sources are counted in the database afterwards.

    .venv/bin/python -m bench.trap_hits [--hits 2000] [--clients 8] [--samples 20]
        [--sync-interval 0.25] [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from bench.common import DNSBL, ZONE, bench_database, env, free_port, process, wait_until_answering

TRAP_DOMAIN = "trap.example.org"
SOURCES = [f"127.0.3.{n}" for n in range(1, 251)]


def _config(directory: Path, url: str, ports: dict[str, int], sync: float) -> Path:
    path = directory / "traps.toml"
    path.write_text(
        f'database_url = "{url}"\n'
        f'[dns]\nlisten = ["127.0.0.1:{ports["dns"]}"]\nsync_interval = {sync}\n'
        f'[api]\nlisten = "127.0.0.1:{ports["api"]}"\n'
        f'[tester]\ncollector_listen = "127.0.0.1:{ports["collector"]}"\n'
        f'[traps]\nlisten = "127.0.0.1:{ports["trap"]}"\ndomains = ["{TRAP_DOMAIN}"]\n'
        "hits_per_source_per_hour = 100000\n"
        f'[[zones]]\nname = "{ZONE}"\nns = ["ns1.example.org"]\n'
        'hostmaster = "hostmaster.example.org"\n'
        '[zones.categories]\nspam-source = "127.0.0.5"\n'
    )
    return path


def _message(n: int) -> bytes:
    return (
        f"From: seller{n}@shop.example\r\nTo: user{n}@{TRAP_DOMAIN}\r\n"
        f"Subject: offer {n}\r\nMessage-ID: <{n}@shop.example>\r\n\r\n" + "buy now!\r\n" * 200
    ).encode()


def _send(port: int, source: str, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(source, 0)) as client:
        client.sendmail(f"seller{n}@shop.example", [f"user{n}@{TRAP_DOMAIN}"], _message(n))


def _listed(dns_port: int, source: str) -> bool:
    name = ".".join(reversed(source.split("."))) + "." + ZONE
    reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=dns_port, timeout=1)
    return reply.rcode() == dns.rcode.NOERROR


def _latency(ports: dict[str, int], samples: int) -> tuple[list[float], list[float]]:
    after_250, whole = [], []
    for n in range(samples):
        source = f"127.0.2.{n + 1}"
        started = time.perf_counter()
        _send(ports["trap"], source, n)
        accepted = time.perf_counter()
        deadline = accepted + 60
        while not _listed(ports["dns"], source):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{source} not listed within 60 s")
            time.sleep(0.002)
        answered = time.perf_counter()
        after_250.append(answered - accepted)
        whole.append(answered - started)
    return after_250, whole


def _throughput(port: int, hits: int, clients: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [
            pool.submit(_send, port, SOURCES[n % len(SOURCES)], 1000 + n) for n in range(hits)
        ]:
            future.result()  # a refused or failed hit fails the bench
    return hits / (time.perf_counter() - started)


def _recorded(url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from dnsbl.db import make_engine
    from dnsbl.models import Listing
    from dnsbl.models.traps import SpamEvidence

    engine = make_engine(url)
    with engine.connect() as conn:
        evidence = conn.scalar(select(func.count()).select_from(SpamEvidence)) or 0
        listed = conn.scalar(
            select(func.count()).select_from(Listing).where(Listing.ended_at.is_(None))
        )
    engine.dispose()
    return int(evidence), int(listed or 0)


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (
        f"median {statistics.median(ordered) * 1000:.0f} ms, p90 {p90 * 1000:.0f} ms, "
        f"max {ordered[-1] * 1000:.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--sync-interval", type=float, default=0.25, help="dns.sync_interval")
    parser.add_argument("--database-url", help="PostgreSQL to run on (a fresh schema)")
    args = parser.parse_args(argv)
    ports = {name: free_port() for name in ("dns", "api", "collector", "trap")}
    with tempfile.TemporaryDirectory() as tmp, bench_database(args.database_url, Path(tmp)) as url:
        config = _config(Path(tmp), url, ports, args.sync_interval)
        # WARNING: a log line per hit would fill the unread stderr pipe and stall the server
        command = [DNSBL, "--config", str(config), "--log-level", "WARNING", "serve"]
        with process(command, env=env()) as serve:
            wait_until_answering(ports["dns"])
            after_250, whole = _latency(ports, args.samples)
            rate = _throughput(ports["trap"], args.hits, args.clients)
            evidence, listed = _recorded(url)
            serve.terminate()
        expected = args.samples + args.hits
        database = "PostgreSQL" if args.database_url else "SQLite"
        print(f"{database}, dns.sync_interval {args.sync_interval} s")
        print(f"trap 250 → DNS answer ({args.samples} hits): {_ms(after_250)}")
        print(f"SMTP connect → DNS answer:                  {_ms(whole)}")
        print(f"hits/s, one trap, {args.clients} clients, {args.hits} hits: {rate:.0f}")
        print(f"recorded: {evidence} of {expected} hits; {listed} sources listed")
        if evidence != expected or listed != args.samples + min(args.hits, len(SOURCES)):
            print("not every hit was recorded", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
