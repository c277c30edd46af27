"""Queries per second: `dnsbl dns` against rbldnsd on the same data, with dnsperf, in one run.

Both servers load the same 1M single IPv4 listings (rbldnsd from an ip4set file, dnsbl from a
SQLite store filled with the same addresses) and answer the same query mix: listed A, listed
TXT, unlisted A (NXDOMAIN). dnsperf drives each for the same time; the figure that matters is
the ratio, since absolute numbers depend on the machine. dnsbl runs once per `--processes`
value (`dns.processes`: answering processes sharing the sockets), rbldnsd once (it has one).

Usage: .venv/bin/python -m bench.dnsperf_vs_rbldnsd [--count N] [--seconds S] [--processes 1,2]
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import (
    DNSBL,
    ZONE,
    env,
    fill_store,
    free_port,
    process,
    query_name,
    random_singles,
    wait_until_answering,
    write_config,
    write_rbldnsd_file,
)


def query_file(path: Path, addresses: list[int], count: int = 200_000) -> None:
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


def dnsperf(port: int, queries: Path, seconds: int) -> float:
    out = subprocess.run(
        [
            "dnsperf",
            "-s",
            "127.0.0.1",
            "-p",
            str(port),
            "-d",
            str(queries),
            "-l",
            str(seconds),
            "-c",
            "4",
            "-q",
            "200",
            "-t",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    if match is None:
        raise RuntimeError(out)
    print(f"  port {port}: {match.group(1)} qps, lost {lost.group(1) if lost else '?'}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--processes", default="1,2", help="dns.processes values to run")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    for tool in ("dnsperf", "rbldnsd"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is not installed (apt-get install {tool})")
    rbldnsd = shutil.which("rbldnsd") or "/usr/sbin/rbldnsd"
    addresses = random_singles(args.count)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        data = directory / "bench.ip4set"
        write_rbldnsd_file(data, addresses)
        queries = directory / "queries.txt"
        query_file(queries, addresses)
        ours, theirs = free_port(), free_port()
        config = write_config(directory, directory / "bench.sqlite3", ours)
        fill_store(config, addresses)
        results = {}
        # rbldnsd chroots into the directory and reads its files as its own user.
        directory.chmod(0o755)
        data.chmod(0o644)
        with process(
            [
                rbldnsd,
                "-n",
                "-b",
                f"127.0.0.1/{theirs}",
                "-r",
                str(directory),
                "-w",
                "/",
                "-t",
                "2100",
                f"{ZONE}:ip4set:bench.ip4set",
            ]
        ):
            # rbldnsd lists only what its file says (no built-in 127.0.0.2): ask for a listing.
            wait_until_answering(theirs, limit=120, name=query_name(addresses[0]))
            print("rbldnsd:")
            results["rbldnsd"] = dnsperf(theirs, queries, args.seconds)
        for count in counts:
            settings = {**env(), "DNSBL_DNS__PROCESSES": str(count)}
            with process([DNSBL, "--config", str(config), "dns"], env=settings):
                wait_until_answering(ours, limit=120)
                print(f"dnsbl dns, {count} process(es):")
                results[f"dnsbl x{count}"] = dnsperf(ours, queries, args.seconds)
    for count in counts:
        ratio = results[f"dnsbl x{count}"] / results["rbldnsd"]
        print(
            f"dnsbl ({count} process(es)) / rbldnsd: {ratio:.2f} ({args.count} listings, "
            f"{args.seconds} s each, same query mix, same machine, same run)"
        )


if __name__ == "__main__":
    main()
