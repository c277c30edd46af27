"""The removal centre in a real browser: headless Chromium looks up a listed address, files a
removal request through the form, and watches the status page until the retest's outcome shows.

The API runs under uvicorn on 127.0.0.1 in a thread. The retest is completed by the jobs
helper's real `Worker`, run for one step with a fake probe (a host that refuses every relay
form) in place of the SMTP tester: the job, verdict, delisting and request settlement are the
real code paths; only the SMTP conversation is stubbed. Screenshots go to tests/e2e/artifacts/.
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine, func, select

from api.app import create_app
from dnsbl.config import Settings, TesterSettings
from dnsbl.db import make_engine
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.store import ListingStore
from dnsbl.models.relay import DelistRequest
from dnsbl.relay import evidence as relay_tests
from dnsbl.relay.states import Verdict
from dnsbl.relay.tester.probe import ProbeReport
from dnsbl.relay.worker import Worker
from tests.api_fixtures import add_listing
from tests.cdp import Browser
from tests.conftest import need_program

ARTIFACTS = Path(__file__).parent / "artifacts"
ADDRESS = "192.0.2.10"

pytestmark = pytest.mark.e2e


@pytest.fixture
def browser_settings(sqlite_url: str) -> Settings:
    from dnsbl.config import load_settings
    from tests.conftest import zone_config

    return load_settings(
        None,
        database_url=sqlite_url,
        zones=[zone_config()],
        tester={"testable_networks": ["192.0.2.0/24"], "wait_window": 0},
    )


@pytest.fixture
def browser_engine(browser_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(browser_settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def server_url(browser_settings: Settings, browser_engine: Engine) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = browser_settings.model_copy(
        update={
            "api": browser_settings.api.model_copy(
                update={"public_url": f"http://127.0.0.1:{port}"}
            )
        }
    )
    app = create_app(settings, browser_engine)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    executable = need_program("chromium")
    chromium = Browser(executable, tmp_path / "profile")
    yield chromium
    chromium.close()


def _listed_with_evidence(engine: Engine) -> None:
    """The state after a relay test confirmed the host: its listing and the test's evidence."""
    ListingStore(engine).ensure_zones(["bl.example.org"])
    test_id = relay_tests.start_test(engine, ADDRESS, job_id=None, forced=False)
    now = datetime.now(UTC)
    relay_tests.record_probe(
        engine,
        test_id,
        ProbeReport(
            target=ADDRESS,
            started_at=now,
            finished_at=now,
            outcome="accepted",
            banner="220 mail.example.net ESMTP open for all",
            ehlo_reply="250-mail.example.net\n250 SIZE",
            transcript="S: 220 mail.example.net ESMTP\nC: EHLO tester\nS: 250 mail.example.net",
        ),
    )
    relay_tests.set_verdict(engine, test_id, Verdict.CONFIRMED, "a test message arrived")
    add_listing(engine, ADDRESS, reason=f"open relay: test #{test_id}")


async def _closed_probe(address: str, settings: TesterSettings, **_: Any) -> ProbeReport:
    """The fixed host: it greets, then refuses to relay (no form was tried: none accepted)."""
    now = datetime.now(UTC)
    return ProbeReport(
        target=address,
        started_at=now,
        finished_at=now,
        outcome="refused",
        reason="refused every relay form",
        banner="220 mail.example.net ESMTP fixed",
        transcript="S: 220 mail.example.net ESMTP fixed\nC: RCPT TO:<x@relaytest.example>\n"
        "S: 554 5.7.1 Relay access denied",
    )


async def _run_worker_once(engine: Engine, settings: Settings) -> None:
    worker = Worker(engine, settings, name="browser-test", probe=_closed_probe)
    assert await worker.claim_and_start() == 1
    await worker.wait_idle()


def test_lookup_delist_and_see_the_outcome(
    browser: Browser, server_url: str, browser_engine: Engine, browser_settings: Settings
) -> None:
    _listed_with_evidence(browser_engine)

    browser.navigate(f"{server_url}/lookup/{ADDRESS}")
    text = browser.text()
    assert "Listed" in text and "open-relay" in text
    # the style sheet is a file the page's CSP allows (no inline style)
    assert browser.evaluate("getComputedStyle(document.body).maxWidth") == "736px"
    assert "220 mail.example.net ESMTP open for all" in text  # the evidence is on the page
    browser.screenshot(ARTIFACTS / "lookup-listed.png")

    browser.click_and_wait("#delist-link")
    assert browser.url().endswith(f"/delist/{ADDRESS}")
    browser.evaluate("document.querySelector('input[name=confirmed_fixed]').click()")
    browser.evaluate("document.getElementById('email').value = 'postmaster@example.net'")
    browser.click_and_wait("#delist-form button[type=submit]")
    assert "/delist/status/" in browser.url()
    assert "position 1 in the queue" in browser.wait_for_text("Removal request")

    asyncio.run(_run_worker_once(browser_engine, browser_settings))

    # The status page refreshes itself; the outcome appears without a click.
    text = browser.wait_for_text("Removed.", timeout=15)
    assert "relay access denied" in text.lower()  # the retest's transcript is shown
    browser.screenshot(ARTIFACTS / "delist-status.png")
    assert listings_containing(browser_engine, ADDRESS) == []
    browser.navigate(f"{server_url}/lookup/{ADDRESS}")
    assert "Not listed" in browser.text()
    browser.screenshot(ARTIFACTS / "lookup-delisted.png")


def test_the_api_documentation_renders_without_internet_access(
    browser: Browser, server_url: str
) -> None:
    # The machine has no route to a CDN: Swagger UI's assets must come from the server.
    browser.navigate(f"{server_url}/docs")
    text = browser.wait_for_text("/v1/nominations", timeout=20)
    assert "/v1/lookup/{addr}" in text and "/v1/admin/listings" in text
    operations = browser.evaluate("document.querySelectorAll('.opblock').length")
    assert operations >= 20
    browser.screenshot(ARTIFACTS / "api-docs.png")


@contextmanager
def _other_site(page: str) -> Iterator[str]:
    """A site of another origin (127.0.0.2) serving `page`: an attacker's page."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_cross_site_form_post_from_the_browser_is_refused(
    browser: Browser, server_url: str, browser_engine: Engine
) -> None:
    _listed_with_evidence(browser_engine)
    browser.navigate(f"{server_url}/delist/{ADDRESS}")  # the visitor holds the form cookie
    attack = f"""<!doctype html><title>win a prize</title>
<form method="post" action="{server_url}/delist/{ADDRESS}">
<input name="confirmed_fixed" value="true"><input name="csrf_token" value="{"A" * 43}">
</form><script>document.forms[0].submit()</script>"""
    with _other_site(attack) as evil:
        browser.navigate(evil)
        text = browser.wait_for_text("form refused", timeout=20)
    assert "another site" in text or "not from this site" in text
    assert browser.url().startswith(f"{server_url}/delist/")
    with browser_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(DelistRequest)) == 0
