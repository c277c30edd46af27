"""Answer latency as a histogram of plain counts, cheap enough for the hot path.

Timing every UDP query would cost two clock reads and a bisection each, a few percent of a
hot-path answer. The UDP listener instead times each batch it reads at one readiness event
(up to 64 datagrams, or one at low load) and records the batch's mean per query, once per
batch, weighted by its size: at low load that is each query's own time; under load it is the
time each spent on average, which is what a busy server's operator wants to see. TCP answers
are timed one by one (they are few). The native engine's loops keep the same histogram in C
(`Engine.latency`), read at snapshot time (`Latency.attach`). Exported by
`dnsbl.node.metrics` at scrape time.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

# Upper bounds in seconds: a hot-path answer takes some microseconds, a general one tens of
# microseconds, a transfer's first message milliseconds.
LATENCY_BOUNDS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.1,
    1.0,
)


class Latency:
    """Per transport, a count per bucket of `LATENCY_BOUNDS` (one more for slower) and a sum."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._attached: list[tuple[str, Callable[[], tuple[list[int], float]]]] = []

    def attach(self, transport: str, reader: Callable[[], tuple[list[int], float]]) -> None:
        """Add what `reader` returns (counts per bucket of `LATENCY_BOUNDS` and one for
        slower, sum of seconds: kept elsewhere, e.g. in C) to `transport`'s at snapshot time."""
        self._attached.append((transport, reader))

    def record(self, transport: str, seconds: float, count: int = 1) -> None:
        """Note `count` answers over `transport` that took `seconds` each."""
        buckets = self._buckets.get(transport)
        if buckets is None:
            buckets = self._buckets[transport] = [0] * (len(LATENCY_BOUNDS) + 1)
            self._sums[transport] = 0.0
        buckets[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += count
        self._sums[transport] += seconds * count

    def snapshot(self) -> dict[str, tuple[list[int], float]]:
        """A copy: transport -> (counts per bucket, sum of seconds)."""
        copy = {key: (list(value), self._sums[key]) for key, value in self._buckets.items()}
        for transport, reader in self._attached:
            add_histogram(copy, transport, reader())
        return copy


Histograms = dict[str, tuple[list[int], float]]  # transport -> (counts per bucket, seconds)


def add_histogram(total: Histograms, transport: str, part: tuple[list[int], float]) -> None:
    """Add `part` (counts per bucket, sum of seconds) to `total`'s histogram of `transport`."""
    buckets, seconds = part
    have, have_seconds = total.get(transport, ([0] * len(buckets), 0.0))
    total[transport] = ([a + b for a, b in zip(have, buckets, strict=True)], have_seconds + seconds)
