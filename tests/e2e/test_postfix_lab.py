"""The tester against real Postfix relays: the open one delivers, the closed one refuses."""

from __future__ import annotations

import pytest

from dnsbl.relay.tester.probe import ProbeReport, probe
from tests import postfix_lab as lab
from tests.postfix_lab import CLOSED_ADDRESS, OPEN_ADDRESS, ArrivalLog, PostfixLab

# the lab's fixtures, made visible to this module's tests
lab_arrivals = lab.lab_arrivals
lab_collector = lab.lab_collector
postfix_lab = lab.postfix_lab

pytestmark = pytest.mark.e2e


def _accepted_tokens(report: ProbeReport) -> set[str]:
    return {result.token for result in report.forms if result.accepted}


async def test_the_open_relay_delivers_tokens_to_the_collector(
    postfix_lab: PostfixLab, lab_arrivals: ArrivalLog
) -> None:
    report = await probe(OPEN_ADDRESS, postfix_lab.tester_settings(), test_id="301")
    assert report.outcome == "accepted", report.transcript
    assert report.banner is not None and report.banner.startswith("220 open.lab.example")
    accepted = _accepted_tokens(report)
    arrived = lab_arrivals.wait_for(accepted, timeout=20, flush=postfix_lab.open, count=2)
    assert arrived, postfix_lab.open.queue() + postfix_lab.open.log()
    assert {arrival.delivered_by for arrival in arrived} == {OPEN_ADDRESS}
    by_token = {result.token: result.form.name for result in report.forms}
    assert {"null-sender", "sender-collector"} <= {by_token[a.token] for a in arrived}
    for arrival in arrived:
        assert f"X-Relay-Test-Token: {arrival.token}" in arrival.headers
        assert "Received: from" in arrival.headers  # Postfix's own trace of the relaying


async def test_the_closed_relay_refuses_every_form(
    postfix_lab: PostfixLab, lab_arrivals: ArrivalLog
) -> None:
    report = await probe(CLOSED_ADDRESS, postfix_lab.tester_settings(), test_id="302")
    assert report.outcome == "refused", report.transcript
    assert report.reason is None
    for result in report.forms:
        assert not result.accepted
        reply = result.rcpt_reply or ""
        assert reply.startswith(("554 5.7.1", "501 5.1.3")), (result.form.name, reply)
    # Postfix hangs up after 20 errors (smtpd_hard_error_limit); the tester came back
    assert report.transcript.count(f"connecting to {CLOSED_ADDRESS}") >= 2
    tokens = {result.token for result in report.forms}
    assert lab_arrivals.arrived(tokens) == []


async def test_an_open_relay_closed_and_reloaded_refuses(
    postfix_lab: PostfixLab, lab_arrivals: ArrivalLog
) -> None:
    postfix_lab.open.close_relay()
    try:
        report = await probe(OPEN_ADDRESS, postfix_lab.tester_settings(), test_id="303")
    finally:
        postfix_lab.open.open_relay()
    assert report.outcome == "refused", report.transcript
    assert _accepted_tokens(report) == set()
