"""The trap address never shows: not plain, not in any case, not encoded, not as a domain."""

from __future__ import annotations

from dnsbl.config import TrapsSettings
from dnsbl.traps.message import BODY_LIMIT, message_facts
from dnsbl.traps.redaction import Redactor

TRAPS = TrapsSettings(domains=["trap.example.org"], addresses=["spamtrap@real.example.net"])


def test_addresses_domains_and_encodings() -> None:
    redact = Redactor(TRAPS)
    text = (
        "to Jane.Doe@TRAP.example.org, spamtrap@real.example.net, ok@real.example.net, "
        "a%40trap.example.org, b=40trap.example.org, mx.trap.example.org, nottrap.example.org"
    )
    shown = redact.text(text)
    assert "trap.example.org" not in shown.lower().replace("nottrap.example.org", "")
    assert "spamtrap" not in shown
    assert "ok@real.example.net" in shown  # a real user of the same domain stays
    assert "nottrap.example.org" in shown  # another domain that merely ends alike


def test_a_message_is_kept_decoded_and_redacted() -> None:
    raw = (
        b"Received: from x ([192.0.2.1]) by mx for <Spamtrap@Real.Example.Net>; date\r\n"
        b"From: Seller <seller@shop.example>\r\n"
        b"To: =?utf-8?b?c3BhbXRyYXBAcmVhbC5leGFtcGxlLm5ldA==?=\r\n"
        b"Subject: =?utf-8?q?Cheap_pills_for_spamtrap=40real=2Eexample=2Enet?=\r\n"
        b"Message-ID: <1@shop.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        b"RGVhciBzcGFtdHJhcEByZWFsLmV4YW1wbGUubmV0LCBidXkgbm93IQ==\r\n"
    )
    facts = message_facts(raw, TRAPS, ["spamtrap@real.example.net"])
    everything = " ".join(
        str(part) for part in (facts.subject, facts.headers, facts.body, facts.message_id)
    ).lower()
    assert "spamtrap" not in everything
    assert facts.subject == "Cheap pills for [redacted address]"
    assert "buy now" in facts.body
    assert facts.sender_domain == "shop.example"
    assert facts.message_id == "<1@shop.example>"


def test_the_body_is_cut_at_16_kb() -> None:
    raw = b"Subject: long\r\n\r\n" + b"x" * (BODY_LIMIT * 2)
    assert len(message_facts(raw, TRAPS).body) == BODY_LIMIT
