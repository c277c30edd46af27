"""`dnsbl dns` against rbldnsd on the same data and query mix, with dnsperf, in one run.

Both servers load the same 1M single IPv4 listings (rbldnsd from an ip4set file, dnsbl from a
SQLite store filled with the same addresses) and answer the same query mix: listed A, listed
TXT, unlisted A (NXDOMAIN). dnsbl runs once per engine (`dns.engine`: native, python) and per
`--processes` value (`dns.processes`), rbldnsd once (it has one process). For each server:

- queries/s: dnsperf for `--seconds`, the median of `--rounds` rounds;
- CPU per query: user+sys of the server's processes over one pass of the query file (a fixed
  number of queries, sent as fast as dnsperf goes), divided by the queries answered, the
  median of the rounds;
- average latency at a fixed rate (`--rate`, 20k queries/s), as dnsperf reports it, the
  median of the rounds;
- resident memory with the listings, and per listing (against the same server on no data).

Every server runs for the whole bench, and each round takes every server in turn, so that a
machine getting busier or quieter moves all of them alike. What matters are the ratios,
measured in the same run: absolute numbers depend on the machine.

Usage: .venv/bin/python -m bench.dnsperf_vs_rbldnsd [--count N] [--seconds S] [--rounds R]
       [--processes 1,2] [--engines native,python] [--rate 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    DNSBL,
    ZONE,
    env,
    fill_store,
    free_port,
    process,
    process_tree,
    query_name,
    random_singles,
    rss_bytes,
    tree_cpu_seconds,
    wait_until_answering,
    write_config,
    write_rbldnsd_file,
)

QUERIES = 200_000  # lines of the query file: one pass is the fixed count CPU is measured over


def query_file(path: Path, addresses: list[int], count: int = QUERIES) -> None:
    rnd = random.Random(1)
    listed = set(addresses)
    with path.open("w") as out:
        for i in range(count):
            kind = i % 4
            if kind < 2:
                out.write(f"{query_name(rnd.choice(addresses))} A\n")
            elif kind == 2:
                out.write(f"{query_name(rnd.choice(addresses))} TXT\n")
            else:
                address = rnd.getrandbits(32) | 0x01000000
                while address in listed:
                    address += 1
                out.write(f"{query_name(address & 0x7EFFFFFF)} A\n")


@dataclass
class Run:
    """What dnsperf said of one run."""

    qps: float
    completed: int
    lost: int
    latency: float  # average, seconds


def dnsperf(port: int, queries: Path, *options: str) -> Run:
    """dnsperf against 127.0.0.1:`port` with `options` (-l, -n, -Q …)."""
    command = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries)]
    command += ["-c", "4", "-q", "200", "-t", "2", *options]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        if match is None:
            raise RuntimeError(f"dnsperf said no {pattern!r}:\n{out}")
        return float(match.group(1))

    return Run(
        qps=number(r"Queries per second:\s+([\d.]+)"),
        completed=int(number(r"Queries completed:\s+(\d+)")),
        lost=int(number(r"Queries lost:\s+(\d+)")),
        latency=number(r"Average Latency \(s\):\s+([\d.]+)"),
    )


@dataclass
class Figures:
    """One server's figures."""

    rounds: list[float] = field(default_factory=list)
    cpu_rounds: list[float] = field(default_factory=list)  # seconds per query
    latencies: list[float] = field(default_factory=list)  # seconds, at the fixed rate
    rss: int = 0
    rss_empty: int = 0

    @property
    def qps(self) -> float:
        return statistics.median(self.rounds)

    @property
    def cpu_per_query(self) -> float:
        return statistics.median(self.cpu_rounds)

    @property
    def latency(self) -> float:
        return statistics.median(self.latencies)


@dataclass
class Server:
    """A server under test, answering on `port`."""

    label: str
    pid: int
    port: int
    figures: Figures


def measure(servers: list[Server], queries: Path, args: argparse.Namespace) -> None:
    """Every figure in rounds, each round taking every server in turn: a machine that gets
    busier or quieter during the run then moves every server's figures alike, and the
    ratios of one run stay fair (the medians of the rounds are reported)."""
    for server in servers:
        server.figures.rss = tree_rss(server.pid)
    for number in range(args.rounds):
        for server in servers:
            run = dnsperf(server.port, queries, "-l", str(args.seconds))
            print(f"  {server.label}: {run.qps:,.0f} queries/s (lost {run.lost})")
            server.figures.rounds.append(run.qps)
        for server in servers:
            before = tree_cpu_seconds(server.pid)
            run = dnsperf(server.port, queries, "-n", "1")
            cpu = (tree_cpu_seconds(server.pid) - before) / max(run.completed, 1)
            server.figures.cpu_rounds.append(cpu)
            print(f"  {server.label}: {cpu * 1e6:.2f} µs CPU per query over {run.completed}")
        for server in servers:
            run = dnsperf(server.port, queries, "-l", str(args.seconds), "-Q", str(args.rate))
            server.figures.latencies.append(run.latency)
            print(f"  {server.label}: {run.latency * 1e6:.0f} µs average at {args.rate}/s")
        print(f"round {number + 1} of {args.rounds} done")


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and its children (a node of several processes)."""
    return sum(rss_bytes(p) for p in process_tree(pid))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", default="1", help="dns.processes values to run")
    parser.add_argument("--engines", default="native,python", help="dns.engine values to run")
    parser.add_argument("--rate", type=int, default=20_000, help="queries/s of the latency run")
    args = parser.parse_args()
    for tool in ("dnsperf", "rbldnsd"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")
    rbldnsd = shutil.which("rbldnsd") or "/usr/sbin/rbldnsd"
    addresses = random_singles(args.count)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as running:
        directory = Path(tmp)
        queries = directory / "queries.txt"
        query_file(queries, addresses)
        data, empty = directory / "bench.ip4set", directory / "empty.ip4set"
        write_rbldnsd_file(data, addresses)
        write_rbldnsd_file(empty, [])
        store = directory / "bench.sqlite3"
        fill_store(write_config(directory, store, free_port()), addresses)
        empty_dir = directory / "empty"
        empty_dir.mkdir()
        empty_store = empty_dir / "bench.sqlite3"
        fill_store(write_config(empty_dir, empty_store, free_port()), [])
        # rbldnsd chroots into the directory and reads its files as its own user.
        directory.chmod(0o755)
        data.chmod(0o644)
        empty.chmod(0o644)

        def rbldnsd_command(name: str, port: int) -> list[str]:
            options = ["-n", "-b", f"127.0.0.1/{port}", "-r", str(directory), "-w", "/"]
            return [rbldnsd, *options, "-t", "2100", f"{ZONE}:ip4set:{name}"]

        # rbldnsd lists only what its file says (no built-in 127.0.0.2): ask for a listing.
        probe = query_name(addresses[0])
        port = free_port()
        with process(rbldnsd_command(empty.name, port)) as server:
            wait_until_answering(port, limit=120, name=f"2.0.0.127.{ZONE}", listed=False)
            empty_rss = tree_rss(server.pid)
        port = free_port()
        server = running.enter_context(process(rbldnsd_command(data.name, port)))
        wait_until_answering(port, limit=120, name=probe)
        servers = [Server("rbldnsd", server.pid, port, Figures(rss_empty=empty_rss))]
        for engine in args.engines.split(","):
            for count in [int(n) for n in args.processes.split(",")]:
                settings = {
                    **env(),
                    "DNSBL_DNS__PROCESSES": str(count),
                    "DNSBL_DNS__ENGINE": engine,
                }
                port = free_port()
                empty_config = write_config(empty_dir, empty_store, port, f"{port}.toml")
                with process([DNSBL, "--config", str(empty_config), "dns"], env=settings) as node:
                    wait_until_answering(port, limit=120)
                    empty_rss = tree_rss(node.pid)
                config = write_config(directory, store, port, f"{port}.toml")
                node = running.enter_context(
                    process([DNSBL, "--config", str(config), "dns"], env=settings)
                )
                wait_until_answering(port, limit=120)
                label = f"dnsbl {engine} x{count}"
                servers.append(Server(label, node.pid, port, Figures(rss_empty=empty_rss)))
        measure(servers, queries, args)
    report({server.label: server.figures for server in servers}, args)


def report(results: dict[str, Figures], args: argparse.Namespace) -> None:
    reference = results["rbldnsd"]
    print(
        f"\n{args.count:,} listings, {QUERIES:,}-query mix (½ listed A, ¼ listed TXT, ¼ NXDOMAIN),"
        f" {args.rounds} rounds of {args.seconds} s, same machine, same run"
    )
    columns: list[tuple[str, Callable[[Figures], str]]] = [
        ("queries/s (median)", lambda f: f"{f.qps:,.0f} ({f.qps / reference.qps:.2f}×)"),
        (
            "CPU/query",
            lambda f: (
                f"{f.cpu_per_query * 1e6:.2f} µs ({f.cpu_per_query / reference.cpu_per_query:.2f}×)"
            ),
        ),
        (
            f"latency @{args.rate // 1000}k qps",
            lambda f: f"{f.latency * 1e6:.0f} µs ({f.latency / reference.latency:.2f}×)",
        ),
        ("RSS", lambda f: f"{f.rss / 2**20:.1f} MiB"),
        ("bytes/listing", lambda f: f"{(f.rss - f.rss_empty) / args.count:.1f}"),
    ]
    print("| server | " + " | ".join(name for name, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for label, figures in results.items():
        print(f"| {label} | " + " | ".join(cell(figures) for _, cell in columns) + " |")


if __name__ == "__main__":
    main()
