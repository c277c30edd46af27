"""The relays the tester could not see, through the whole loop against real Postfix.

Nominated together (tests/hidden_relays_lab.py): an open relay behind Debian's postgrey is
listed after its greylisting retry; an encrypt-only open relay (530 to MAIL in clear text) is
listed from its STARTTLS session; an IPv6 open relay in a network namespace is probed from our
IPv6 source, delivers to the collector over IPv6 and is listed in the zone's IPv6 part. Then
each is closed, its operator asks out, and the forced retest delists it: the greylisted one is
refused for good once postgrey lets the envelopes through (closed, not untestable), the TLS one
under TLS, the IPv6 one over IPv6. Each step prints the host, its verdict and the time from
nomination (or delist request) to verdict (`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from datetime import datetime

import dns.rcode
import pytest
from sqlalchemy import Engine

from dnsbl.config import Settings
from dnsbl.dns.server import DnsServer
from dnsbl.relay.delisting import file_delist_request
from dnsbl.relay.evidence import RelayTestView, get_test
from dnsbl.relay.nominations import get_nomination, submit_nomination
from dnsbl.relay.verdicts import relay_listings
from dnsbl.relay.worker import run_worker
from tests.conftest import PG_URL, ZONE
from tests.e2e import loop
from tests.e2e.loop import answered, dns_until, loop_settings
from tests.hidden_relays_lab import (
    GREY_ADDRESS,
    TLS_ADDRESS,
    V6_ADDRESS,
    V6_TESTER,
    HiddenRelaysLab,
    running_hidden_lab,
)
from tests.postfix_lab import SMTP_PORT, TESTER_ADDRESS
from tests.relay_lab import settled

pytestmark = pytest.mark.e2e
dns_node = loop.dns_node  # the fixture, made visible to this module's tests

NAMES = {GREY_ADDRESS: "greylisting (postgrey)", TLS_ADDRESS: "TLS-only", V6_ADDRESS: "IPv6"}


@pytest.fixture
def hidden() -> Iterator[HiddenRelaysLab]:
    with running_hidden_lab() as lab:
        yield lab


@pytest.fixture
def lab_settings(database_url: str, hidden: HiddenRelaysLab) -> Settings:
    tester = hidden.tester_settings(lease_seconds=60, poll_interval=0.1)
    return loop_settings(database_url, tester)


def _took(
    step: str, address: str, verdict: object, since: datetime, until: datetime | None
) -> None:
    assert until is not None
    seconds = (until - since).total_seconds()
    print(f"{step}: {NAMES[address]} relay {address}: {verdict} in {seconds:.1f} s")


def _sessions(test: RelayTestView) -> tuple[str, str]:
    """The transcript before and after the greylisting retry's note."""
    first, note, retry = (test.transcript or "").partition("greylisting retry 1 of at most 2")
    assert note, test.transcript
    return first, retry


def test_an_encrypt_only_relay_refuses_mail_in_clear_text(hidden: HiddenRelaysLab) -> None:
    with smtplib.SMTP(TLS_ADDRESS, SMTP_PORT, source_address=(TESTER_ADDRESS, 0)) as client:
        client.ehlo("dnsbl-tester.example")
        assert client.has_extn("starttls")
        code, text = client.mail("relaytest@relaytest.example")
    assert (code, text) == (530, b"5.7.0 Must issue a STARTTLS command first")


# One run is enough (Postfix takes seconds to start): on PostgreSQL when there is one.
@pytest.mark.parametrize("database_url", ["postgresql" if PG_URL else "sqlite"], indirect=True)
async def test_greylisting_tls_only_and_ipv6_relays_are_listed_and_delisted(
    engine: Engine, lab_settings: Settings, hidden: HiddenRelaysLab, dns_node: DnsServer
) -> None:
    started, stop = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_worker(lab_settings, engine, started=started, stop=stop))
    try:
        await asyncio.wait_for(started.wait(), 10)
        nominated = {
            address: submit_nomination(engine, lab_settings, address, "e2e@lab").id
            for address in NAMES
        }
        await settled(engine, list(nominated.values()), timeout=180)
        tests: dict[str, RelayTestView] = {}
        for address, nomination_id in nominated.items():
            view = get_nomination(engine, nomination_id)
            assert view is not None
            test = get_test(engine, view.test_id or 0)
            assert test is not None
            assert view.verdict == "confirmed", (test, hidden.logs())
            assert test.listed_as == [f"{ZONE} open-relay"]
            assert {arrival.delivered_by for arrival in test.arrivals} == {address}
            tests[address] = test
            _took("nominated", address, view.verdict, view.created_at, view.finished_at)

        grey = tests[GREY_ADDRESS]
        first, retry = _sessions(grey)
        assert grey.retries == 1 and "Recipient address rejected: Greylisted" in first
        assert "250 2.0.0 Ok: queued" in retry and "Greylisted" not in retry
        assert grey.client_address == TESTER_ADDRESS
        assert "X-Greylist: delayed" in hidden.postgrey.log() or "reason=triplet found" in (
            hidden.postgrey.log()
        )
        tls = tests[TLS_ADDRESS]
        assert tls.tls_version is not None and tls.tls_version.startswith("TLSv1.")
        assert tls.tls_cipher and f"TLS established: {tls.tls_version}" in (tls.transcript or "")
        assert tls.retries == 0 and "S: 530" not in (tls.transcript or "")
        v6 = tests[V6_ADDRESS]
        assert v6.client_address == V6_TESTER and v6.retries == 0

        # listed in DNS, the IPv6 relay under its 32 nibbles
        for address in NAMES:
            assert await dns_until(dns_node, address, dns.rcode.NOERROR) == ["127.0.0.2"]

        # each operator closes the relay and asks out; the forced retests find them closed
        for instance in hidden.instances:
            await asyncio.to_thread(instance.close_relay)
        requests = {
            address: file_delist_request(engine, lab_settings, address, "postmaster@lab", True)
            for address in NAMES
        }
        for address, request in requests.items():
            outcome = await answered(engine, request.id, timeout=180)
            retest = get_test(engine, outcome.test_id or 0)
            assert retest is not None
            assert (outcome.status, retest.verdict) == ("delisted", "closed"), (
                retest,
                hidden.logs(),
            )
            assert retest.forced and relay_listings(engine, address) == []
            _took(
                "delist request", address, retest.verdict, outcome.created_at, outcome.finished_at
            )
            if address == GREY_ADDRESS:
                first, retry = _sessions(retest)
                assert retest.retries == 1 and "Greylisted" in first
                assert "554 5.7.1" in retry and "Relay access denied" in retry
                assert retest.reason is not None and retest.reason.endswith("greylisting retry")
            elif address == TLS_ADDRESS:
                assert retest.tls_version is not None and "554 5.7.1" in (retest.transcript or "")
            else:
                assert retest.client_address == V6_TESTER
            await dns_until(dns_node, address, dns.rcode.NXDOMAIN)
    finally:
        stop.set()
        await asyncio.wait_for(worker, 30)
