"""`/metrics` in the Prometheus text format (version 0.0.4), written out by hand.

Gauges are read from the database at scrape time (listings, queue, tests, delist requests);
DNS query counts come from the `Counter` the DNS server in the same process increments.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Engine, func, select

from dnsbl.listings.covering import in_force_clause
from dnsbl.models import Listing, ListingValue, Zone, utcnow

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(
    name: str,
    kind: str,
    help_text: str,
    samples: Iterable[tuple[Mapping[str, str], float]],
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
        lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")
    return lines


def dns_samples(
    counts: collections.Counter[tuple[str, str]] | None,
) -> list[tuple[dict[str, str], float]]:
    """DNS queries by (zone, rcode) from the DNS server's counter."""
    if counts is None:
        return []
    return [
        ({"zone": zone, "rcode": rcode}, float(n))
        for (zone, rcode), n in sorted(dict(counts).items())
    ]


def listing_samples(engine: Engine) -> list[tuple[dict[str, str], float]]:
    query = (
        select(Zone.name, ListingValue.category, func.count())
        .select_from(Listing)
        .join(Zone, Zone.id == Listing.zone_id)
        .join(ListingValue, ListingValue.id == Listing.value_id)
        .where(in_force_clause(utcnow()), ListingValue.excluded.is_(False))
        .group_by(Zone.name, ListingValue.category)
        .order_by(Zone.name, ListingValue.category)
    )
    with engine.connect() as conn:
        return [({"zone": z, "category": c}, float(n)) for z, c, n in conn.execute(query)]


def _optional(fetch: Callable[[], Mapping[str, int]], what: str) -> Mapping[str, int]:
    """Counts from another part's module; empty when that part is absent or fails."""
    try:
        return fetch()
    except ImportError:
        return {}
    except Exception:
        log.exception("metrics: could not read %s", what)
        return {}


def _queue(engine: Engine) -> Mapping[str, int]:
    from dnsbl.relay import jobs

    return jobs.queue_summary(engine)


def _grouped(engine: Engine, column: Any) -> Mapping[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(column, func.count()).where(column.is_not(None)).group_by(column)
        )
        return {str(key): int(n) for key, n in rows}


def _tests(engine: Engine) -> Mapping[str, int]:
    from dnsbl.models.relay import RelayTest

    return _grouped(engine, RelayTest.verdict)


def _delists(engine: Engine) -> Mapping[str, int]:
    from dnsbl.models.relay import DelistRequest

    return _grouped(engine, DelistRequest.status)


def render(engine: Engine, dns_counts: collections.Counter[tuple[str, str]] | None) -> str:
    """The whole exposition text."""
    lines: list[str] = []
    lines += _family(
        "dnsbl_dns_queries_total",
        "counter",
        "DNS queries answered, by zone and response code.",
        dns_samples(dns_counts),
    )
    lines += _family(
        "dnsbl_listings",
        "gauge",
        "Listings in force (exclusions not counted), by zone and category.",
        listing_samples(engine),
    )
    lines += _family(
        "dnsbl_queue_jobs",
        "gauge",
        "Jobs in the queue, by status.",
        [
            ({"status": k}, float(v))
            for k, v in sorted(_optional(lambda: _queue(engine), "queue").items())
        ],
    )
    lines += _family(
        "dnsbl_relay_tests_total",
        "counter",
        "Relay tests finished, by verdict.",
        [
            ({"verdict": k}, float(v))
            for k, v in sorted(_optional(lambda: _tests(engine), "tests").items())
        ],
    )
    lines += _family(
        "dnsbl_delist_requests_total",
        "counter",
        "Delist requests, by outcome.",
        [
            ({"outcome": k}, float(v))
            for k, v in sorted(_optional(lambda: _delists(engine), "delist requests").items())
        ],
    )
    return "\n".join(lines) + "\n"
