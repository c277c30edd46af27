"""The test message: a well-formed RFC 5322 message that carries the token and explains itself."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_string
from email.policy import default

from dnsbl.relay.tester.battery import EnvelopeForm
from dnsbl.relay.tester.message import TOKEN_HEADER, build_message

FORM = EnvelopeForm("quoted-at", "<relaytest@[192.0.2.7]>", '<"rt-9z04abcdef0123@c.example">')
TOKEN = "9z04abcdef0123"


def _build() -> str:
    return build_message(
        FORM,
        TOKEN,
        target_ip="192.0.2.7",
        test_id="9",
        collector_domain="c.example",
        helo_name="tester.example",
        now=datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
    )


def test_headers_carry_the_token_and_the_envelope() -> None:
    message = message_from_string(_build(), policy=default)
    assert message[TOKEN_HEADER] == TOKEN
    assert message["X-Envelope-Sender"] == "<relaytest@[192.0.2.7]>"
    assert message["X-Envelope-Recipient"] == '<"rt-9z04abcdef0123@c.example">'
    assert message["X-Relay-Test-Form"] == "quoted-at"
    assert message["X-Relay-Test-Target"] == "192.0.2.7"
    assert message["Message-ID"] == f"<{TOKEN}@tester.example>"
    assert message["Date"] == "Sat, 28 Nov 2026 12:00:00 +0000"
    assert not message.defects


def test_the_body_explains_the_test_in_plain_ascii() -> None:
    text = _build()
    body = text.split("\n\n", 1)[1]
    assert text.isascii()
    assert max(len(line) for line in text.splitlines()) <= 998  # RFC 5322 §2.1.1
    assert "automated open-relay test" in body
    assert "192.0.2.7" in body
    assert f"Token:      {TOKEN}" in body
    assert 'RCPT TO:<"rt-9z04abcdef0123@c.example">' in body
    assert "retest" in body
