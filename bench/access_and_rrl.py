"""Who may ask, and how much: rate limiting under a flood, amplification, and what access
checks cost, in one run.

1. RRL: one /24 (127.0.0.2) floods identical queries at `--rate` (20k qps) for `--seconds`,
   while another client (127.0.1.2) asks 200 queries a second; per second: the flood's
   answers, slipped (TC=1) and dropped, and the other client's answers. Once with rate
   limiting off, once on (`deploy/production.toml`'s settings: 20/s, window 15, slip 2).
2. Amplification: bytes of an ANY answer over the query's, for a listed name with the data
   an admin may give it (three categories, long TXT): UDP now (RFC 8482: one RRset) against
   the full answer (what UDP sent before; TCP still does); and over the whole flood with RRL.
3. Access checks: dnsperf queries/s of the python engine from an allowed source, on an open
   zone and on one with an allow list, on the hot path and on the general path (an unknown
   EDNS option sends every query there), and with an access key in every name.

5. Native: dnsperf queries/s and server CPU per query of `dns.engine = "native"` with rate
   limiting off and on (a limit so high that nothing is held back: what the buckets cost),
   and with an allow list off and on.

4. The same in-process (`timeit`, no sockets): µs a query of the hot path and of the general
   path, open and with an allow list, and of a key name; dnsperf's figures on a shared
   machine move by more than the check costs.

The server runs in a child process (`--serve`), the flooder and dnsperf in this one;
`--parts` picks some of flood, dnsperf, timing, native; `--engine` the flood's engine.
Take the bench lock: `flock /tmp/dnsbl-bench.lock .venv/bin/python -m bench.access_and_rrl`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.query

from bench.common import ZONE, process, query_name, random_singles
from bench.dnsperf_vs_rbldnsd import dnsperf

KEY = "benchkey" + "a" * 24  # 32 characters of [a-z2-7], as `dnsbl accesskey create` makes
LISTED = 2000
_TICK = 0.005  # seconds between two bursts of the flood


def _serve(spec: dict[str, Any]) -> None:
    """The child: a DnsServer with `LISTED` listings, as `spec` configures it, until killed."""
    from dnsbl.config import DnsSettings, ZoneSettings
    from dnsbl.dns.access import KeyEntry, key_digest, utc_day
    from dnsbl.dns.server import DnsServer
    from dnsbl.index.values import ValueDefaults
    from dnsbl.index.zone_index import ZoneIndex
    from dnsbl.listings.rows import ListingRow

    zone = ZoneSettings(
        name=ZONE,
        ns=["ns1.example.org"],
        hostmaster="hostmaster.example.org",
        categories={"open-relay": "127.0.0.2", "relay-output": "127.0.0.3", "spam": "127.0.0.4"},
        access=spec.get("access", {}),
    )
    txt = "Listed at bl.example.org for relaying: details and removal at " + "x" * 120 + " $"
    rows = [ListingRow("open-relay", 4, a, 32, False, None, None) for a in spec["addresses"]]
    for category in ("open-relay", "relay-output", "spam"):  # the amplification name
        rows.append(ListingRow(category, 4, 0x0A000001, 32, False, None, f"{category}: {txt}"))
    index = ZoneIndex.build(ZONE, 1, rows, ValueDefaults.of(zone))
    settings = DnsSettings(
        listen=[f"127.0.0.1:{spec['port']}"],
        rate_limit=spec["rate_limit"],
        engine=spec.get("engine", "auto"),
    )

    async def run() -> None:
        server = DnsServer([zone], settings)
        server.publish(index)
        server.access.keys.replace({key_digest(KEY): KeyEntry("bench", None)}, utc_day())
        await server.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


def _start(spec: dict[str, Any]) -> Any:
    args = [sys.executable, "-m", "bench.access_and_rrl", "--serve", json.dumps(spec)]
    return process(args)


def _wait(port: int) -> None:
    query = dns.message.make_query(ZONE, "SOA")
    for _ in range(300):
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            return
        except (OSError, dns.exception.Timeout):
            time.sleep(0.05)
    raise TimeoutError("the bench server did not answer")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def flood(
    port: int, rate: int, seconds: int, addresses: list[int], qtype: str = "ANY"
) -> list[dict[str, int]]:
    """Flood from 127.0.0.2 and trickle from 127.0.1.2; the counts of each second."""
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    attacker.bind(("127.0.0.2", 0))
    attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    attacker.setblocking(False)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.1.2", 0))
    other.setblocking(False)
    target = ("127.0.0.1", port)
    query = dns.message.make_query(f"1.0.0.10.{ZONE}", qtype).to_wire()
    # The other client asks what a mail server would: a different address each time.
    trickle = [dns.message.make_query(query_name(a), "A").to_wire() for a in addresses]
    per_tick = max(1, int(rate * _TICK))
    seconds_counts: list[dict[str, int]] = []
    counts = _fresh()
    started = time.perf_counter()
    second = 0
    next_tick = started
    while True:
        now = time.perf_counter()
        if int(now - started) > second:
            seconds_counts.append(counts)
            counts = _fresh()
            second += 1
            if second >= seconds:
                break
        if now >= next_tick:
            next_tick += _TICK
            for _ in range(per_tick):
                try:
                    attacker.sendto(query, target)
                    counts["sent"] += 1
                    counts["bytes_in"] += len(query)
                except BlockingIOError:
                    counts["unsent"] += 1
            if counts["other_sent"] < (now - started - second) * 200 + 1:
                other.sendto(trickle[(counts["other_sent"] + 200 * second) % len(trickle)], target)
                counts["other_sent"] += 1
        _drain(attacker, counts, "")
        _drain(other, counts, "other_")
        time.sleep(0)
    time.sleep(0.5)  # late replies count in the last second
    _drain(attacker, seconds_counts[-1], "")
    _drain(other, seconds_counts[-1], "other_")
    attacker.close()
    other.close()
    return seconds_counts


def _fresh() -> dict[str, int]:
    keys = ("sent", "unsent", "answered", "slipped", "bytes_in", "bytes_out")
    return dict.fromkeys((*keys, "other_sent", "other_answered", "other_slipped"), 0)


def _drain(sock: socket.socket, counts: dict[str, int], prefix: str) -> None:
    while True:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        truncated = bool(data[2] & 0x02)
        counts[f"{prefix}slipped" if truncated else f"{prefix}answered"] += 1
        if not prefix:
            counts["bytes_out"] += len(data)


def amplification(port: int) -> tuple[float, float, int]:
    """(UDP ratio, full answer ratio, query bytes) of ANY for the richly listed name."""
    query = dns.message.make_query(f"1.0.0.10.{ZONE}", "ANY", use_edns=0, payload=4096)
    size = len(query.to_wire())
    udp = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    tcp = dns.query.tcp(query, "127.0.0.1", port=port, timeout=2)
    return len(udp.to_wire()) / size, len(tcp.to_wire()) / size, size


def _query_file(path: Path, addresses: list[int], key: str | None) -> None:
    rnd = random.Random(2)
    with path.open("w") as out:
        for _ in range(100_000):
            name = query_name(rnd.choice(addresses))
            if key:
                name = name.replace(f".{ZONE}", f".{key}.{ZONE}")
            out.write(f"{name} A\n")


def _report_flood(title: str, seconds: list[dict[str, int]]) -> None:
    print(f"\n{title}")
    print("  s   sent/s  answered  slipped  dropped | other: sent answered slipped")
    for n, c in enumerate(seconds):
        dropped = max(0, c["sent"] - c["answered"] - c["slipped"])
        print(
            f"  {n:<3} {c['sent']:>7} {c['answered']:>9} {c['slipped']:>8} {dropped:>8} |"
            f" {c['other_sent']:>11} {c['other_answered']:>8} {c['other_slipped']:>7}"
        )
    bytes_in = sum(c["bytes_in"] for c in seconds)
    bytes_out = sum(c["bytes_out"] for c in seconds)
    print(f"  bytes out / bytes in over the flood: {bytes_out / max(bytes_in, 1):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--dnsperf-seconds", type=int, default=10)
    parser.add_argument("--parts", default="flood,dnsperf,timing,native")
    parser.add_argument("--engine", default="auto", help="dns.engine of the flood's server")
    parser.add_argument("--flood-type", default="ANY", help="the flood's qtype (ANY, A)")
    parser.add_argument("--native-rounds", type=int, default=4)
    args = parser.parse_args()
    if args.serve:
        _serve(json.loads(args.serve))
        return
    addresses = random_singles(LISTED)
    parts = args.parts.split(",")
    if "flood" in parts:
        _floods(args, addresses)
    if "dnsperf" in parts:
        _access_dnsperf(args, addresses)
    if "timing" in parts:
        _access_timing(addresses)
    if "native" in parts:
        _native_costs(args, addresses)


def _floods(args: argparse.Namespace, addresses: list[int]) -> None:
    off = {"responses_per_second": 0}
    on = {"responses_per_second": 20, "window": 15, "slip": 2}
    for title, limits in (("rate limiting off", off), ("rate limiting on (20/s, slip 2)", on)):
        port = _free_port()
        spec = {"port": port, "addresses": addresses, "rate_limit": limits, "engine": args.engine}
        with _start(spec):
            _wait(port)
            if limits is off:
                udp, full, size = amplification(port)
                print(f"ANY of a richly listed name, query {size} bytes:")
                print(f"  full answer (UDP before, TCP now): {full:.1f}x; UDP now: {udp:.1f}x")
            _report_flood(
                f"{title}: flood of {args.rate} {args.flood_type} qps from 127.0.0.2",
                flood(port, args.rate, args.seconds, addresses, args.flood_type),
            )


def _access_dnsperf(args: argparse.Namespace, addresses: list[int]) -> None:
    off = {"responses_per_second": 0}
    print(f"\naccess checks, dnsperf {args.dnsperf_seconds} s each, from 127.0.0.1 (allowed):")
    private = {"allow": ["127.0.0.0/8"], "keys": True}
    with tempfile.TemporaryDirectory() as tmp:
        plain, keyed = Path(tmp) / "plain.txt", Path(tmp) / "keyed.txt"
        _query_file(plain, addresses, None)
        _query_file(keyed, addresses, KEY)
        results = {}
        option = ["-E", "65001:00"]  # an unknown EDNS option: the general path
        for label, access, queries, extra in (
            ("open zone, hot path", {}, plain, []),
            ("allow list, hot path", private, plain, []),
            ("open zone, general path", {}, plain, option),
            ("allow list, general path", private, plain, option),
            ("access key in every name (general path)", private, keyed, []),
        ):
            port = _free_port()
            with _start(
                {"port": port, "addresses": addresses, "rate_limit": off, "access": access}
            ):
                _wait(port)
                results[label] = _dnsperf(port, queries, args.dnsperf_seconds, extra)
        for label, qps in results.items():
            print(f"  {label:<40} {qps:>9.0f} qps")
        hot = results["allow list, hot path"] / results["open zone, hot path"]
        general = results["allow list, general path"] / results["open zone, general path"]
        print(f"  access on / off: hot path {hot:.2f}, general path {general:.2f}")


def _native_costs(args: argparse.Namespace, addresses: list[int]) -> None:
    """The native engine's queries/s and CPU per query, RRL and an allow list off and on:
    `--native-rounds` rounds, every other one in reverse order (on a shared machine the
    order of the runs moves the figures), and the median of each."""
    import statistics

    from bench.common import tree_cpu_seconds
    from bench.dnsperf_vs_rbldnsd import dnsperf as dnsperf_run

    off = {"responses_per_second": 0}
    high = {"responses_per_second": 1_000_000, "window": 15, "slip": 2}  # nothing held back
    allow = {"allow": ["127.0.0.0/8"]}
    cases = [
        ("RRL off, open zone", off, {}, "native"),
        ("RRL on (1M/s), open zone", high, {}, "native"),
        ("RRL off, allow list", off, allow, "native"),
        ("RRL on (1M/s), allow list", high, allow, "native"),
        ("python engine, RRL on (1M/s)", high, {}, "python"),  # native before it limited
    ]
    print(f"\nnative engine, dnsperf {args.dnsperf_seconds} s each, from 127.0.0.1:")
    with tempfile.TemporaryDirectory() as tmp:
        queries = Path(tmp) / "plain.txt"
        _query_file(queries, addresses, None)
        results: dict[str, list[tuple[float, float]]] = {case[0]: [] for case in cases}
        for round_ in range(args.native_rounds):
            for label, limits, access, engine in cases if round_ % 2 == 0 else cases[::-1]:
                port = _free_port()
                spec = {"port": port, "addresses": addresses, "rate_limit": limits}
                with _start({**spec, "access": access, "engine": engine}) as server:
                    _wait(port)
                    qps = dnsperf_run(port, queries, "-l", str(args.dnsperf_seconds)).qps
                    before = tree_cpu_seconds(server.pid)
                    run = dnsperf_run(port, queries, "-n", "1")
                    cpu = (tree_cpu_seconds(server.pid) - before) / max(run.completed, 1)
                    results[label].append((qps, cpu))
                print(f"  {label:<28} {qps:>9.0f} qps  {cpu * 1e6:6.2f} µs CPU/query")
        medians = {
            label: (statistics.median(q for q, _ in runs), statistics.median(c for _, c in runs))
            for label, runs in results.items()
        }
        base_qps, base_cpu = medians["RRL off, open zone"]
        print(f"  medians of {args.native_rounds} rounds:")
        for label, (qps, cpu) in medians.items():
            print(
                f"  {label:<28} {qps:>9.0f} qps ({qps / base_qps:.2f}x)"
                f"  {cpu * 1e6:6.2f} µs CPU/query ({cpu / base_cpu:.2f}x)"
            )


def _access_timing(addresses: list[int]) -> None:
    """µs a query, in-process: the hot and the general path, open and with access rules."""
    import timeit

    from dnsbl.config import DnsSettings, ZoneSettings
    from dnsbl.dns.access import KeyEntry, key_digest, utc_day
    from dnsbl.dns.server import DnsServer
    from dnsbl.dns.wire import answer_fast
    from dnsbl.index.values import ValueDefaults
    from dnsbl.index.zone_index import ZoneIndex
    from dnsbl.listings.rows import ListingRow

    name = query_name(addresses[7])
    plain = dns.message.make_query(name, "A").to_wire()
    keyed = dns.message.make_query(name.replace(f".{ZONE}", f".{KEY}.{ZONE}"), "A").to_wire()
    option = dns.edns.GenericOption(65001, b"\x00")
    general = dns.message.make_query(name, "A", use_edns=0, options=[option]).to_wire()
    rows = [ListingRow("bench", 4, a, 32, False, None, None) for a in addresses]
    print("\nper query in-process (timeit, best of 5), from an allowed source:")
    results: dict[str, float] = {}
    for label, access in (("open", {}), ("allow list", {"allow": ["127.0.0.0/8"], "keys": True})):
        zone = ZoneSettings(
            name=ZONE, ns=["ns1.example.org"], hostmaster="h.example.org", access=access
        )
        server = DnsServer([zone], DnsSettings())
        server.publish(ZoneIndex.build(ZONE, 1, rows, ValueDefaults.of(zone)))
        server.access.keys.replace({key_digest(KEY): KeyEntry("bench", None)}, utc_day())
        table, respond = server.table, server.responder.respond
        cases: dict[str, Callable[[], object]] = {
            f"hot path, {label}": partial(answer_fast, plain, table, 1232, None, "127.0.0.1"),
            f"general path, {label}": partial(respond, general, peer="127.0.0.1"),
        }
        if access:
            cases["general path, key name"] = partial(respond, keyed, peer="192.0.2.1")
        for case, call in cases.items():
            assert call() is not None
            number = 20_000 if case.startswith("hot") else 2_000
            best = min(timeit.repeat(call, number=number, repeat=5)) / number
            results[case] = best * 1e6
            print(f"  {case:<28} {best * 1e6:7.2f} µs")
    for path in ("hot path", "general path"):
        added = results[f"{path}, allow list"] - results[f"{path}, open"]
        print(f"  the allow list adds {added:+.2f} µs a query on the {path}")


def _dnsperf(port: int, queries: Path, seconds: int, extra: list[str]) -> float:
    """dnsperf's queries/s against `port` for `seconds` (`extra`: more dnsperf options)."""
    qps = dnsperf(port, queries, "-l", str(seconds), *extra).qps
    print(f"  port {port}: {qps:.0f} qps")
    return qps


if __name__ == "__main__":
    main()
