"""Spam traps end to end: swaks delivers to the trap from a 127.0.0.x source, the source is
listed and a DNS client sees the spam-source code; removal ends it at once, a new hit lists it
for twice as long; never-list wins; a report behind a trusted relay lists the right hop.

The trap is `run_traps` (what `dnsbl worker` and `dnsbl serve` run) on a real socket; the DNS
node follows the database as a real node does (tests/e2e/loop.py).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import dns.asyncquery
import dns.message
import dns.rcode
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from dnsbl.apikeys import create_key
from dnsbl.config import Settings
from dnsbl.dns.server import DnsServer
from dnsbl.listings.covering import listings_containing
from dnsbl.models import utcnow
from dnsbl.policy import add_policy_network
from dnsbl.relay.delisting import file_delist_request
from dnsbl.timestamps import aware
from dnsbl.traps.escalation import spam_listings
from dnsbl.traps.evidence import evidence_of
from dnsbl.traps.metrics import TrapStats
from tests.api_fixtures import add_listing, bearer
from tests.conftest import PG_URL, stop_process, write_config
from tests.e2e import loop
from tests.e2e.loop import dns_until, listing_name
from tests.smtp_fakes import free_port
from tests.traps.lab import (
    SPAM_CODE,
    TRAP_ADDRESS,
    TRAP_DOMAIN,
    TRUSTED_MX,
    running_trap,
    send_with_swaks,
    smtp_from,
    trap_settings,
)

pytestmark = pytest.mark.e2e
dns_node = loop.dns_node  # the fixture, made visible to this module's tests
NOERROR, NXDOMAIN = dns.rcode.NOERROR, dns.rcode.NXDOMAIN


@pytest.fixture
def lab_settings(database_url: str) -> Settings:
    return trap_settings(database_url)


@pytest.fixture
async def trap(lab_settings: Settings, engine: Engine) -> AsyncIterator[TrapStats]:
    async with running_trap(lab_settings, engine) as stats:
        yield stats


def _days_left(engine: Engine, settings: Settings, address: str) -> float:
    (listing,) = spam_listings(engine, settings.traps, address)
    assert listing.expires_at is not None
    return (aware(listing.expires_at) - utcnow()) / timedelta(days=1)


async def _evidence(engine: Engine, address: str, count: int) -> None:
    """Wait until `count` sightings of `address` are on record."""
    async with asyncio.timeout(30):
        while len(evidence_of(engine, address)) < count:
            await asyncio.sleep(0.1)


async def _txt(server: DnsServer, address: str) -> list[str]:
    host, port = server.endpoints[0]
    query = dns.message.make_query(listing_name(address), "TXT")
    reply = await dns.asyncquery.udp(query, host, port=port, timeout=2)
    return [item.to_text() for rrset in reply.answer for item in rrset]


@pytest.mark.parametrize("database_url", ["postgresql" if PG_URL else "sqlite"], indirect=True)
async def test_hit_listed_removed_and_relisted_for_twice_as_long(
    engine: Engine, lab_settings: Settings, dns_node: DnsServer, trap: TrapStats
) -> None:
    spammer = "127.0.0.23"
    sent = send_with_swaks(lab_settings, spammer, f"jane@{TRAP_DOMAIN}")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert await dns_until(dns_node, spammer, NOERROR) == [SPAM_CODE]
    assert any(f"/lookup/{spammer}" in text for text in await _txt(dns_node, spammer))
    assert 14.9 < _days_left(engine, lab_settings, spammer) <= 15

    (hit,) = evidence_of(engine, spammer)
    assert (hit.kind, hit.delivered_by, hit.helo) == ("trap", spammer, "spammer.example")
    assert (hit.mail_from, hit.subject) == ("seller@shop.example", "Cheap pills")
    assert hit.message_id == "<m1@shop.example>"
    assert hit.trap == f"jane@{TRAP_DOMAIN}"  # for admins; nowhere in what is kept to show
    assert "buy now" in hit.body and "Subject: Cheap pills" in hit.headers
    for shown in (hit.headers, hit.body, hit.subject):
        assert TRAP_DOMAIN not in shown and "jane@" not in shown
    assert trap.hits[TRAP_DOMAIN] == 1 and trap.messages["recorded"] == 1

    # Removal is free and at once: nothing to retest.
    request = file_delist_request(engine, lab_settings, spammer, "owner@example.net", True)
    assert request.status == "delisted"
    await dns_until(dns_node, spammer, NXDOMAIN)

    # Spam again: listed again, for twice the previous length; the lookup says so.
    sent = send_with_swaks(lab_settings, spammer, TRAP_ADDRESS, message_id="<m2@shop.example>")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert await dns_until(dns_node, spammer, NOERROR) == [SPAM_CODE]
    assert 29.9 < _days_left(engine, lab_settings, spammer) <= 30
    client = TestClient(create_app(lab_settings, engine))
    body = client.get(f"/v1/lookup/{spammer}").json()
    (listing,) = body["listings"]
    assert listing["spam"]["relisted_after_removal"] is not None
    assert [hit["subject"] for hit in listing["spam"]["hits"]] == ["Cheap pills"] * 2
    assert TRAP_DOMAIN not in client.get(f"/v1/lookup/{spammer}").text
    assert "real.example.net" not in client.get(f"/lookup/{spammer}").text
    assert "Listed again after removal on" in client.get(f"/lookup/{spammer}").text

    # A hit while listed extends it by extra_days.
    sent = send_with_swaks(lab_settings, spammer, f"x@{TRAP_DOMAIN}", message_id="<m3@x>")
    assert sent.returncode == 0
    assert 44.9 < _days_left(engine, lab_settings, spammer) <= 45

    # An aggregate zone answers both codes for a relay that is also a source.
    add_listing(engine, spammer)
    async with asyncio.timeout(30):
        while sorted((await loop.dns_rcode_and_a(dns_node, spammer))[1]) != [
            "127.0.0.2",
            SPAM_CODE,
        ]:
            await asyncio.sleep(0.1)


async def test_a_non_trap_recipient_is_refused_at_rcpt(
    engine: Engine, lab_settings: Settings, trap: TrapStats
) -> None:
    with smtp_from(lab_settings, "127.0.0.25") as client:
        client.mail("seller@shop.example")
        assert client.rcpt("someone@example.com")[0] == 550
        assert client.rcpt("other@real.example.net")[0] == 550  # a real user beside a trap
        assert client.rcpt(f"anyone@{TRAP_DOMAIN}")[0] == 250
        assert client.rcpt(TRAP_ADDRESS.upper())[0] == 250
        client.rset()
        client.mail("seller@shop.example")
        assert client.rcpt("postmaster@example.com")[0] == 550
        assert client.docmd("DATA")[0] == 503  # no recipient taken: no message
    sent = send_with_swaks(lab_settings, "127.0.0.25", "user@example.com")
    assert sent.returncode != 0 and "550" in sent.stdout
    assert evidence_of(engine, "127.0.0.25") == []
    assert listings_containing(engine, "127.0.0.25") == []


async def test_never_list_is_honoured(
    engine: Engine, lab_settings: Settings, dns_node: DnsServer, trap: TrapStats
) -> None:
    add_policy_network(engine, "127.0.0.24/32", "never-list", "our own relay", "test")
    sent = send_with_swaks(lab_settings, "127.0.0.24", f"jane@{TRAP_DOMAIN}")
    assert sent.returncode == 0  # accepted (never a bounce), kept, not listed
    await _evidence(engine, "127.0.0.24", 1)
    assert listings_containing(engine, "127.0.0.24") == []
    assert (await loop.dns_rcode_and_a(dns_node, "127.0.0.24"))[0] == NXDOMAIN


async def test_behind_our_mx_the_first_untrusted_hop_is_listed(
    engine: Engine, lab_settings: Settings, dns_node: DnsServer, trap: TrapStats
) -> None:
    received = (
        f"Received: from spammer.example (spam.example [127.0.0.31]) by mx.example.org"
        f" (Postfix) for <jane@{TRAP_DOMAIN}>; Tue, 1 Dec 2026 12:00:00 +0000"
    )
    sent = send_with_swaks(lab_settings, TRUSTED_MX, f"jane@{TRAP_DOMAIN}", headers=(received,))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert await dns_until(dns_node, "127.0.0.31", NOERROR) == [SPAM_CODE]
    assert listings_containing(engine, TRUSTED_MX) == []


@pytest.mark.parametrize("database_url", ["postgresql" if PG_URL else "sqlite"], indirect=True)
async def test_a_report_behind_a_trusted_relay_lists_the_right_hop(
    engine: Engine, lab_settings: Settings, dns_node: DnsServer
) -> None:
    message = (
        f"Received: from mx.example.org (mx.example.org [{TRUSTED_MX}]) by store.example.org;"
        " Tue, 1 Dec 2026 12:00:02 +0000\r\n"
        "Received: from spammer.example (spam.example [127.0.0.41]) by mx.example.org;"
        " Tue, 1 Dec 2026 12:00:01 +0000\r\n"
        "Received: from forged.example ([127.0.0.42]) by spammer.example;"
        " Tue, 1 Dec 2026 12:00:00 +0000\r\n"
        "From: seller@shop.example\r\nTo: alice@example.org\r\nSubject: Reported pills\r\n"
        "Message-ID: <r1@shop.example>\r\n\r\nDear alice@example.org, buy!\r\n"
    ).encode()
    reporter = create_key(engine, "reporter", "a user's mail client").key
    operator = create_key(engine, "operator", "an operator").key
    with TestClient(create_app(lab_settings, engine)) as client:
        rfc822 = {"Content-Type": "message/rfc822"}
        refused = client.post(
            "/v1/admin/reports", content=message, headers={**rfc822, **bearer(operator)}
        )
        assert refused.status_code == 403
        filed = client.post(
            "/v1/admin/reports", content=message, headers={**rfc822, **bearer(reporter)}
        )
        assert filed.status_code == 201, filed.text
        assert filed.json()["source"] == "127.0.0.41" and filed.json()["listed"]
        assert await dns_until(dns_node, "127.0.0.41", NOERROR) == [SPAM_CODE]
        for innocent in (TRUSTED_MX, "127.0.0.42"):
            assert listings_containing(engine, innocent) == []
        shown = client.get("/v1/lookup/127.0.0.41").text + client.get("/lookup/127.0.0.41").text
        assert "Reported pills" in shown and "alice@example.org" not in shown


async def test_rate_and_size_are_capped_in_the_session(database_url: str, engine: Engine) -> None:
    settings = trap_settings(database_url, hits_per_source_per_hour=2, max_message_size=4096)
    async with running_trap(settings, engine) as stats:
        with smtp_from(settings, "127.0.0.26") as client:
            for n in range(2):
                message = f"Subject: hit {n}\r\n\r\nbuy\r\n".encode()
                assert client.sendmail("a@shop.example", [TRAP_ADDRESS], message) == {}
            code, _ = client.mail("a@shop.example")
            assert code == 451  # temporary, in the session: nothing bounces
        with smtp_from(settings, "127.0.0.27") as client:
            client.mail("a@shop.example")
            client.rcpt(TRAP_ADDRESS)
            code, _ = client.data(b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 100)
            assert code == 552
    assert stats.messages == {"recorded": 2, "rate-limited": 1}
    assert len(evidence_of(engine, "127.0.0.26")) == 2 and evidence_of(engine, "127.0.0.27") == []


def test_dnsbl_worker_runs_the_trap_and_exports_its_hits(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'dnsbl.sqlite3'}"
    ports = {name: free_port() for name in ("collector", "metrics", "trap")}
    config = write_config(
        tmp_path / "dnsbl.toml",
        database,
        tester=(
            f'collector_listen = "127.0.0.1:{ports["collector"]}"\n'
            f'metrics_listen = "127.0.0.1:{ports["metrics"]}"'
        ),
        traps=f'listen = "127.0.0.1:{ports["trap"]}"\ndomains = ["{TRAP_DOMAIN}"]',
    )
    dnsbl = [sys.executable, "-m", "dnsbl", "--config", str(config)]
    subprocess.run([*dnsbl, "db", "upgrade"], check=True, capture_output=True)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([*dnsbl, "worker"], stdout=out, stderr=subprocess.STDOUT)
    try:
        settings = trap_settings(database, listen=f"127.0.0.1:{ports['trap']}")
        deadline = time.monotonic() + 60
        while (sent := send_with_swaks(settings, "127.0.0.28", f"a@{TRAP_DOMAIN}")).returncode:
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports['metrics']}/metrics").read()
        assert f'dnsbl_trap_hits_total{{domain="{TRAP_DOMAIN}"}} 1.0' in metrics.decode()
        shown = subprocess.run(
            [*dnsbl, "traps", "127.0.0.28"], check=True, capture_output=True, text=True
        ).stdout
        assert "HELO: spammer.example" in shown and f"trap: a@{TRAP_DOMAIN}" in shown
        assert "listed in bl.example.org as spam-source" in shown, sent.stdout
    finally:
        stop_process(worker)
