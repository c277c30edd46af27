"""Self-test latency: the seconds from `POST /v1/self-tests` to its result, on real Postfix.

The Postfix lab of the tests (tests/postfix_lab.py: an open relay on 127.0.0.10 and a closed
one on 127.0.0.11; root needed, and its lock) is started once; each round then gets a fresh
SQLite database, the API as `dnsbl api` serves it (uvicorn on 127.0.0.1) and a worker with
its collector (`run_worker`). In each round the open host and then the closed host ask for a
self-test from their own address (the HTTP client bound to it) and poll
`GET /v1/self-tests/{id}` every 0.1 s until it is done; the figure is the time from the POST
to the first answer with the verdict. The tester keeps its production timeouts and
`--wait-window` (default 120 s, the production default: the worker stops waiting once every
accepted form's message has arrived, so an open relay that delivers them all returns early).

    flock /tmp/dnsbl-bench.lock .venv/bin/python -m bench.self_test_latency [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path


async def _round(directory: Path, lab: object, wait_window: float) -> dict[str, float]:
    from dnsbl.db import make_engine, upgrade
    from dnsbl.listings.store import ListingStore
    from dnsbl.relay.worker import run_worker
    from tests.e2e.loop import api_running, client_from, loop_settings
    from tests.postfix_lab import CLOSED_ADDRESS, OPEN_ADDRESS, PostfixLab

    assert isinstance(lab, PostfixLab)
    url = f"sqlite:///{directory / 'dnsbl.sqlite3'}"
    upgrade(url)
    defaults = {"connect_timeout": 15, "command_timeout": 30, "data_timeout": 60}
    tester = lab.tester_settings(wait_window=wait_window, session_timeout=300, **defaults)
    settings = loop_settings(url, tester)
    engine = make_engine(url)
    ListingStore(engine).ensure_zones(settings.zone_names)
    started, stop = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, engine, started=started, stop=stop))
    seconds: dict[str, float] = {}
    try:
        await asyncio.wait_for(started.wait(), 10)
        async with api_running(settings, engine) as api:
            for name, address in (("open", OPEN_ADDRESS), ("closed", CLOSED_ADDRESS)):
                async with client_from(address, api) as client:
                    began = time.monotonic()
                    asked = await client.post("/v1/self-tests")
                    asked.raise_for_status()
                    while True:
                        body = (await client.get(asked.headers["Location"])).json()
                        if body["status"] in ("done", "refused"):
                            break
                        await asyncio.sleep(0.1)
                    seconds[name] = time.monotonic() - began
                    expected = "confirmed" if name == "open" else "closed"
                    if body["verdict"] != expected:
                        raise SystemExit(f"{address}: {body['verdict']}, not {expected}")
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)
        engine.dispose()
    return seconds


async def _measure(rounds: int, wait_window: float) -> list[dict[str, float]]:
    from tests.postfix_lab import running_lab
    from tests.smtp_fakes import free_port

    results = []
    collector_port = free_port()
    with running_lab(collector_port) as lab:
        for n in range(rounds):
            with tempfile.TemporaryDirectory(prefix="dnsbl-bench-selftest-") as directory:
                seconds = await _round(Path(directory), lab, wait_window)
            print(f"round {n + 1}: open {seconds['open']:.2f} s, closed {seconds['closed']:.2f} s")
            results.append(seconds)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait-window", type=float, default=120.0)
    args = parser.parse_args(argv)
    results = asyncio.run(_measure(args.rounds, args.wait_window))
    for name in ("open", "closed"):
        values = [result[name] for result in results]
        print(
            f"{name}: median {statistics.median(values):.2f} s "
            f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} rounds)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
