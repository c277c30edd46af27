"""A DNS node's metrics: one process, and a node of several (`dns.processes`) whose endpoint
sums what every process answered — even one that was replaced."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dnsbl.db import make_engine
from dnsbl.dns.timing import LATENCY_BOUNDS
from dnsbl.listings.store import ListingStore
from dnsbl.node.metrics import NodeCollector, NodeStats, SharedStats, merged, query_labels
from tests.conftest import ZONE, need_program, write_config
from tests.smtp_fakes import free_port


def test_query_labels_read_both_key_shapes() -> None:
    assert query_labels((ZONE, "TXT", "NOERROR"), "python") == (ZONE, "TXT", "NOERROR", "python")
    # (zone, rcode): an engine that does not count the type yet
    assert query_labels((ZONE, "NXDOMAIN"), "native") == (ZONE, "", "NXDOMAIN", "native")


def _stats(queries: int, serial: int, database: int, synced: float) -> NodeStats:
    buckets = [0] * (len(LATENCY_BOUNDS) + 1)
    buckets[2] = queries
    return NodeStats(
        queries=collections.Counter({(ZONE, "A", "NOERROR", "python"): queries}),
        latency={"udp": (buckets, queries * 0.00003)},
        index_serial={ZONE: serial},
        index_entries={ZONE: serial * 10},
        database_serial={ZONE: database},
        last_sync=synced,
        sync_failures=1,
        access=collections.Counter({(ZONE, "key"): queries, (ZONE, "slipped"): 1}),
        key_queries=collections.Counter({"partner-a": queries}),
    )


def test_merged_sums_counters_and_keeps_the_laggard_serials() -> None:
    ended = _stats(5, 1, 1, 1.0)
    total = merged([_stats(3, 7, 8, 100.0), _stats(4, 6, 9, 90.0)], ended)
    assert total.queries[(ZONE, "A", "NOERROR", "python")] == 12
    assert total.latency["udp"][0][2] == 12
    assert total.index_serial == {ZONE: 6}  # the serial every process has reached
    assert total.database_serial == {ZONE: 9}
    assert total.last_sync == 90.0 and total.sync_failures == 3 and total.processes == 2
    assert total.access == {(ZONE, "key"): 12, (ZONE, "slipped"): 3}
    assert total.key_queries == {"partner-a": 12}


def test_verdicts_and_key_use_are_exported() -> None:
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in NodeCollector(lambda: _stats(4, 1, 1, 1.0)).collect()
        for sample in family.samples
    }
    assert samples["dnsbl_dns_access_total", (("verdict", "key"), ("zone", ZONE))] == 4
    assert samples["dnsbl_dns_access_total", (("verdict", "slipped"), ("zone", ZONE))] == 1
    assert samples["dnsbl_dns_access_key_queries_total", (("key", "partner-a"),)] == 4


def test_shared_stats_round_trip_and_keep_an_ended_process(tmp_path: Path) -> None:
    shared = SharedStats(tmp_path)
    shared.write(0, _stats(1, 5, 5, 10.0))
    shared.write(1, _stats(2, 4, 5, 20.0))
    assert NodeStats.from_json(_stats(2, 4, 5, 20.0).to_json()) == _stats(2, 4, 5, 20.0)
    live = _stats(10, 5, 5, 30.0)  # slot 0's own, fresher than its file
    assert merged([live, _stats(2, 4, 5, 20.0)]) == shared.merged(0, live)
    shared.ended(1, pid=4242)
    after = shared.merged(0, live)
    assert after.queries[(ZONE, "A", "NOERROR", "python")] == 12  # its counts stay
    assert after.index_serial == {ZONE: 5} and after.processes == 1  # its serial goes


# -- a node of two processes, for real ------------------------------------------------------


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _eventually(check: Callable[[], bool], what: str, log: Path, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{what}; log:\n{log.read_text()}"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _stopped(pid: int) -> bool:
    """Whether every thread of `pid` has stopped: `kill` returns before they do, and a thread
    still running (the native UDP loop on the other core) may yet take a datagram it will
    not answer until it is continued."""
    states = [
        (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        for task in Path(f"/proc/{pid}/task").iterdir()
    ]
    return all(state in "tT" for state in states)


def _listening_pid(port: int) -> int:
    """The pid of the process listening on TCP `port` (ss -ltnp)."""
    shown = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"pid=(\d+)", shown)
    assert found, shown
    return int(found[1])


def _a_noerror(engine: str) -> tuple[tuple[str, str], ...]:
    return (("engine", engine), ("qtype", "A"), ("rcode", "NOERROR"), ("zone", ZONE))


@pytest.mark.e2e
def test_two_processes_export_one_sum_that_survives_a_replaced_process(
    tmp_path: Path, sqlite_url: str, dns_engine: str
) -> None:
    """(Under each engine: the processes answer with the one `dns.engine` names, and label
    their counts with it.)"""
    need_program("ss")
    a_noerror = _a_noerror(dns_engine)
    metrics_port = free_port()
    config = write_config(tmp_path / "dnsbl.toml", sqlite_url)
    config.write_text(
        config.read_text().replace(
            "[dns]\n", f'[dns]\nprocesses = 2\nmetrics_listen = "127.0.0.1:{metrics_port}"\n'
        )
    )
    dnsbl = [sys.executable, "-m", "dnsbl", "--config", str(config)]
    subprocess.run([*dnsbl, "list", ZONE, "192.0.2.1", "--reason", "x"], check=True)
    log = tmp_path / "dns.log"
    with log.open("wb") as out:
        group = subprocess.Popen([*dnsbl, "dns"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        _eventually(lambda: "DNS listening on" in log.read_text(), "no DNS", log)
        port = int(re.findall(r"DNS listening on 127\.0\.0\.1:(\d+)", log.read_text())[0])
        _eventually(lambda: _samples(url)[("dnsbl_dns_processes", ())] == 2, "two processes", log)
        first = _listening_pid(metrics_port)  # the process that serves the metrics
        (other,) = [pid for pid in _children(group.pid) if pid != first]
        # With the first stopped, only the other can answer: whatever it counts reaches the
        # endpoint through the shared stats, or not at all.
        os.kill(first, signal.SIGSTOP)
        try:
            _eventually(lambda: _stopped(first), "the first process does not stop", log)
            query = dns.message.make_query("1.2.0.192." + ZONE, "A")
            for _ in range(50):
                dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
            time.sleep(SharedStats.EVERY * 2)  # the other's next write of its stats
        finally:
            os.kill(first, signal.SIGCONT)
        _eventually(
            lambda: _samples(url).get(("dnsbl_dns_queries_total", a_noerror)) == 50,
            "the other process's 50 answers are not in the sum",
            log,
        )
        # The other process dies and is replaced: its 50 stay in the sum.
        os.kill(other, signal.SIGKILL)
        _eventually(
            lambda: len([p for p in _children(group.pid) if p not in (first, other)]) == 1,
            "no replacement",
            log,
        )
        dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
        _eventually(
            lambda: _samples(url).get(("dnsbl_dns_queries_total", a_noerror)) == 51,
            "the sum went back after a replaced process",
            log,
        )
        samples = _samples(url)
        engine = make_engine(sqlite_url)
        serial = ListingStore(engine).serials()[ZONE]
        engine.dispose()
        assert samples[("dnsbl_index_serial", (("zone", ZONE),))] == serial
        assert samples[("dnsbl_node_database_serial", (("zone", ZONE),))] == serial
        assert samples[("dnsbl_dns_answer_seconds_count", (("transport", "udp"),))] == 51
    finally:
        group.terminate()
        assert group.wait(timeout=30) == 0, log.read_text()
