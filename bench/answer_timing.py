"""What the answer-latency histogram costs the hot path (`dnsbl.dns.timing`).

1. In process: the hot path's answer to a listed A query (`answer_fast`) against what timing
   adds per UDP batch (two clock reads and one `Latency.record`), so the overhead per query
   at one datagram per batch (a quiet server) and at 64 (a busy one).
2. End to end (with `--baseline DIR`, a checkout without the timing, e.g. the main branch):
   dnsperf against `dnsbl dns` of this tree and of DIR, same store, same query mix, in turns;
   CPU seconds per query of the server process, from /proc.

Usage: .venv/bin/python -m bench.answer_timing [--count N] [--seconds S] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import timeit
from pathlib import Path

from bench.common import (
    ZONE,
    cpu_seconds,
    env,
    fill_store,
    free_port,
    process,
    random_singles,
    wait_until_answering,
    write_config,
)
from bench.dnsperf_vs_rbldnsd import dnsperf, query_file
from dnsbl.config import ZoneSettings
from dnsbl.dns.timing import Latency
from dnsbl.dns.wire import answer_fast
from dnsbl.dns.zones import ZoneTable
from dnsbl.index.values import ValueDefaults
from dnsbl.index.zone_index import ZoneIndex


def in_process() -> None:
    import dns.message

    zone = ZoneSettings(name=ZONE, ns=["ns1.example.org"], hostmaster="hostmaster.example.org")
    table = ZoneTable([zone])
    table.publish(ZoneIndex.from_groups(ZONE, 1, [], ValueDefaults.of(zone)))
    name = f"2.0.0.127.{ZONE}"  # the RFC 5782 test entry: always listed, a hot-path answer
    packet = dns.message.make_query(name, "A", use_edns=False).to_wire()
    assert answer_fast(packet, table, 1232, None) is not None
    number = 200_000
    answer = min(
        timeit.repeat(lambda: answer_fast(packet, table, 1232, None), number=number, repeat=5)
    )
    latency = Latency()
    clock = __import__("time").perf_counter

    def timed_batch() -> None:
        started = clock()
        latency.record("udp", (clock() - started) / 1, 1)

    timing = min(timeit.repeat(timed_batch, number=number, repeat=5))
    per_answer, per_batch = answer / number * 1e6, timing / number * 1e6
    print(f"answer_fast, listed A: {per_answer:.2f} µs per query")
    print(f"timing a batch (2 clock reads + record): {per_batch:.2f} µs per batch")
    for batch in (1, 64):
        share = per_batch / batch / per_answer
        print(f"  batch of {batch:>2}: +{per_batch / batch:.3f} µs per query ({share:.1%})")


def end_to_end(count: int, seconds: int, baseline: Path) -> None:
    addresses = random_singles(count)
    trees = {"this tree": Path(__file__).resolve().parent.parent, "baseline": baseline}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        queries = directory / "queries.txt"
        query_file(queries, addresses)
        port = free_port()
        config = write_config(directory, directory / "bench.sqlite3", port)
        fill_store(config, addresses)
        for round_ in range(2):
            for label, tree in trees.items():
                settings = {**env(), "PYTHONPATH": str(tree)}
                command = [sys.executable, "-m", "dnsbl", "--config", str(config), "dns"]
                with process(command, env=settings, cwd=tree) as server:
                    wait_until_answering(port, limit=120)
                    before = cpu_seconds(server.pid)
                    print(f"{label} (round {round_ + 1}):")
                    qps = dnsperf(port, queries, "-l", str(seconds)).qps
                    used = cpu_seconds(server.pid) - before
                    print(f"  {used / (qps * seconds) * 1e6:.2f} µs CPU per query")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="a checkout without the timing")
    args = parser.parse_args()
    in_process()
    if args.baseline is not None:
        end_to_end(args.count, args.seconds, args.baseline)


if __name__ == "__main__":
    main()
