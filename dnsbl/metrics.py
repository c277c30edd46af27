"""Prometheus metrics of a role: its registry, and the HTTP endpoint that serves it.

Every role's metrics are prometheus-client collectors on a registry of the role's own (not
the library's global one, so that several roles, and tests, live side by side in a process).
`dnsbl api` serves its registry at `/metrics`; `dnsbl dns` (`dns.metrics_listen`) and
`dnsbl worker` (`tester.metrics_listen`) serve theirs with `MetricsEndpoint`, on a thread.
Collectors read their numbers at scrape time, so nothing is counted twice and the hot paths
only bump plain counters.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from dnsbl.config import parse_endpoint
from dnsbl.errors import DnsblError

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
DEFAULT_DNS_PORT = 9153  # the DNS servers' convention (CoreDNS, and exporters for others)
DEFAULT_WORKER_PORT = 9154


def registry_of(collectors: Iterable[Collector]) -> CollectorRegistry:
    """A fresh registry holding `collectors`."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(collector)
    return registry


def counter_family(
    name: str, documentation: str, labels: list[str], counts: Mapping[Any, int]
) -> CounterMetricFamily:
    """A counter family of `counts`, keyed by one label value or a tuple of them."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(counts.items()):
        family.add_metric([str(v) for v in (key if isinstance(key, tuple) else (key,))], count)
    return family


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in the Prometheus text format."""
    return generate_latest(registry)


class MetricsError(DnsblError):
    """The metrics endpoint cannot listen where it is told to."""


class MetricsEndpoint:
    """An HTTP server for `registry` on `listen` (`host:port`; port 0 takes a free one)."""

    def __init__(self, registry: CollectorRegistry, listen: str, default_port: int) -> None:
        host, port = parse_endpoint(listen, default_port)
        self._server: Any
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise MetricsError(_cannot(listen, exc)) from None
        log.info("metrics on http://%s/metrics", self.url_host)

    @staticmethod
    def check(listen: str, default_port: int) -> None:
        """Raise `MetricsError` now if nothing could listen on `listen`."""
        host, port = parse_endpoint(listen, default_port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as exc:
            raise MetricsError(_cannot(listen, exc)) from None

    @property
    def endpoint(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url_host(self) -> str:
        host, port = self.endpoint
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _cannot(listen: str, exc: OSError) -> str:
    return f"the metrics endpoint cannot listen on {listen}: {exc.strerror or exc}"
