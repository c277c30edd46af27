"""The redaction test: a trap hit on the lookup page, in Chromium, and in the API's JSON, with
the trap address nowhere — not in the page's text, not in its HTML, not in the JSON.

swaks delivers to the running trap from 127.0.0.23 a message that names the trap everywhere a
spammer would put it: the envelope, To, a forged From, the Subject, the body. The server and
the browser are those of the removal-centre test (tests/e2e/test_pages_browser.py).
"""

from __future__ import annotations

import json
import time
import urllib.request
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.traps.evidence import evidence_of
from dnsbl.traps.intake import take_trap_hit
from dnsbl.traps.sink import TrapSink
from tests.cdp import Browser
from tests.e2e.test_pages_browser import browser, browser_engine, server_url
from tests.traps.lab import TRAP_DOMAIN, send_with_swaks, trap_settings

__all__ = ["browser", "browser_engine", "server_url"]  # the fixtures this module reuses

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).parent / "artifacts"
SPAMMER = "127.0.0.23"
TRAP = f"jane.doe@{TRAP_DOMAIN}"


@pytest.fixture
def browser_settings(sqlite_url: str) -> Settings:
    return trap_settings(sqlite_url)


def test_the_lookup_page_shows_the_hit_and_never_the_trap(
    browser: Browser, server_url: str, browser_engine: Engine, browser_settings: Settings
) -> None:
    hit = partial(take_trap_hit, browser_engine, browser_settings)
    with TrapSink(browser_settings.traps, hit):
        sent = send_with_swaks(
            browser_settings,
            SPAMMER,
            TRAP,
            subject=f"An offer for {TRAP}",
            sender=TRAP,  # spammers forge the recipient as the sender
            headers=(f"From: Jane <{TRAP}>", f"Reply-To: {TRAP.upper()}"),
        )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    deadline = time.monotonic() + 30
    while not evidence_of(browser_engine, SPAMMER) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert evidence_of(browser_engine, SPAMMER)[0].trap == TRAP  # kept, for admins

    browser.navigate(f"{server_url}/lookup/{SPAMMER}")
    text = browser.wait_for_text("spam-source")
    html = browser.evaluate("document.documentElement.outerHTML")
    with urllib.request.urlopen(f"{server_url}/v1/lookup/{SPAMMER}", timeout=10) as answer:
        api = answer.read().decode()
    browser.screenshot(ARTIFACTS / "lookup-spam-source.png")

    assert "An offer for [redacted address]" in text  # the hit is shown...
    assert "spam trap" in text and "Request removal" in text
    listing = json.loads(api)["listings"][0]
    assert listing["spam"]["hits"][0]["subject"] == "An offer for [redacted address]"
    assert listing["spam"]["hits"][0]["sender_domain"] == "[redacted domain]"
    for shown in (text, html, api):  # ...and the trap nowhere, in any form
        lowered = shown.lower()
        assert TRAP not in lowered and TRAP_DOMAIN not in lowered and "jane.doe" not in lowered
