"""Growth as a table: stores of 1M, 5M and 10M single IPv4 listings, and what each costs.

Per size, on SQLite (a temporary file) or on a fresh schema of the PostgreSQL given with
`--database-url`:

- import: `dnsbl import` of an rbldnsd file of N random addresses (in random order), its time
  and its peak resident memory (the child's ru_maxrss). `--shape` writes other files of N
  lines: `ip4trie` (the addresses as an ip4trie file, every fourth line the /24 around its
  address instead, none given twice) or `ip6trie` (N random /64s of 2001::/16);
- database size: the SQLite file (with its WAL), or the listings' tables and indexes on
  PostgreSQL, and the bytes per listing;
- node start: `dnsbl dns` launched until it answers the *last* address of the file (every zone
  loaded), cold (from the database; it then writes its `dns.snapshot`) and again from the
  snapshot; the node's resident memory once started;
- AXFR: the time to build every message of a full transfer from the node's index, and its
  rate in records a second;
- IXFR: the time to build the difference of one change (an address listed).

Take the bench lock around it (`flock /tmp/dnsbl-bench.lock …`): a 10M run uses both cores
for minutes.

Usage: .venv/bin/python -m bench.scale [--sizes 1000000,5000000,10000000] [--database-url URL]
       [--shape singles|ip4trie|ip6trie]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dnslib import DNSRecord
from sqlalchemy import text

from bench.common import (
    DEFAULT_LINE,
    DNSBL,
    ZONE,
    env,
    free_port,
    query_name,
    random_singles,
    rss_bytes,
    wait_until_answering,
    write_rbldnsd_file,
)
from dnsbl.addresses import ipv4_text
from dnsbl.config import ZoneSettings, load_settings
from dnsbl.db import make_engine, normalise_url, upgrade
from dnsbl.dns.transfer import changed_since, ixfr_messages, zone_axfr
from dnsbl.dns.zones import ZoneTable
from dnsbl.listings.rows import ChangeAction, ChangeRecord, ListingRow
from dnsbl.node.loader import load_index


@dataclass
class Row:
    size: int
    import_seconds: float = 0.0
    import_peak: int = 0
    database_bytes: int = 0
    cold_start: float = 0.0
    snapshot_start: float = 0.0
    node_rss: int = 0
    axfr_seconds: float = 0.0
    axfr_records: int = 0
    ixfr_seconds: float = 0.0


def write_config(path: Path, url: str, port: int, snapshot: Path) -> Path:
    path.write_text(
        f'database_url = "{url}"\n'
        f'[dns]\nlisten = ["127.0.0.1:{port}"]\nsnapshot = "{snapshot}"\n'
        f'[[zones]]\nname = "{ZONE}"\nns = ["ns1.example.org"]\n'
        'hostmaster = "hostmaster.example.org"\ntxt = "Listed: see https://bl.example.org/$"\n'
    )
    return path


def run_import(config: Path, data: Path) -> tuple[float, int]:
    """Seconds and peak resident bytes of `dnsbl import` of `data`.

    The peak comes from /usr/bin/time, a small process: the child's ru_maxrss as this process
    sees it would include the pages it had before its exec, which are this process's (the
    bench holds millions of addresses while it writes the file).
    """
    started = time.perf_counter()
    done = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "peak %M",
            DNSBL,
            "--config",
            str(config),
            "import",
            ZONE,
            str(data),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env(),
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"import failed: {done.stderr.decode()}")
    peak = [line for line in done.stderr.decode().splitlines() if line.startswith("peak ")]
    return elapsed, int(peak[-1].split()[1]) * 1024


def node_start(config: Path, port: int, last: str) -> tuple[float, int]:
    """Seconds from launching `dnsbl dns` to an answer for the name `last`, and its RSS then."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [DNSBL, "--config", str(config), "dns"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(),
    )
    try:
        wait_until_answering(port, 600, last)
        elapsed = time.perf_counter() - started
        time.sleep(1.0)  # the loader's temporaries freed, the snapshot written
        return elapsed, rss_bytes(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)


def database_bytes(url: str, path: Path | None) -> int:
    if path is not None:
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    engine = make_engine(url)
    with engine.connect() as conn:
        total = conn.execute(
            text(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            )
        ).scalar_one()
    engine.dispose()
    return int(total)


def transfers(url: str, settings: ZoneSettings) -> tuple[float, int, float]:
    """AXFR build seconds and records, and IXFR build seconds of one change."""
    engine = make_engine(url)
    index = load_index(engine, settings)
    engine.dispose()
    table = ZoneTable([settings])
    table.publish(index)
    change = ChangeRecord(
        index.serial + 1,
        ChangeAction.ADD,
        ListingRow("imported", 4, 0x0A000001, 32, False, None, ""),
    )
    zone, _ = table.publish(index.with_changes(index.serial + 1, [change]))
    records = 0
    started = time.perf_counter()
    for message in zone_axfr(DNSRecord.question(ZONE, "AXFR"), zone):
        records += int.from_bytes(message[6:8])
    axfr = time.perf_counter() - started
    found = changed_since(zone, index.serial)
    assert found is not None
    started = time.perf_counter()
    for _ in ixfr_messages(DNSRecord.question(ZONE, "IXFR"), zone, *found):
        pass
    return axfr, records, time.perf_counter() - started


@contextmanager
def database(directory: Path, base: str | None) -> Iterator[tuple[str, Path | None]]:
    if base is None:
        path = directory / "scale.sqlite3"
        yield f"sqlite:///{path}", path
        return
    schema = f"scale_{uuid.uuid4().hex[:8]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = normalise_url(base)
    url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    try:
        yield url, None
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def write_data(directory: Path, size: int, shape: str) -> tuple[Path, str]:
    """An rbldnsd file of `size` lines of `shape` (see the module doc), and the query name of
    an address its last line lists."""
    if shape == "ip6trie":
        rnd = random.Random(size)
        data = directory / f"{size}.ip6trie"
        with data.open("w") as out:
            out.write(DEFAULT_LINE)
            for _ in range(size):
                high = 0x2001 << 48 | rnd.getrandbits(48)
                out.write(
                    f"{high >> 48:x}:{high >> 32 & 0xFFFF:x}:{high >> 16 & 0xFFFF:x}"
                    f":{high & 0xFFFF:x}\n"
                )
        nibbles = f"{high << 64 | 1:032x}"
        return data, ".".join(reversed(nibbles)) + "." + ZONE
    addresses = random_singles(size)
    random.Random(size).shuffle(addresses)
    last = addresses[-1]
    if shape == "singles":
        data = directory / f"singles-{size}.txt"
        write_rbldnsd_file(data, addresses)
        return data, query_name(last)
    data = directory / f"{size}.ip4trie"
    networks: set[int] = set()
    with data.open("w") as out:
        out.write(DEFAULT_LINE)
        for i, address in enumerate(addresses):
            network = address & 0xFFFFFF00
            if i % 4 == 3 and network not in networks:
                networks.add(network)
                out.write(ipv4_text(network) + "/24\n")
            else:
                out.write(ipv4_text(address) + "\n")
    return data, query_name(last)


def measure(directory: Path, size: int, base: str | None, shape: str) -> Row:
    row = Row(size)
    data, last = write_data(directory, size, shape)
    with database(directory, base) as (url, path):
        snapshot = directory / f"node-{size}.snapshot"
        port = free_port()
        config = write_config(directory / "scale.toml", url, port, snapshot)
        upgrade(url)
        row.import_seconds, row.import_peak = run_import(config, data)
        data.unlink()
        row.database_bytes = database_bytes(url, path)
        row.cold_start, _ = node_start(config, port, last)
        assert snapshot.is_file(), "the cold start wrote no snapshot"
        row.snapshot_start, row.node_rss = node_start(config, port, last)
        settings = load_settings(config).zone(ZONE)
        row.axfr_seconds, row.axfr_records, row.ixfr_seconds = transfers(url, settings)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,5000000,10000000")
    parser.add_argument("--database-url", help="PostgreSQL to use (default: SQLite)")
    parser.add_argument("--shape", choices=("singles", "ip4trie", "ip6trie"), default="singles")
    args = parser.parse_args()
    engine = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"| lines ({args.shape}, {engine}) | import | import peak RSS | database | bytes/listing "
        "| cold start | start from snapshot | node RSS | AXFR build | AXFR records/s | IXFR |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in (int(each) for each in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="dnsbl-scale-") as tmp:
            row = measure(Path(tmp), size, args.database_url, args.shape)
        print(
            f"| {size:,} | {row.import_seconds:.1f} s | {row.import_peak / 2**20:.0f} MB "
            f"| {row.database_bytes / 2**20:.0f} MB | {row.database_bytes / size:.0f} "
            f"| {row.cold_start:.2f} s | {row.snapshot_start:.2f} s "
            f"| {row.node_rss / 2**20:.0f} MB | {row.axfr_seconds:.1f} s "
            f"| {row.axfr_records / row.axfr_seconds:,.0f} | {row.ixfr_seconds * 1000:.0f} ms |",
            flush=True,
        )


if __name__ == "__main__":
    main()
