"""Verdicts from probe reports and arrivals, and what they do to the list (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from dnsbl.addresses import parse_network
from dnsbl.config import Settings, load_settings
from dnsbl.errors import PolicyRefused
from dnsbl.listings.covering import listings_containing
from dnsbl.listings.manual import list_entries
from dnsbl.listings.rows import Source
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.models import utcnow
from dnsbl.policy import add_policy_network
from dnsbl.relay.evidence import ArrivalView, get_test, set_verdict, start_test
from dnsbl.relay.tester.battery import EnvelopeForm
from dnsbl.relay.tester.probe import FormResult, ProbeReport
from dnsbl.relay.verdicts import (
    apply_verdict,
    decide,
    outputs_of,
    relay_listings,
)
from tests.conftest import ZONE, zone_config
from tests.relay_lab import lab_settings

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _report(outcome: str, *forms: tuple[str, str | None, bool], reason: str | None = None):
    results = [
        FormResult(
            EnvelopeForm(name, "<>", f"<rt-x@{name}>"),
            f"tok{n}",
            mail_reply="250 ok",
            rcpt_reply=rcpt,
            data_reply="250 queued" if accepted else None,
            accepted=accepted,
        )
        for n, (name, rcpt, accepted) in enumerate(forms)
    ]
    return ProbeReport("192.0.2.1", NOW, NOW, outcome, reason, forms=results)  # type: ignore[arg-type]


def _arrival(form: str, by: str) -> ArrivalView:
    return ArrivalView(form, f"tok-{form}", by, NOW)


def test_only_an_arrival_confirms() -> None:
    accepted = _report("accepted", ("classic", "250 ok", True), ("bang", "550 no", False))
    verdict, reason = decide(accepted, [_arrival("classic", "192.0.2.1")])
    assert verdict == "confirmed" and "classic" in (reason or "")
    verdict, reason = decide(accepted, [])
    assert verdict == "suspicious" and "no test message arrived" in (reason or "")
    rcpt_only = _report("refused", ("classic", "250 ok", False))  # RCPT taken, DATA refused
    assert decide(rcpt_only, [])[0] == "suspicious"
    closed = _report("refused", ("classic", "554 relay denied", False))
    assert decide(closed, []) == ("closed", "refused every relay form")
    silent = _report("untestable", reason="connection refused")
    assert decide(silent, []) == ("untestable", "connection refused")


def test_outputs_are_the_other_delivering_addresses() -> None:
    arrivals = [
        _arrival("a", "192.0.2.1"),
        _arrival("b", "198.51.100.7"),
        _arrival("c", "198.51.100.7"),
        _arrival("d", "2001:db8::1"),
    ]
    assert outputs_of("192.0.2.1", arrivals) == ["198.51.100.7", "2001:db8::1"]
    # a dual-stack collector sees IPv4 peers as IPv4-mapped IPv6: the same host
    assert outputs_of("192.0.2.1", [_arrival("a", "::ffff:192.0.2.1")]) == []


@pytest.fixture
def lab(database_url: str) -> Settings:
    return lab_settings(database_url)


def _confirmed(engine: Engine, settings: Settings, address: str, *outputs: str) -> int:
    test_id = start_test(engine, address, job_id=None, forced=False)
    set_verdict(engine, test_id, "confirmed", "arrived")
    arrivals = [_arrival("classic", address)] + [_arrival("x", o) for o in outputs]
    apply_verdict(engine, settings, test_id, address, "confirmed", arrivals)
    return test_id


def test_confirmed_lists_closed_ends(engine: Engine, lab: Settings) -> None:
    ListingStore(engine).ensure_zones(lab.zone_names)
    first = _confirmed(engine, lab, "192.0.2.1", "198.51.100.7")
    [relay] = relay_listings(engine, "192.0.2.1")
    [output] = relay_listings(engine, "198.51.100.7")
    assert (relay.category, relay.code, relay.txt) == ("open-relay", None, None)
    assert output.category == "relay-output" and f"#{first}" in (output.reason or "")
    expiry = relay.expires_at.replace(tzinfo=UTC) if relay.expires_at else None
    assert expiry is not None and expiry > utcnow() + timedelta(days=29)
    # a later confirmation extends (replaces) the listing, citing the new test
    second = _confirmed(engine, lab, "192.0.2.1", "198.51.100.7")
    [extended] = relay_listings(engine, "192.0.2.1")
    assert extended.id != relay.id and f"#{second}" in (extended.reason or "")
    assert get_test(engine, first).listed_as == []  # type: ignore[union-attr]
    assert sorted(get_test(engine, second).listed_as) == [  # type: ignore[union-attr]
        f"{ZONE} open-relay",
        f"{ZONE} relay-output",
    ]
    # closed: the relay and the output its tests listed leave; nothing is deleted
    closed = start_test(engine, "192.0.2.1", job_id=None, forced=True)
    set_verdict(engine, closed, "closed", "refused every relay form")
    apply_verdict(engine, lab, closed, "192.0.2.1", "closed", [])
    assert relay_listings(engine, "192.0.2.1") == []
    assert relay_listings(engine, "198.51.100.7") == []
    history = listings_containing(engine, "192.0.2.1", active_only=False)
    assert f"relay test #{closed}" in (history[0].end_reason or "")


def test_suspicious_and_untestable_leave_the_list_alone(engine: Engine, lab: Settings) -> None:
    ListingStore(engine).ensure_zones(lab.zone_names)
    _confirmed(engine, lab, "192.0.2.1")
    for verdict in ("suspicious", "untestable"):
        test_id = start_test(engine, "192.0.2.1", job_id=None, forced=True)
        assert apply_verdict(engine, lab, test_id, "192.0.2.1", verdict, []) == []
    assert len(relay_listings(engine, "192.0.2.1")) == 1


def test_never_list_wins_and_codes_fall_back(engine: Engine, database_url: str) -> None:
    bare = zone_config(categories={})
    settings = load_settings(
        None,
        database_url=database_url,
        zones=[bare, zone_config("other.example.org")],
        tester={"list_zones": [ZONE]},
    )
    ListingStore(engine).ensure_zones(settings.zone_names)
    add_policy_network(engine, "198.51.100.0/24", "never-list", "an ISP smarthost", "admin")
    test_id = start_test(engine, "192.0.2.1", job_id=None, forced=False)
    notes = apply_verdict(
        engine,
        settings,
        test_id,
        "192.0.2.1",
        "confirmed",
        [_arrival("a", "192.0.2.1"), _arrival("b", "198.51.100.7"), _arrival("c", "203.0.113.9")],
    )
    assert any("198.51.100.7 not listed" in note for note in notes)
    [relay] = relay_listings(engine, "192.0.2.1")
    [output] = relay_listings(engine, "203.0.113.9")
    assert relay_listings(engine, "198.51.100.7") == []
    # the zone has no categories configured: the relay codes are written explicitly
    assert (relay.zone.name, relay.code, output.code) == (ZONE, "127.0.0.2", "127.0.0.3")


def test_manual_and_report_listings(engine: Engine, lab: Settings) -> None:
    until = utcnow() + timedelta(days=7)
    store = ListingStore(engine)
    store.ensure_zones([ZONE])
    entry = Entry(
        parse_network("203.0.113.0/28"),
        category="spam-source",
        code="127.0.0.4",
        reason="spam sample 1234 at the trap",
        expires_at=until,
    )
    ids = list_entries(store, ZONE, [entry], actor="admin", source=Source.REPORT).listing_ids
    [listing] = listings_containing(engine, "203.0.113.5")
    assert listing.id == ids[0] and listing.source == "report"
    assert (listing.network, listing.category, listing.code) == (
        "203.0.113.0/28",
        "spam-source",
        "127.0.0.4",
    )
    assert relay_listings(engine, "203.0.113.5") == []  # not a relay-test listing
    add_policy_network(engine, "198.51.100.0/24", "never-list", None, "admin")
    with pytest.raises(PolicyRefused):
        list_entries(
            store,
            ZONE,
            [Entry(parse_network("198.51.100.1"))],
            actor="admin",
            source=Source.MANUAL,
        )


def test_only_temporary_failures_are_untestable() -> None:
    greylisted = _report("refused", ("classic", "450 4.7.1 greylisted", False))
    greylisted.reason = "temporary failure on 1 forms"
    assert decide(greylisted, []) == ("untestable", "temporary failure on 1 forms")
    mixed = _report(
        "refused", ("classic", "450 4.7.1 greylisted", False), ("bang", "554 5.7.1 no", False)
    )
    assert decide(mixed, [])[0] == "closed"


def test_a_temporary_answer_to_the_collectors_domain_is_no_refusal() -> None:
    # An open relay that greylists: 450 for recipients in the collector's domain, while odd
    # local-looking forms get a syntax error. Not closed: it may relay on the next try.
    greylisting = _report("refused", ("percent", "501 5.1.3 bad syntax", False))
    greylisting.forms.append(
        FormResult(
            EnvelopeForm("null-sender", "<>", "<rt-x@relaytest.example>", direct=True),
            "tokd",
            mail_reply="250 ok",
            rcpt_reply="450 4.7.1 Greylisted",
        )
    )
    verdict, reason = decide(greylisting, [])
    assert verdict == "untestable"
    assert reason is not None and "null-sender" in reason and "not a refusal" in reason
    # Refused for good, the same host is closed (a 4xx on a local-looking form is its own
    # greylisting of a local recipient, which a closed server may well do).
    greylisting.forms[-1].rcpt_reply = "554 5.7.1 Relay access denied"
    greylisting.forms.append(
        FormResult(EnvelopeForm("percent-ip", "<>", "<rt-y%relaytest.example@[192.0.2.1]>"), "t")
    )
    greylisting.forms[-1].rcpt_reply = "450 4.7.1 Greylisted"
    assert decide(greylisting, [])[0] == "closed"


def test_late_arrivals_confirm_a_suspicious_test(engine: Engine, lab: Settings) -> None:
    from dnsbl.relay.collector import Arrival
    from dnsbl.relay.evidence import record_arrivals, record_probe
    from dnsbl.relay.jobs import claim
    from dnsbl.relay.nominations import get_nomination, settle_nominations, submit_nomination
    from dnsbl.relay.verdicts import confirm_late_arrivals

    ListingStore(engine).ensure_zones(lab.zone_names)
    nomination = submit_nomination(engine, lab, "192.0.2.1", "alice")
    [job] = claim(engine, "w", limit=1, lease_seconds=60, max_attempts=3)
    test_id = start_test(engine, "192.0.2.1", job_id=job.id, forced=False)
    report = _report("accepted", ("classic", "250 ok", True))
    record_probe(engine, test_id, report)
    set_verdict(engine, test_id, "suspicious", "no test message arrived")
    settle_nominations(engine, job.id, test_id=test_id, verdict="suspicious")
    assert confirm_late_arrivals(engine, lab) == []  # nothing arrived yet
    record_arrivals(engine, [Arrival("tok0", "192.0.2.1", "", [], utcnow(), "Subject: x")])
    assert confirm_late_arrivals(engine, lab) == [test_id]
    test = get_test(engine, test_id)
    assert (
        test is not None
        and test.verdict == "confirmed"
        and "after the wait window" in (test.reason or "")
    )
    assert test.listed_as == [f"{ZONE} open-relay"]
    assert get_nomination(engine, nomination.id).verdict == "confirmed"  # type: ignore[union-attr]
    assert confirm_late_arrivals(engine, lab) == []  # done once


def test_a_newer_test_outranks_a_late_arrival(engine: Engine, lab: Settings) -> None:
    from dnsbl.relay.collector import Arrival
    from dnsbl.relay.evidence import record_arrivals, record_probe
    from dnsbl.relay.verdicts import confirm_late_arrivals

    old = start_test(engine, "192.0.2.1", job_id=None, forced=False)
    record_probe(engine, old, _report("accepted", ("classic", "250 ok", True)))
    set_verdict(engine, old, "suspicious", "no test message arrived")
    newer = start_test(engine, "192.0.2.1", job_id=None, forced=True)
    set_verdict(engine, newer, "closed", "refused every relay form")
    record_arrivals(engine, [Arrival("tok0", "192.0.2.1", "", [], utcnow(), "")])
    assert confirm_late_arrivals(engine, lab) == []
    assert relay_listings(engine, "192.0.2.1") == []
