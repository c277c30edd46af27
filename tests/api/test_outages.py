"""The API while its PostgreSQL stops answering or goes away: bounded answers, a quiet log.

A real `dnsbl api` process reads PostgreSQL through a proxy (tests/db_proxy.py) that the test
freezes (every byte held: a hung database or network) and then closes (connections dropped and
refused: a database that is down). With bounds of 2 s, every request gets an answer: 503 problem
documents with Retry-After from the REST API, an HTML page from the human pages, not-ready from
/readyz, while /healthz keeps answering even with every worker thread waiting on the database.
The log has one line when the outage begins and one when it ends, and no traceback.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from dnsbl.apikeys import create_key
from dnsbl.config import Settings
from dnsbl.db import make_engine, writer
from dnsbl.models import Zone
from tests.api_fixtures import *  # noqa: F403
from tests.api_fixtures import ZONE, bearer
from tests.conftest import PG_URL, need
from tests.db_proxy import FreezableProxy, bounded_config, proxy_to
from tests.node.test_node import _process_until
from tests.smtp_fakes import free_port

STUCK = 60  # more requests than the thread pool (40) has threads


async def _get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    answer = await client.get(path)
    return answer, time.monotonic() - start


async def _until_status(client: httpx.AsyncClient, path: str, status: int) -> None:
    deadline = time.monotonic() + 60
    while (await client.get(path)).status_code != status:
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        await asyncio.sleep(0.2)


async def _outage(port: int, proxy: FreezableProxy) -> dict[str, float]:
    figures: dict[str, float] = {}
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=STUCK + 10)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        assert (await client.get("/v1/lookup/192.0.2.1")).status_code == 200
        await _until_status(client, "/readyz", 200)

        proxy.freeze()
        lookups = [asyncio.create_task(_get(client, "/v1/lookup/192.0.2.1")) for _ in range(STUCK)]
        await asyncio.sleep(0.5)  # every lookup is in, waiting on the frozen database
        assert not all(task.done() for task in lookups)
        health, health_time = await _get(client, "/healthz")
        # liveness answers while the lookups still wait for the database
        assert health.status_code == 200
        assert not all(task.done() for task in lookups)
        figures["healthz_during_freeze"] = health_time

        answers = await asyncio.gather(*lookups)
        for answer, _ in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert int(answer.headers["retry-after"]) >= 1
            assert answer.json()["type"] == "/problems/unavailable"
        figures["lookup_slowest_frozen"] = max(elapsed for _, elapsed in answers)

        ready, figures["readyz_frozen"] = await _get(client, "/readyz")
        assert ready.status_code == 503
        assert "retry-after" in ready.headers
        page, figures["page_frozen"] = await _get(client, "/lookup/192.0.2.1")
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        assert "Temporarily unavailable" in page.text

        proxy.close()
        gone, figures["lookup_closed"] = await _get(client, "/v1/lookup/192.0.2.1")
        assert gone.status_code == 503
        assert (await client.get("/healthz")).status_code == 200

        proxy.open()
        proxy.thaw()
        await _until_status(client, "/readyz", 200)
        assert (await client.get("/v1/lookup/192.0.2.1")).status_code == 200
    return figures


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_api_answers_within_the_bounds_while_postgresql_hangs_and_goes(
    tmp_path: Path, database_url: str
) -> None:
    need(PG_URL is not None, "DNSBL_TEST_DATABASE_URL is not set (the proxy needs PostgreSQL)")
    port = free_port()
    log = tmp_path / "api.log"
    with proxy_to(database_url) as proxy:
        config = bounded_config(
            tmp_path / "dnsbl.toml", proxy.url_for(database_url), api=f'listen = "127.0.0.1:{port}"'
        )
        with _process_until(config, "api", log, r"Uvicorn running on"):
            figures = asyncio.run(_outage(port, proxy))
    text = log.read_text()
    print({name: round(value, 3) for name, value in figures.items()})
    assert "Traceback" not in text, text
    assert text.count("database unavailable") == 1, text
    assert text.count("database available again") == 1, text


def test_a_write_held_up_by_a_lock_answers_503_within_the_statement_bound(
    database_url: str, api_settings: Settings
) -> None:
    """A slow database, for real: another transaction holds the lock the write needs."""
    engine = make_engine(database_url, statement_timeout=1)
    key = create_key(engine, "admin").key
    blocker = make_engine(database_url, statement_timeout=0)
    with (
        TestClient(create_app(api_settings, engine), raise_server_exceptions=False) as client,
        writer(blocker).connect() as holder,
    ):
        holder.begin()
        holder.execute(update(Zone).values(serial=Zone.serial))  # the zones' rows, locked
        start = time.monotonic()
        answer = client.post(
            "/v1/admin/listings",
            headers=bearer(key),
            json={"zone": ZONE, "network": "192.0.2.1", "reason": "slow"},
        )
        waited = time.monotonic() - start
        holder.rollback()
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"]
        print(f"answered 503 after {waited:.2f} s")
        assert client.get("/v1/admin/listings", headers=bearer(key)).json()["total"] == 0
    engine.dispose()
    blocker.dispose()
