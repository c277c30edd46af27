"""Observability by the book: every role's metrics endpoint, as real processes, passes
`promtool check metrics`; the alert rules pass `promtool check rules` and their unit tests;
and every expression of the alert rules and of the Grafana dashboard parses as PromQL
(promql-parser) and names only metrics the endpoints actually exported in this run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dnsbl.dns.native import native_available
from tests.conftest import ZONE, need_program, write_config
from tests.smtp_fakes import free_port

pytestmark = pytest.mark.e2e

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ROLES = ("api", "dns", "worker")


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            _get(url)
            return
        except OSError:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """What `dnsbl api`, `dnsbl dns` and `dnsbl worker` export, each its own process, after
    some work: listings, DNS queries over UDP and TCP, the worker's expiry sweep."""
    root = tmp_path_factory.mktemp("observability")
    database = f"sqlite:///{root / 'dnsbl.sqlite3'}"
    ports = {name: free_port() for name in ("dns", "api", "dns_metrics", "worker", "collector")}
    config = write_config(
        root / "dnsbl.toml",
        database,
        dns_port=ports["dns"],
        api=f'listen = "127.0.0.1:{ports["api"]}"',
        tester=(
            f'collector_listen = "127.0.0.1:{ports["collector"]}"\n'
            f'metrics_listen = "127.0.0.1:{ports["worker"]}"\nsweep_interval = 1'
        ),
    )
    text = config.read_text().replace(
        "[dns]\n", f'[dns]\nmetrics_listen = "127.0.0.1:{ports["dns_metrics"]}"\n'
    )
    config.write_text(text)
    dnsbl = [sys.executable, "-m", "dnsbl", "--config", str(config)]
    subprocess.run([*dnsbl, "db", "upgrade"], check=True, capture_output=True)
    for address in ("192.0.2.1", "192.0.2.2"):
        subprocess.run(
            [*dnsbl, "list", ZONE, address, "--reason", "metrics"], check=True, capture_output=True
        )
    urls = {
        "api": f"http://127.0.0.1:{ports['api']}/metrics",
        "dns": f"http://127.0.0.1:{ports['dns_metrics']}/metrics",
        "worker": f"http://127.0.0.1:{ports['worker']}/metrics",
    }
    processes = []
    try:
        for role in ROLES:
            log = root / f"{role}.log"
            with log.open("wb") as out:
                process = subprocess.Popen([*dnsbl, role], stdout=out, stderr=subprocess.STDOUT)
            processes.append(process)
            _until_up(urls[role], process, log)
        for name, rdtype, tcp in (
            ("1.2.0.192", "A", False),
            ("1.2.0.192", "TXT", False),
            ("9.2.0.192", "A", True),
            ("", "SOA", False),
        ):
            query = dns.message.make_query(f"{name}.{ZONE}".lstrip("."), rdtype)
            ask = dns.query.tcp if tcp else dns.query.udp
            ask(query, "127.0.0.1", port=ports["dns"], timeout=5)
        deadline = time.monotonic() + 60
        while 'kind="expire"' not in _get(urls["worker"]):  # the first sweep ran
            assert time.monotonic() < deadline, (root / "worker.log").read_text()
            time.sleep(0.2)
        yield {role: _get(url) for role, url in urls.items()}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def _exported(scraped: dict[str, str]) -> set[str]:
    """Every metric name the endpoints exported, with each family's sample names."""
    names: set[str] = set()
    for text in scraped.values():
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
            names.update(family.name + suffix for suffix in suffixes.get(family.type, []))
            names.update(sample.name for sample in family.samples)
    return names


# What Grafana puts in for its variables before a query reaches Prometheus.
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$node": ".*"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects, from promql-parser's syntax tree."""
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()
    pending: list[object] = [promql_parser.parse(expr)]  # ValueError if it is not PromQL
    while pending:
        node = pending.pop()
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr}"
            names.add(node.name)
            continue
        for part in ("lhs", "rhs", "expr", "param", "vector_selector"):
            child = getattr(node, part, None)
            if child is not None and not isinstance(child, (int, float, str)):
                pending.append(child)
        pending.extend(getattr(node, "args", None) or [])
    return names


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(dnsbl_dns_answer_seconds_bucket{x="a b"}'
        "[$__rate_interval]))) / on (zone) group_left () max by (zone) (dnsbl_database_serial "
        "offset 1m) > bool 0 or time() - dnsbl_node_last_sync_timestamp_seconds"
    )
    assert metric_names(expr) == {
        "dnsbl_dns_answer_seconds_bucket",
        "dnsbl_database_serial",
        "dnsbl_node_last_sync_timestamp_seconds",
    }
    with pytest.raises(ValueError):
        metric_names("sum(rate(dnsbl_dns_queries_total[1m])")


@pytest.mark.parametrize("role", ROLES)
def test_promtool_check_metrics_is_clean_on_every_endpoint(
    scraped: dict[str, str], role: str
) -> None:
    promtool = need_program("promtool")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=scraped[role],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_every_role_exports_its_metrics(scraped: dict[str, str]) -> None:
    expected = {
        "api": {"dnsbl_listings", "dnsbl_database_serial", "dnsbl_queue_oldest_job_age_seconds"},
        "dns": {"dnsbl_dns_queries_total", "dnsbl_dns_answer_seconds_bucket", "dnsbl_index_serial"},
        "worker": {"dnsbl_worker_jobs_total", "dnsbl_collector_messages_total"},
    }
    for role, names in expected.items():
        assert names <= _exported({role: scraped[role]}), role
    queries = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(scraped["dns"])
        for sample in family.samples
        if sample.name == "dnsbl_dns_queries_total"
    }
    engine = "native" if native_available() else "python"  # dns.engine = "auto"
    labels = (("engine", engine), ("qtype", "TXT"), ("rcode", "NOERROR"), ("zone", ZONE))
    assert queries[labels] == 1


def test_promtool_checks_the_rules_and_their_unit_tests() -> None:
    promtool = need_program("promtool")
    directory = DEPLOY / "prometheus"
    for command in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "dnsbl-alerts.yml"],
        ["test", "rules", "dnsbl-alerts.test.yml"],
    ):
        result = subprocess.run(
            [promtool, *command], cwd=directory, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout + result.stderr


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dnsbl.json").read_text())
    assert dashboard["uid"] == "dnsbl" and dashboard["panels"]
    exprs = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["expr"].strip(), panel["title"]
            exprs.append(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", variable["definition"]))
    return exprs


def test_the_dashboard_and_the_alerts_name_only_exported_metrics(scraped: dict[str, str]) -> None:
    exported = _exported(scraped)
    rules = yaml.safe_load((DEPLOY / "prometheus" / "dnsbl-alerts.yml").read_text())
    exprs = {"dashboard": _dashboard_exprs()}
    exprs["alerts"] = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    for where, items in exprs.items():
        named: set[str] = set()
        for expr in items:
            names = metric_names(expr)
            assert names, expr
            assert names <= exported, f"{where}: {expr} names {names - exported}"
            named |= names
        if where == "dashboard":  # what the issue asks the dashboard to show
            assert {
                "dnsbl_dns_queries_total",
                "dnsbl_dns_answer_seconds_bucket",
                "dnsbl_index_serial",
                "dnsbl_database_serial",
                "dnsbl_listings",
                "dnsbl_relay_tests_total",
            } <= named
