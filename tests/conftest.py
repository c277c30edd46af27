"""Shared fixtures: databases (SQLite and, when configured, PostgreSQL), settings, stores.

`database_url` is parametrised over SQLite and over the PostgreSQL named by
`DNSBL_TEST_DATABASE_URL` (CI sets it). On PostgreSQL every test gets a schema of its own, so
tests (and developers running them at once) never see each other's rows.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from dnsbl.config import Settings, load_settings
from dnsbl.db import make_engine, upgrade
from dnsbl.dns.native import native_available
from dnsbl.listings.store import ListingStore
from tests.scratch_db import migrated_schema

PG_URL = os.environ.get("DNSBL_TEST_DATABASE_URL")
REQUIRE_E2E = os.environ.get("DNSBL_REQUIRE_E2E") == "1"
ZONE = "bl.example.org"


def need(condition: bool, reason: str) -> None:
    """Skip unless `condition`; under DNSBL_REQUIRE_E2E=1 a missing prerequisite fails."""
    if condition:
        return
    if REQUIRE_E2E:
        pytest.fail(f"required for CI (DNSBL_REQUIRE_E2E=1): {reason}")
    pytest.skip(reason)


def need_program(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    need(path is not None, f"{name} is not installed (apt-get install it)")
    assert path is not None
    return path


def stop_process(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Stop a process a test started: SIGTERM, then SIGKILL if it does not end in `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Put the root logger back as it was: a command run in-process configures logging onto
    the stream pytest captured for that test, which is closed by the time a later thread logs."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(params=["native", "python"])
def dns_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each DNS engine in turn (`dns.engine`): servers that `tests.dns_support.running` starts
    and `dnsbl` processes take it from DNSBL_DNS__ENGINE. Modules that answer DNS use it."""
    engine: str = request.param
    if engine == "native":
        need(native_available(), "the native DNS engine was not built (no C compiler?)")
    monkeypatch.setenv("DNSBL_DNS__ENGINE", engine)
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite in a temporary file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'dnsbl.sqlite3'}"
        upgrade(url)
        yield url
        return
    if PG_URL is None:
        need(False, "DNSBL_TEST_DATABASE_URL is not set (no PostgreSQL to test on)")
    with migrated_schema(PG_URL, "t") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database only (for tests of SQLite-specific behaviour)."""
    url = f"sqlite:///{tmp_path / 'dnsbl.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def zone_config(name: str = ZONE, **overrides: object) -> dict[str, object]:
    config: dict[str, object] = {
        "name": name,
        "ns": ["ns1.example.org", "ns2.example.org"],
        "hostmaster": "hostmaster.example.org",
        "ttl": 2100,
        "negative_ttl": 300,
        "default_code": "127.0.0.2",
        "txt": "Listed: see https://bl.example.org/lookup/$",
        "categories": {"open-relay": "127.0.0.2", "relay-output": "127.0.0.3"},
    }
    config.update(overrides)
    return config


@pytest.fixture
def settings(database_url: str) -> Settings:
    return load_settings(None, database_url=database_url, zones=[zone_config()])


@pytest.fixture
def store(engine: Engine, settings: Settings) -> ListingStore:
    store = ListingStore(engine)
    store.ensure_zones(settings.zone_names)
    return store


def write_config(path: Path, database_url: str, dns_port: int = 0, **extra: str) -> Path:
    """Write a TOML configuration for processes started by end-to-end tests."""
    lines = [
        f'database_url = "{database_url}"',
        "",
        "[dns]",
        f'listen = ["127.0.0.1:{dns_port}"]',
        'transfer_peers = ["127.0.0.1"]',
        "sync_interval = 0.2",
    ]
    for section, body in extra.items():
        lines += ["", f"[{section}]", body]
    lines += [
        "",
        "[[zones]]",
        f'name = "{ZONE}"',
        'ns = ["ns1.example.org", "ns2.example.org"]',
        'hostmaster = "hostmaster.example.org"',
        "ttl = 2100",
        "negative_ttl = 300",
        'default_code = "127.0.0.2"',
        'txt = "Listed: see https://bl.example.org/lookup/$"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
