"""Logging: `[log]` (and the older `log_level`), and JSON lines whose fields say what a record
is about — the API request, the relay job, the peer."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from api.app import create_app
from dnsbl.config import Settings, load_settings
from dnsbl.errors import ConfigError
from dnsbl.logs import JsonFormatter, OutageLog, log_context
from dnsbl.models.relay import RelayTest
from dnsbl.relay.nominations import get_nomination, submit_nomination
from tests.conftest import write_config, zone_config
from tests.relay_lab import (  # noqa: F401 (fixtures)
    FakeHost,
    hosts_fixture,
    lab_settings,
    settled,
    worker_fixture,
)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the `dnsbl` and `api` loggers write, formatted as JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("dnsbl", "api", "tests")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield stream
    for logger in loggers:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_log_section_and_the_older_log_level() -> None:
    settings = load_settings(None, log={"format": "json", "level": "debug"})
    assert (settings.log.format, settings.log.level) == ("json", "DEBUG")
    assert load_settings(None, log_level="warning").log.level == "WARNING"
    # `[log] level` says it explicitly: it wins over the older key
    assert load_settings(None, log_level="error", log={"level": "info"}).log.level == "INFO"
    with pytest.raises(ConfigError, match=r"log\.format: .*'text' or 'json'"):
        load_settings(None, log={"format": "xml"})
    with pytest.raises(ConfigError, match=r"log\.level: 'loud' is not one of DEBUG"):
        load_settings(None, log={"level": "loud"})


def test_a_json_line_carries_context_and_extra_fields(json_lines: io.StringIO) -> None:
    log = logging.getLogger("tests.logs")
    with log_context(job_id=7, target="192.0.2.1"):
        log.info("probing %s", "192.0.2.1", extra={"peer": "192.0.2.1"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("after")
    first, failed, after = _records(json_lines)
    assert first["message"] == "probing 192.0.2.1" and first["level"] == "INFO"
    assert (first["job_id"], first["target"], first["peer"]) == (7, "192.0.2.1", "192.0.2.1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", str(first["time"]))
    assert "ValueError: boom" in str(failed["exception"]) and failed["job_id"] == 7
    assert "job_id" not in after and after["logger"] == "tests.logs"


def test_every_api_request_has_an_id_in_its_logs_and_response(
    sqlite_url: str, json_lines: io.StringIO
) -> None:
    settings = load_settings(None, database_url=sqlite_url, zones=[zone_config()])
    app = create_app(settings)

    @app.get("/logs-something")
    def logs_something() -> dict[str, str]:
        logging.getLogger("api.test").info("inside the request")
        return {}

    with TestClient(app) as client:
        given = client.get("/logs-something", headers={"X-Request-ID": "proxy-1234"})
        made = client.get("/logs-something", headers={"X-Request-ID": "bad id;x"})
    assert given.headers["x-request-id"] == "proxy-1234"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    inside = [r for r in _records(json_lines) if r["message"] == "inside the request"]
    assert [r["request_id"] for r in inside] == ["proxy-1234", made.headers["x-request-id"]]


def test_dnsbl_dns_logs_json_lines_with_log_format_json(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path / "dnsbl.toml", sqlite_url, log='format = "json"')
    log = tmp_path / "dns.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dnsbl", "--config", str(config), "dns"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "DNS listening on" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=20)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(r["logger"] == "dnsbl.dns.server" for r in records), records
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)


@pytest.fixture
def lab(database_url: str) -> Settings:
    return lab_settings(database_url)


async def test_a_relay_jobs_records_carry_its_job_id_and_the_collectors_its_peer(
    engine: Engine,
    lab: Settings,
    hosts: Callable[..., FakeHost],
    worker: asyncio.Event,
    json_lines: io.StringIO,
) -> None:
    hosts("127.0.0.20", "open")
    nomination = submit_nomination(engine, lab, "127.0.0.20", "tester@lab")
    await settled(engine, [nomination.id])
    view = get_nomination(engine, nomination.id)
    assert view is not None and view.test_id is not None
    with engine.connect() as conn:
        job_id = conn.scalar(select(RelayTest.job_id).where(RelayTest.id == view.test_id))
    records = _records(json_lines)
    verdict = [r for r in records if str(r["message"]).startswith(f"test #{view.test_id} ")]
    assert verdict and verdict[0]["job_id"] == job_id is not None, records
    assert verdict[0]["target"] == "127.0.0.20"
    arrived = [r for r in records if "delivered by" in str(r["message"])]
    assert arrived and arrived[0]["peer"] == "127.0.0.20", records


def test_an_outage_logs_one_line_as_it_begins_one_a_minute_and_one_as_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    outage = OutageLog(logging.getLogger("outage-test"), "database", clock=lambda: now[0])
    caplog.set_level(logging.INFO, "outage-test")
    outage.recovered()  # no outage: nothing to say
    for _ in range(150 * 4):  # 150 s of failures, four a second
        outage.failed(ConnectionError("refused\nsecond line"))
        now[0] += 0.25
    outage.recovered()
    outage.recovered()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "database unavailable: refused",
        "database still unavailable after 60 s (241 failures): refused",
        "database still unavailable after 120 s (481 failures): refused",
        "database available again after 150 s (600 failures)",
    ]
