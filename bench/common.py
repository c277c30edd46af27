"""Shared pieces of the benchmarks: data sets, a store filled with them, processes, probes.

Everything runs on loopback. Data sets are generated from a fixed seed so that runs compare.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from dnsbl.addresses import Network, ipv4_text

ZONE = "bl.example.org"
ROOT = Path(__file__).resolve().parent.parent
DNSBL = str(Path(sys.executable).with_name("dnsbl"))


def random_singles(count: int, seed: int = 5782) -> list[int]:
    """`count` distinct random public-looking IPv4 addresses (as integers), sorted."""
    rnd = random.Random(seed)
    chosen: set[int] = set()
    while len(chosen) < count:
        address = rnd.getrandbits(32)
        if 0x01000000 <= address < 0x7F000000 or 0x80000000 <= address < 0xDF000000:
            chosen.add(address)
    return sorted(chosen)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, database: Path, port: int, name: str = "bench.toml") -> Path:
    path = directory / name
    path.write_text(
        f'database_url = "sqlite:///{database}"\n'
        f'[dns]\nlisten = ["127.0.0.1:{port}"]\n'
        f'[[zones]]\nname = "{ZONE}"\nns = ["ns1.example.org"]\n'
        'hostmaster = "hostmaster.example.org"\ntxt = "Listed: see https://bl.example.org/$"\n'
    )
    return path


def fill_store(config: Path, addresses: list[int]) -> float:
    """Migrate and load `addresses` as /32 listings through the store; returns seconds taken."""
    from dnsbl.config import load_settings
    from dnsbl.db import make_engine, upgrade
    from dnsbl.listings.store import Entry, ListingStore

    settings = load_settings(config)
    upgrade(settings.database_url)
    store = ListingStore(make_engine(settings.database_url))
    store.ensure_zones([ZONE])
    started = time.perf_counter()
    store.add(ZONE, (Entry(Network(4, a, 32), category="bench") for a in addresses), actor="bench")
    return time.perf_counter() - started


DEFAULT_LINE = ":127.0.0.2:Listed: see https://bl.example.org/$\n"  # the benches' data files'


def write_rbldnsd_file(path: Path, addresses: list[int]) -> None:
    with path.open("w") as out:
        out.write(DEFAULT_LINE)
        for address in addresses:
            out.write(ipv4_text(address) + "\n")


def query_name(address: int) -> str:
    return ".".join(reversed(ipv4_text(address).split("."))) + "." + ZONE


def answers(
    port: int, name: str = f"2.0.0.127.{ZONE}", timeout: float = 0.2, listed: bool = True
) -> bool:
    """Whether `port` answers `name` (with an A record, unless `listed` is False)."""
    try:
        reply = dns.query.udp(
            dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=timeout
        )
    except (OSError, dns.exception.DNSException):  # e.g. a late reply to an earlier query
        return False
    return not listed or (reply.rcode() == dns.rcode.NOERROR and bool(reply.answer))


@contextmanager
def process(args: list[str], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds `pid` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its children (the answering processes of `dns.processes` > 1)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(p) for p in path.read_text().split())] if path.exists() else [pid]


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of `pid` and its living children."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def wait_until_answering(
    port: int, limit: float = 60.0, name: str = f"2.0.0.127.{ZONE}", listed: bool = True
) -> float:
    """Seconds until `name` gets a positive answer on `port` (any answer: `listed` False)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if answers(port, name, listed=listed):
            return time.perf_counter() - started
        time.sleep(0.02)
    raise TimeoutError(f"no answer on port {port} within {limit} s")


@contextmanager
def bench_database(base: str | None, directory: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite in `directory`, or a fresh schema of `base`."""
    from dnsbl.db import upgrade
    from tests.scratch_db import migrated_schema

    if base is None:
        url = f"sqlite:///{directory / 'bench.sqlite3'}"
        upgrade(url)
        yield url
        return
    with migrated_schema(base, "bench") as url:
        yield url


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}
