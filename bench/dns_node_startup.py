"""Memory and start-up of a DNS node over a 1M-listing SQLite store.

Measures, in one run:
- start-up: seconds from launching `dnsbl dns` to the first answer (the zone fully loaded:
  the node answers nothing until every zone is built);
- memory: the node's resident set with 1M single IPv4 listings minus its resident set with an
  empty zone, divided by 1M (the issue's limit: 32 bytes a listing; rbldnsd: 16).

Usage: .venv/bin/python -m bench.dns_node_startup [--count N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.common import (
    DNSBL,
    answers,
    env,
    fill_store,
    free_port,
    process,
    query_name,
    random_singles,
    rss_bytes,
    wait_until_answering,
    write_config,
)


def measure(directory: Path, addresses: list[int]) -> tuple[float, int]:
    port = free_port()
    config = write_config(directory, directory / f"store-{len(addresses)}.sqlite3", port)
    fill_store(config, addresses)
    started = time.perf_counter()
    with process([DNSBL, "--config", str(config), "dns"], env=env()) as proc:
        wait_until_answering(port)
        elapsed = time.perf_counter() - started
        if addresses:
            assert answers(port, query_name(addresses[len(addresses) // 2]))
        time.sleep(1.0)  # let the loader's temporaries be freed before reading RSS
        return elapsed, rss_bytes(proc.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        empty_start, empty_rss = measure(directory, [])
        full_start, full_rss = measure(directory, random_singles(args.count))
    per_entry = (full_rss - empty_rss) / args.count
    print(f"listings:               {args.count}")
    print(f"start-up, empty zone:   {empty_start:.2f} s to first answer")
    print(f"start-up, full zone:    {full_start:.2f} s to first answer (limit 5 s)")
    print(f"RSS empty / full:       {empty_rss / 2**20:.1f} MiB / {full_rss / 2**20:.1f} MiB")
    print(f"memory per listing:     {per_entry:.1f} bytes (limit 32; rbldnsd 16)")


if __name__ == "__main__":
    main()
