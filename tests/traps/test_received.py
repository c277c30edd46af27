"""The source behind our own relays, read from the Received chain as trusted_networks does."""

from __future__ import annotations

from dnsbl.traps.received import received_from, source_of, trusted_networks

MX = trusted_networks(["127.0.0.50/32", "10.0.0.0/8"])
CHAIN = [
    "from mx-in.example.org (mx-in.example.org [10.1.2.3]) by store.example.org (Postfix)"
    " with ESMTP id 1; Tue, 1 Dec 2026 12:00:02 +0000",
    "from spammer.example (host.spam.example [192.0.2.77]) by mx-in.example.org (Postfix)"
    " with ESMTP id 2 for <x@trap.example.org>; Tue, 1 Dec 2026 12:00:01 +0000",
    "from forged.example ([198.51.100.9]) by spammer.example; Tue, 1 Dec 2026 12:00:00 +0000",
]


def test_the_forms_mtas_write() -> None:
    assert received_from(CHAIN[1]) == "192.0.2.77"
    assert received_from("from a.example ([IPv6:2001:db8::25]) by b") == "2001:db8::25"
    assert received_from("from a.example (a.example (192.0.2.5)) by b") == "192.0.2.5"
    assert received_from("from [192.0.2.6] (helo=x) by exim") == "192.0.2.6"
    assert received_from("from localhost by b.example; date") is None
    assert received_from("by b.example with local") is None


def test_an_untrusted_peer_is_the_source() -> None:
    assert source_of(CHAIN, MX, peer="192.0.2.200") == "192.0.2.200"


def test_behind_trusted_relays_the_first_untrusted_hop() -> None:
    assert source_of(CHAIN, MX, peer="127.0.0.50") == "192.0.2.77"
    assert source_of(CHAIN, MX, peer="::ffff:127.0.0.50") == "192.0.2.77"


def test_a_report_starts_trusted() -> None:
    # What a spammer wrote below the first untrusted hop is never read.
    assert source_of(CHAIN, MX) == "192.0.2.77"


def test_nobody_to_blame() -> None:
    assert source_of(CHAIN[:1], MX, peer="127.0.0.50") is None
    assert source_of(["from localhost by mx-in"], MX, peer="127.0.0.50") is None
    assert source_of([], MX) is None
