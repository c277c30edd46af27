"""Fixtures and helpers shared by the API tests (imported with `from tests.api_fixtures import *`).

The app runs over the migrated database of `database_url` (SQLite and PostgreSQL) with a tester
policy that allows the documentation networks, so nominations of 192.0.2.x are testable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from dnsbl.addresses import parse_network
from dnsbl.apikeys import create_key
from dnsbl.config import Settings, load_settings
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.relay import evidence as relay_tests
from dnsbl.relay.states import Verdict
from dnsbl.relay.tester.probe import ProbeReport
from tests.conftest import ZONE, zone_config

__all__ = [
    "ZONE",
    "add_listing",
    "admin_key",
    "api_settings",
    "app",
    "assert_problem",
    "bearer",
    "client",
    "form_token",
    "operator_key",
    "relay_test_of",
]

PUBLIC_URL = "https://bl.example.org"


@pytest.fixture
def api_settings(database_url: str) -> Settings:
    return load_settings(
        None,
        database_url=database_url,
        zones=[zone_config(), zone_config("pbl.example.org", categories={})],
        api={"public_url": PUBLIC_URL, "max_body_bytes": 4096},
        tester={
            "testable_networks": ["192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"],
            "nominations_per_submitter": 3,
            "delists_per_address": 2,
        },
    )


@pytest.fixture
def app(api_settings: Settings, engine: Engine) -> FastAPI:
    return create_app(api_settings, engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin_key(engine: Engine) -> str:
    return create_key(engine, "admin", "test admin").key


@pytest.fixture
def operator_key(engine: Engine) -> str:
    return create_key(engine, "operator", "test operator").key


def form_token(client: Any, path: str) -> str:
    """The form token of the page at `path`, as a browser gets it (the client keeps the cookie)."""
    page = client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response: Any, status: int, slug: str | None = None) -> dict[str, Any]:
    """Check that `response` is an RFC 9457 problem of `status` (and kind `slug`)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "instance"} <= body.keys()
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    assert body["detail"]
    if slug is not None:
        assert body["type"] == f"/problems/{slug}"
    return body


def add_listing(
    engine: Engine,
    network: str,
    *,
    zone: str = ZONE,
    category: str = "open-relay",
    excluded: bool = False,
    source: str = "relay-test",
    reason: str | None = "relayed a test message",
    code: str | None = None,
) -> int:
    result = ListingStore(engine).add(
        zone,
        [
            Entry(
                parse_network(network),
                category=category,
                excluded=excluded,
                reason=reason,
                code=code,
            )
        ],
        actor="test",
        source=source,
    )
    return result.listing_ids[0]


def relay_test_of(engine: Engine, address: str, verdict: str = Verdict.CONFIRMED) -> int:
    """A finished relay test of `address`, as the worker records one."""
    test_id = relay_tests.start_test(engine, address, job_id=None, forced=False)
    now = datetime.now(UTC)
    report = ProbeReport(
        target=address,
        started_at=now,
        finished_at=now,
        outcome="accepted",
        banner="220 mx.example.net ESMTP",
        ehlo_reply="250 mx.example.net",
        transcript="S: 220 mx.example.net ESMTP\nC: EHLO tester\n",
    )
    relay_tests.record_probe(engine, test_id, report)
    relay_tests.set_verdict(engine, test_id, verdict, "test messages arrived")
    return test_id
