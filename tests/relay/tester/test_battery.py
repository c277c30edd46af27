"""The relay battery: the forms' exact text, one token each, and the bytes a server receives."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from dnsbl.config import TesterSettings
from dnsbl.relay.tester.battery import EnvelopeForm, battery
from dnsbl.relay.tester.message import TOKEN_HEADER
from dnsbl.relay.tester.probe import ProbeReport, probe
from dnsbl.relay.tester.tokens import find_token, key_of, token_factory
from tests.smtp_fakes import FakeSmtp, Recorded

C = "relaytest.example"
IP = "192.0.2.25"
S = "mx.example.net"


def _by_name(forms: list[EnvelopeForm]) -> dict[str, EnvelopeForm]:
    return {form.name: form for form in forms}


# nmap smtp-open-relay's 16 tests (RELAY-TESTS.md), with the token local part `rt-TOKEN`
NMAP = [
    ("<>", "<rt-T@C>"),
    ("<relaytest@C>", "<rt-T@C>"),
    ("<relaytest@S>", "<rt-T@C>"),
    ("<relaytest@[IP]>", "<rt-T@C>"),
    ("<relaytest@[IP]>", "<rt-T%C@[IP]>"),
    ("<relaytest@[IP]>", "<rt-T%C@S>"),
    ("<relaytest@[IP]>", '<"rt-T@C">'),
    ("<relaytest@[IP]>", '<"rt-T%C">'),
    ("<relaytest@[IP]>", "<rt-T@C@[IP]>"),
    ("<relaytest@[IP]>", '<"rt-T@C"@[IP]>'),
    ("<relaytest@[IP]>", "<rt-T@C@S>"),
    ("<relaytest@[IP]>", "<@[IP]:rt-T@C>"),
    ("<relaytest@[IP]>", "<@S:rt-T@C>"),
    ("<relaytest@[IP]>", "<C!rt-T>"),
    ("<relaytest@[IP]>", "<C!rt-T@[IP]>"),
    ("<relaytest@[IP]>", "<C!rt-T@S>"),
]


def _shape(form: EnvelopeForm) -> tuple[str, str]:
    """The form with the token, collector domain, address and banner name put back as letters."""
    token = find_token(form.rcpt_to)
    assert token is not None

    def swap(text: str) -> str:
        return text.replace(token, "T").replace(C, "C").replace(IP, "IP").replace(S, "S")

    return swap(form.mail_from), swap(form.rcpt_to)


def test_the_nmap_sixteen_are_all_there() -> None:
    shapes = [_shape(form) for form in battery(token_factory("1"), C, IP, S)]
    for expected in NMAP:
        assert expected in shapes


def test_the_orbs_and_rfc_2505_additions_are_there() -> None:
    shapes = {_shape(form) for form in battery(token_factory("1"), C, IP, S)}
    assert ("<relaytest@[IP]>", " rt-T@C") in shapes  # unbracketed recipient
    assert ("<relaytest>", "<rt-T@C>") in shapes  # sender without a domain
    assert ("<relaytest@[IP]>", "<rt-T%C@IP>") in shapes  # % against the bare address
    assert ("<relaytest@[IP]>", "<rt-T@C@IP>") in shapes  # @…@ against the bare address
    assert ("<relaytest@[IP]>", "<C!rt-T@IP>") in shapes  # ! path with @relay
    assert ("<relaytest@[IP]>", "<@[IP],@C:rt-T@C>") in shapes  # multi-hop source route
    assert ("<postmaster@[IP]>", "<rt-T@C>") in shapes  # a local user of the host
    assert ("<postmaster@S>", "<rt-T@C>") in shapes


def test_at_least_twenty_forms_with_and_without_a_banner_name() -> None:
    with_name = battery(token_factory("1"), C, IP, S)
    without = battery(token_factory("1"), C, IP, None)
    assert len(with_name) >= 20
    assert len(without) >= 20
    assert all(S not in form.mail_from + form.rcpt_to for form in without)
    assert len({form.name for form in with_name}) == len(with_name)


def test_every_form_has_its_own_token_in_its_recipient_local_part() -> None:
    token_for = token_factory("test-77")
    forms = battery(token_for, C, IP, S)
    tokens = [find_token(form.rcpt_to) for form in forms]
    assert tokens == [token_for(form.name) for form in forms]
    assert len(set(tokens)) == len(forms)
    for token in tokens:
        assert token is not None
        assert re.fullmatch(r"[a-z0-9]+", token)
        assert key_of(token) == "test77"
    for form in forms:
        assert "rt-" not in form.mail_from  # a bounce to the sender never looks like a test


def test_direct_forms_are_those_plainly_addressed_to_the_collector() -> None:
    direct = {_shape(form)[1] for form in battery(token_factory("1"), C, IP, S) if form.direct}
    assert direct == {"<rt-T@C>", " rt-T@C", "<@[IP]:rt-T@C>", "<@[IP],@C:rt-T@C>", "<@S:rt-T@C>"}


def test_ipv6_targets_use_the_ipv6_address_literal() -> None:
    forms = _by_name(battery(token_factory("1"), C, "2001:db8::25", None))
    assert forms["sender-ip-literal"].mail_from == "<relaytest@[IPv6:2001:db8::25]>"
    assert forms["source-route-ip-literal"].rcpt_to.startswith("<@[IPv6:2001:db8::25]:rt-")


def test_tokens_are_unguessable_and_stable_per_form() -> None:
    first, second = token_factory("5"), token_factory("5")
    assert first("null-sender") == first("null-sender")
    assert first("null-sender") != second("null-sender")
    assert find_token("<x!RT-5Z00ABCDEF0123@C>") == "5z00abcdef0123"
    assert find_token("<relaytest@C>") is None


# --- every form on the wire, against a fake server that records the raw arguments ------------

_FORM_NAMES = [
    form.name for form in battery(token_factory("1"), C, "127.0.0.1", "fake.lab.example")
]


@pytest.fixture(scope="module")
def accepted_everything() -> Iterator[tuple[ProbeReport, Recorded]]:
    """One probe against a fake that accepts every form (run once for all the form checks)."""
    with FakeSmtp(hostname="fake.lab.example") as fake:
        settings = TesterSettings(
            port=fake.port,
            testable_networks=["127.0.0.0/8"],
            collector_domain=C,
            connect_timeout=5,
            command_timeout=5,
            session_timeout=30,
        )
        report = asyncio.run(probe("127.0.0.1", settings, test_id="9"))
        yield report, fake.recorded


@pytest.mark.parametrize("name", _FORM_NAMES)
def test_form_reaches_the_server_byte_for_byte(
    name: str, accepted_everything: tuple[ProbeReport, Recorded]
) -> None:
    report, recorded = accepted_everything
    index = [result.form.name for result in report.forms].index(name)
    result = report.forms[index]
    assert recorded.mail_args[index] == result.form.mail_from
    assert recorded.rcpt_args[index] == result.form.rcpt_to
    assert result.accepted
    message = recorded.messages[index].decode()
    assert f"{TOKEN_HEADER}: {result.token}\r\n" in message
    assert f"X-Envelope-Sender: {result.form.mail_from.strip()}\r\n" in message
    assert f"X-Envelope-Recipient: {result.form.rcpt_to.strip()}\r\n" in message
    body = message.split("\r\n\r\n", 1)[1]
    assert result.token in body
    assert "open-relay test" in body
