"""What a DNS node exports: queries, answer latency, and how far it follows the database.

The server counts into plain structures as it answers (`DnsServer.counts`, one increment per
query, and its latency histogram); the loader notes each zone's serial in the database at
its last successful poll. `NodeStats.of` copies them at scrape time into plain data, and
`NodeCollector` turns that into Prometheus families: nothing in the hot path calls
prometheus-client. A node of several processes (`dns.processes`) merges their stats first
(`merged`; `dnsbl.node.group` passes them between processes as JSON files).
"""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from dnsbl.dns.server import DnsServer
from dnsbl.dns.timing import LATENCY_BOUNDS, add_histogram
from dnsbl.metrics import counter_family
from dnsbl.node.loader import ZoneFollower

QueryLabels = tuple[str, str, str, str]  # zone, qtype, rcode, engine


def query_labels(key: tuple[str, ...], engine: str) -> QueryLabels:
    """The labels of one `DnsServer.counts` key: the one place that knows the key's shape.

    Keys are (zone, qtype, rcode); (zone, rcode), from before qtype was counted, reads as
    qtype "" so that an engine counting the older shape still exports.
    """
    if len(key) == 3:
        return key[0], key[1], key[2], engine
    return key[0], "", key[-1], engine


@dataclass
class NodeStats:
    """A DNS node's numbers as plain data: counters add up, serials are the node's floor."""

    queries: collections.Counter[QueryLabels] = field(default_factory=collections.Counter)
    # transport -> (count per latency bucket, the last one for slower answers; sum of seconds)
    latency: dict[str, tuple[list[int], float]] = field(default_factory=dict)
    index_serial: dict[str, int] = field(default_factory=dict)
    index_entries: dict[str, int] = field(default_factory=dict)
    database_serial: dict[str, int] = field(default_factory=dict)
    last_sync: float = 0.0  # Unix time of the last successful look at the database
    sync_failures: int = 0
    processes: int = 1
    # (zone, verdict) of the zones with access rules and of rate limiting (dnsbl.dns.access)
    access: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    key_queries: collections.Counter[str] = field(default_factory=collections.Counter)

    @classmethod
    def of(cls, server: DnsServer, follower: ZoneFollower) -> NodeStats:
        """A copy of what `server` and `follower` hold now (any thread may call)."""
        engine = getattr(server, "engine", "python")
        queries: collections.Counter[QueryLabels] = collections.Counter()
        for key, count in list(server.counts.items()):
            queries[query_labels(key, engine)] += count
        indexes = dict(follower.indexes)
        return cls(
            queries=queries,
            latency=server.latency.snapshot(),
            index_serial={zone: index.serial for zone, index in indexes.items()},
            index_entries={zone: len(index) for zone, index in indexes.items()},
            database_serial=dict(follower.database_serials),
            last_sync=follower.last_sync,
            sync_failures=follower.sync_failures,
            access=collections.Counter(dict(server.access.counts)),
            key_queries=collections.Counter(dict(server.access.keys.answered)),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "queries": [[*labels, count] for labels, count in self.queries.items()],
                "latency": self.latency,
                "index_serial": self.index_serial,
                "index_entries": self.index_entries,
                "database_serial": self.database_serial,
                "last_sync": self.last_sync,
                "sync_failures": self.sync_failures,
                "access": [[*labels, count] for labels, count in self.access.items()],
                "key_queries": self.key_queries,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> NodeStats:
        data: dict[str, Any] = json.loads(text)
        return cls(
            queries=collections.Counter({tuple(item[:4]): item[4] for item in data["queries"]}),
            latency={key: (list(value[0]), value[1]) for key, value in data["latency"].items()},
            index_serial=data["index_serial"],
            index_entries=data["index_entries"],
            database_serial=data["database_serial"],
            last_sync=data["last_sync"],
            sync_failures=data["sync_failures"],
            access=collections.Counter({(z, v): n for z, v, n in data.get("access", [])}),
            key_queries=collections.Counter(data.get("key_queries", {})),
        )


def _add_counters(total: NodeStats, part: NodeStats) -> None:
    total.queries.update(part.queries)
    for transport, histogram in part.latency.items():
        add_histogram(total.latency, transport, histogram)
    total.sync_failures += part.sync_failures
    total.access.update(part.access)
    total.key_queries.update(part.key_queries)


def merged(parts: Iterable[NodeStats], retired: NodeStats | None = None) -> NodeStats:
    """One node's stats from its processes': counters summed (with those of processes that
    ended, `retired`), each zone at the lowest serial any process answers from, the database
    at the highest serial any saw, and the oldest of their last successful syncs."""
    parts = list(parts)
    total = NodeStats(processes=len(parts))
    for part in [*parts, *([retired] if retired else [])]:
        _add_counters(total, part)
    for part in parts:
        for zone, serial in part.index_serial.items():
            total.index_serial[zone] = min(serial, total.index_serial.get(zone, serial))
        for zone, entries in part.index_entries.items():
            total.index_entries[zone] = min(entries, total.index_entries.get(zone, entries))
        for zone, serial in part.database_serial.items():
            total.database_serial[zone] = max(serial, total.database_serial.get(zone, serial))
    total.last_sync = min((part.last_sync for part in parts), default=0.0)
    return total


class SharedStats:
    """The stats of a node's processes (`dns.processes` > 1), shared through a directory.

    Each answering process writes its stats to `slot-N.json` every `EVERY` seconds
    (replacing the file at once, so a reader never sees half of one); the process serving
    the metrics merges the files with its own live stats at each scrape. When a process
    ends, the parent renames its last file to `ended-PID.json` in one step: its counts stay
    in the sums (the node's counters never go back) and its serials drop out.
    """

    EVERY = 1.0

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, slot: int, stats: NodeStats) -> None:
        path = self.directory / f"slot-{slot}.json"
        partial = path.with_name(f".{path.name}.tmp")
        partial.write_text(stats.to_json())
        partial.replace(path)

    def ended(self, slot: int, pid: int) -> None:
        """The process in `slot` (`pid`) ended: keep its counts, forget its serials."""
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"slot-{slot}.json").replace(self.directory / f"ended-{pid}.json")

    def merged(self, slot: int, own: NodeStats) -> NodeStats:
        """The node's stats: `own` (the live ones of `slot`) with every other file's."""
        live, ended = [own], NodeStats(processes=0)
        for path in self.directory.glob("*.json"):
            try:
                part = NodeStats.from_json(path.read_text())
            except (OSError, ValueError, KeyError):
                continue  # renamed away or replaced while listed: read at the next scrape
            if path.name.startswith("ended-"):
                _add_counters(ended, part)
            elif path.name != f"slot-{slot}.json":
                live.append(part)
        return merged(live, ended)


class NodeCollector:
    """The families of a DNS node, from `source()` at every scrape."""

    def __init__(self, source: Callable[[], NodeStats]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        stats = self.source()
        queries = CounterMetricFamily(
            "dnsbl_dns_queries",
            "DNS queries answered, by zone, query type, response code and engine.",
            labels=["zone", "qtype", "rcode", "engine"],
        )
        for labels, count in sorted(stats.queries.items()):
            queries.add_metric(list(labels), count)
        yield queries
        yield counter_family(
            "dnsbl_dns_access",
            "Queries to zones with access rules, and answers held back by rate limiting, by "
            "zone and verdict (allowed, key, denied, over-quota, rate-limited, slipped).",
            ["zone", "verdict"],
            stats.access,
        )
        yield counter_family(
            "dnsbl_dns_access_key_queries",
            "Queries answered under each access key by this node (its quota counts every node's).",
            ["key"],
            stats.key_queries,
        )
        latency = HistogramMetricFamily(
            "dnsbl_dns_answer_seconds",
            "Time from reading a query to handing its answer to the socket, by transport "
            "(UDP: the mean of each batch read at once; see dnsbl.dns.timing).",
            labels=["transport"],
        )
        for transport, (buckets, seconds) in sorted(stats.latency.items()):
            cumulative, running = [], 0
            for bound, count in zip([*LATENCY_BOUNDS, float("inf")], buckets, strict=True):
                running += count
                cumulative.append((_bound(bound), running))
            latency.add_metric([transport], cumulative, seconds)
        yield latency
        yield _per_zone(
            "dnsbl_index_serial",
            "The serial each zone is answered from (with several processes: the lowest).",
            stats.index_serial,
        )
        yield _per_zone(
            "dnsbl_index_entries", "Networks in each zone's index.", stats.index_entries
        )
        yield _per_zone(
            "dnsbl_node_database_serial",
            "Each zone's serial in the database at this node's last successful look.",
            stats.database_serial,
        )
        synced = GaugeMetricFamily(
            "dnsbl_node_last_sync_timestamp_seconds",
            "When this node last read the database successfully (Unix time; with several "
            "processes, the oldest).",
        )
        synced.add_metric([], stats.last_sync)
        yield synced
        failures = CounterMetricFamily(
            "dnsbl_node_sync_failures", "Looks at the database that failed (the index was kept)."
        )
        failures.add_metric([], stats.sync_failures)
        yield failures
        processes = GaugeMetricFamily("dnsbl_dns_processes", "Processes answering DNS.")
        processes.add_metric([], stats.processes)
        yield processes


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"


def _per_zone(name: str, documentation: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=["zone"])
    for zone, value in sorted(values.items()):
        family.add_metric([zone], value)
    return family
