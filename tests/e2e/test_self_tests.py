"""Self-tests and dry runs against real Postfix, over the API as `dnsbl api` serves it.

The lab's open relay (127.0.0.10) and closed one (127.0.0.11) ask for a self-test from their
own addresses (the HTTP client bound to them, as `curl -X POST …/v1/self-tests` on the mail
server would): the open one is found open and nothing is listed; its grace test (a few
seconds here) lists it when it still relays, and does not when it was fixed in between. A
self-test naming another address is refused, and so is a forwarded address from a client
the API does not trust as a proxy; a dry run under an operator key lists nothing; a second
self-test answers 429. Chromium shows the result page with every form and the grace notice
(screenshots in tests/e2e/artifacts/self-test-*.png), and presses the /self-test page's button
for the closed host from behind a proxy the API trusts (127.0.0.1, X-Forwarded-For).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from dnsbl.apikeys import create_key
from dnsbl.config import Settings
from dnsbl.listings.store import ListingStore
from dnsbl.relay.jobs import active_job
from dnsbl.relay.verdicts import relay_listings
from dnsbl.relay.worker import run_worker
from tests.cdp import Browser
from tests.conftest import PG_URL, need_program
from tests.e2e.loop import api_running, client_from, loop_settings
from tests.postfix_lab import (  # noqa: F401 (the postfix fixture)
    CLOSED_ADDRESS,
    OPEN_ADDRESS,
    PostfixLab,
    postfix_fixture,
)

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).parent / "artifacts"
GRACE_HOURS = 3 / 3600  # three seconds


@pytest.fixture
def lab_settings(database_url: str, postfix: PostfixLab) -> Settings:
    tester = postfix.tester_settings(
        wait_window=15,
        lease_seconds=60,
        poll_interval=0.1,
        self_test_grace_hours=GRACE_HOURS,
        min_test_interval=0,  # the grace test may follow its self-test seconds later
    )
    settings = loop_settings(database_url, tester)
    # the button below is pressed from behind a proxy on 127.0.0.1, as a site's would be
    api = settings.api.model_copy(update={"trusted_proxies": ["127.0.0.1/32"]})
    return settings.model_copy(update={"api": api})


@pytest.fixture
async def api(engine: Engine, lab_settings: Settings) -> AsyncIterator[str]:
    ListingStore(engine).ensure_zones(lab_settings.zone_names)  # before API and worker race
    async with api_running(lab_settings, engine) as url:
        yield url


class _Worker:
    """`run_worker` (worker + collector), started and stopped as the test needs."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings
        self.task: asyncio.Task[None] | None = None
        self.stop_event = asyncio.Event()

    async def start(self) -> None:
        started, self.stop_event = asyncio.Event(), asyncio.Event()
        self.task = asyncio.create_task(
            run_worker(self.settings, self.engine, started=started, stop=self.stop_event)
        )
        await asyncio.wait_for(started.wait(), 10)

    async def stop(self) -> None:
        if self.task is not None:
            self.stop_event.set()
            await asyncio.wait_for(self.task, 30)
            self.task = None


@pytest.fixture
async def worker(engine: Engine, lab_settings: Settings, api: str) -> AsyncIterator[_Worker]:
    running = _Worker(engine, lab_settings)
    yield running
    await running.stop()


async def _until(client: httpx.AsyncClient, path: str, done: Any, timeout: float = 120) -> Any:
    """GET `path` until `done(body)`; the body."""
    async with asyncio.timeout(timeout):
        while True:
            body = (await client.get(path)).json()
            if done(body):
                return body
            await asyncio.sleep(0.1)


def _finished(body: dict[str, Any]) -> bool:
    return body["status"] in ("done", "refused")


def _grace_decided(body: dict[str, Any]) -> bool:
    return bool(body["grace_test"] and body["grace_test"]["verdict"])


async def _self_test(api: str, address: str) -> tuple[dict[str, Any], float]:
    """A self-test asked for from `address`, once it has its result, and the seconds taken."""
    async with client_from(address, api) as client:
        began = time.monotonic()
        asked = await client.post("/v1/self-tests")
        assert asked.status_code == 202, asked.text
        body = await _until(client, asked.headers["Location"], _finished)
        return body, time.monotonic() - began


# One run each (Postfix takes seconds to start): on PostgreSQL when there is one.
@pytest.mark.parametrize("database_url", ["postgresql" if PG_URL else "sqlite"], indirect=True)
async def test_self_tests_list_nothing_and_the_grace_test_lists_a_relay_still_open(
    engine: Engine, api: str, worker: _Worker, postfix: PostfixLab
) -> None:
    # refused before anything is tested: another address, a forwarded one from a client that
    # is not one of api.trusted_proxies (127.0.0.1 here)
    async with client_from(CLOSED_ADDRESS, api) as closed_host:
        other = await closed_host.post("/v1/self-tests", json={"address": OPEN_ADDRESS})
        assert other.status_code == 403, other.text
        assert other.headers["content-type"] == "application/problem+json"
        assert "only the address the request comes from" in other.json()["detail"]
        spoofed = await closed_host.post(
            "/v1/self-tests", headers={"X-Forwarded-For": OPEN_ADDRESS}
        )
        assert spoofed.status_code == 202 and spoofed.json()["address"] == CLOSED_ADDRESS
        await worker.start()
        closed = await _until(closed_host, spoofed.headers["Location"], _finished)
    assert closed["verdict"] == "closed" and closed["grace_test"] is None
    assert {form["outcome"] for form in closed["forms"]} == {"refused"}
    assert "Relay access denied" in (closed["transcript"] or "")

    opened, _seconds = await _self_test(api, OPEN_ADDRESS)
    assert opened["verdict"] == "confirmed", opened
    assert "relayed" in {form["outcome"] for form in opened["forms"]}
    assert opened["transcript"] and "220 open.lab.example" in opened["transcript"]
    assert opened["grace_test"] is not None
    assert relay_listings(engine, OPEN_ADDRESS) == []  # a self-test never lists
    # its grace test, a normal test a few seconds later, finds it still open: listed
    async with client_from(OPEN_ADDRESS, api) as open_host:
        again = await open_host.post("/v1/self-tests")
        assert again.status_code == 429 and int(again.headers["Retry-After"]) > 3000
        decided = await _until(open_host, f"/v1/self-tests/{opened['id']}", _grace_decided)
    assert decided["grace_test"]["verdict"] == "confirmed", decided
    assert "it was listed" in decided["summary"]
    [listing] = relay_listings(engine, OPEN_ADDRESS)
    assert f"#{decided['grace_test']['test_id']}" in (listing.reason or "")
    metrics = await _metrics(api)
    assert metrics[("dnsbl_self_tests_total", ("outcome", "confirmed"))] == 1
    assert metrics[("dnsbl_self_tests_total", ("outcome", "closed"))] == 1
    assert metrics[("dnsbl_grace_tests_total", ("decision", "confirmed"))] == 1


@pytest.mark.parametrize("database_url", ["postgresql" if PG_URL else "sqlite"], indirect=True)
async def test_a_relay_fixed_in_its_grace_period_is_not_listed_and_dry_runs_list_nothing(
    engine: Engine, api: str, worker: _Worker, postfix: PostfixLab, tmp_path: Path
) -> None:
    operator = create_key(engine, "operator", "e2e operator").key
    await worker.start()
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        dry = await client.post(
            "/v1/nominations",
            json={"address": OPEN_ADDRESS, "dry_run": True},
            headers={"Authorization": f"Bearer {operator}"},
        )
        assert dry.status_code == 202, dry.text
        dry_done = await _until(client, f"/v1/nominations/{dry.json()['id']}", _finished)
        assert (dry_done["kind"], dry_done["verdict"]) == ("dry-run", "confirmed")
        evidence = (await client.get(f"/v1/relay-tests/{dry_done['test_id']}")).json()
        assert evidence["arrivals"] and evidence["listed_as"] == [] and evidence["dry_run"]
    assert relay_listings(engine, OPEN_ADDRESS) == []
    assert active_job(engine, OPEN_ADDRESS) is None  # no grace test after a dry run

    opened, _seconds = await _self_test(api, OPEN_ADDRESS)
    assert opened["verdict"] == "confirmed" and opened["grace_test"]["status"] == "waiting"
    await worker.stop()  # so that the grace test cannot run before the relay is fixed
    page = f"{api}/self-tests/{opened['id']}"
    shot = await asyncio.to_thread(_screenshot, page, tmp_path, "self-test-open.png")
    assert "Grace test" in shot and "it will be listed" in shot
    assert "relayed" in shot and "refused" in shot  # every form, with its outcome

    await asyncio.to_thread(postfix.open.close_relay)
    try:
        await worker.start()
        async with client_from(OPEN_ADDRESS, api) as open_host:
            decided = await _until(open_host, f"/v1/self-tests/{opened['id']}", _grace_decided)
    finally:
        await asyncio.to_thread(postfix.open.open_relay)
    assert decided["grace_test"]["verdict"] == "closed", decided
    assert "it was not listed" in decided["summary"]
    assert relay_listings(engine, OPEN_ADDRESS) == []
    metrics = await _metrics(api)
    assert metrics[("dnsbl_grace_tests_total", ("decision", "closed"))] == 1
    assert metrics[("dnsbl_self_tests_total", ("outcome", "confirmed"))] == 1
    shot = await asyncio.to_thread(_screenshot, page, tmp_path, "self-test-fixed.png")
    assert "found closed: not listed" in shot

    # the button: Chromium behind a proxy on 127.0.0.1 (which uvicorn trusts) for the closed host
    text = await asyncio.to_thread(_press_the_button, f"{api}/self-test", tmp_path)
    assert "Self-test of 127.0.0.11" in text and "refused to relay every form" in text


def _press_the_button(url: str, tmp_path: Path) -> str:
    """Ask for a self-test on the /self-test page as the closed host, through a proxy that
    says so in X-Forwarded-For; the result page's text once it has its verdict."""
    browser = Browser(need_program("chromium"), tmp_path / "profile-button")
    try:
        browser.call("Network.enable")
        browser.call(
            "Network.setExtraHTTPHeaders", {"headers": {"X-Forwarded-For": CLOSED_ADDRESS}}
        )
        browser.navigate(url)
        assert CLOSED_ADDRESS in browser.evaluate("document.getElementById('client').textContent")
        browser.click_and_wait("#self-test-button")
        assert "/self-tests/" in browser.url()
        text = browser.wait_for_text("Nothing was listed", timeout=120)  # it refreshes itself
        browser.screenshot(ARTIFACTS / "self-test-closed-top.png", full_page=False)
        return text
    finally:
        browser.close()


async def _metrics(api: str) -> dict[tuple[str, tuple[str, ...]], float]:
    """The API's /metrics, by (sample name, its label pairs flattened)."""
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        text = (await client.get("/metrics")).text
    return {
        (sample.name, tuple(item for pair in sorted(sample.labels.items()) for item in pair)): (
            sample.value
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _screenshot(url: str, tmp_path: Path, name: str) -> str:
    """The page's text in Chromium, with a screenshot of it in tests/e2e/artifacts/."""
    browser = Browser(need_program("chromium"), tmp_path / f"profile-{name}")
    try:
        browser.navigate(url)
        text = browser.wait_for_text("Every form tried")
        browser.screenshot(ARTIFACTS / name)
        browser.screenshot(ARTIFACTS / name.replace(".png", "-top.png"), full_page=False)
        browser.evaluate("document.getElementById('forms').scrollIntoView()")
        browser.screenshot(ARTIFACTS / name.replace(".png", "-forms.png"), full_page=False)
        return text
    finally:
        browser.close()
