"""`make bench`: the DNS comparison (`bench.dnsperf_vs_rbldnsd`: each engine beside rbldnsd),
under the machine's benchmark lock so that two benchmarks never share the cores.

Arguments are passed on: `make bench ARGS="--count 100000"`.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from bench import dnsperf_vs_rbldnsd

LOCK = Path("/tmp/dnsbl-bench.lock")


def main() -> None:
    with LOCK.open("a") as lock:
        print(f"waiting for {LOCK} …", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        dnsperf_vs_rbldnsd.main()


if __name__ == "__main__":
    main()
