"""Nominations on SQLite and PostgreSQL: validation, policy refusals, limits, deduplication."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from dnsbl.config import Settings, load_settings
from dnsbl.errors import AddressError, PolicyRefused, RateLimited
from dnsbl.models.relay import Nomination
from dnsbl.policy import add_policy_network, list_policy_networks, remove_policy_network
from dnsbl.relay.evidence import set_verdict, start_test
from dnsbl.relay.jobs import claim, get_job
from dnsbl.relay.nominations import get_nomination, settle_nominations, submit_nomination
from tests.conftest import zone_config
from tests.relay_lab import lab_settings


@pytest.fixture
def lab(database_url: str) -> Settings:
    return lab_settings(database_url)


def _refusals(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as conn:
        return [
            (row.address, row.refusal_reason)
            for row in conn.execute(
                select(Nomination.address, Nomination.refusal_reason)
                .where(Nomination.status == "refused")
                .order_by(Nomination.id)
            )
        ]


def test_a_nomination_is_queued_with_its_position(engine: Engine, lab: Settings) -> None:
    first = submit_nomination(engine, lab, "192.0.2.1", "alice", "spam from it")
    second = submit_nomination(engine, lab, " 192.0.2.2 ", "alice")
    assert (first.status, first.queue_position, first.note) == ("queued", 1, "spam from it")
    assert (second.address, second.queue_position, second.verdict) == ("192.0.2.2", 2, None)
    assert get_nomination(engine, 999) is None


def test_the_same_host_is_not_queued_twice(engine: Engine, lab: Settings) -> None:
    first = submit_nomination(engine, lab, "192.0.2.1", "alice")
    again = submit_nomination(engine, lab, "192.0.2.1", "bob")
    assert again.id == first.id
    [_job] = claim(engine, "w", limit=5, lease_seconds=60, max_attempts=3)
    testing = submit_nomination(engine, lab, "192.0.2.1", "carol")
    assert testing.id == first.id and testing.status == "testing"
    assert testing.queue_position is None


def test_a_host_tested_within_the_window_answers_with_that_test(
    engine: Engine, lab: Settings
) -> None:
    first = submit_nomination(engine, lab, "192.0.2.1", "alice")
    [job] = claim(engine, "w", limit=5, lease_seconds=60, max_attempts=3)
    test_id = start_test(engine, "192.0.2.1", job_id=job.id, forced=False)
    set_verdict(engine, test_id, "closed", "refused every relay form")
    assert settle_nominations(engine, job.id, test_id=test_id, verdict="closed") == 1
    done = get_nomination(engine, first.id)
    assert done is not None
    assert (done.status, done.verdict, done.test_id) == ("done", "closed", test_id)
    assert done.finished_at is not None
    assert submit_nomination(engine, lab, "192.0.2.1", "bob").id == first.id
    # a host tested for another reason (a retest) answers with that test too
    other = start_test(engine, "192.0.2.9", job_id=None, forced=True)
    set_verdict(engine, other, "confirmed", "arrived")
    answered = submit_nomination(engine, lab, "192.0.2.9", "bob")
    assert (answered.status, answered.verdict, answered.test_id) == ("done", "confirmed", other)


def test_policy_refusals_are_recorded_with_their_reason(engine: Engine, database_url: str) -> None:
    default = load_settings(None, database_url=database_url, zones=[zone_config()])
    for address in ("10.0.0.1", "127.0.0.2", "169.254.1.1", "192.0.2.1", "224.0.0.1", "::1"):
        with pytest.raises(PolicyRefused, match="outside testable networks"):
            submit_nomination(engine, default, address, "alice")
    lab = lab_settings(database_url, never_test=["192.0.2.128/25"])
    with pytest.raises(PolicyRefused, match="never-test"):
        submit_nomination(engine, lab, "192.0.2.200", "alice")
    add_policy_network(engine, "192.0.2.16/28", "never-test", "their lawyer wrote", "admin")
    add_policy_network(engine, "192.0.2.32/28", "never-list", "a partner", "admin")
    with pytest.raises(PolicyRefused, match="their lawyer wrote"):
        submit_nomination(engine, lab, "192.0.2.17", "alice")
    with pytest.raises(PolicyRefused, match="never-list"):
        submit_nomination(engine, lab, "192.0.2.33", "alice")
    refusals = _refusals(engine)
    assert [address for address, _ in refusals] == [
        "10.0.0.1",
        "127.0.0.2",
        "169.254.1.1",
        "192.0.2.1",
        "224.0.0.1",
        "::1",
        "192.0.2.200",
        "192.0.2.17",
        "192.0.2.33",
    ]
    assert all(reason for _, reason in refusals)
    refused = get_nomination(engine, 1)
    assert refused is not None and refused.status == "refused" and refused.refusal_reason
    # taking a network off the list lets its hosts be tested again
    assert remove_policy_network(engine, "192.0.2.16/28", "never-test", "admin")
    assert [p.network for p in list_policy_networks(engine)] == ["192.0.2.32/28"]
    assert submit_nomination(engine, lab, "192.0.2.17", "alice").status == "queued"


def test_submitters_are_rate_limited(engine: Engine, database_url: str) -> None:
    lab = lab_settings(database_url, nominations_per_submitter=2, nomination_window=600)
    submit_nomination(engine, lab, "192.0.2.1", "alice")
    submit_nomination(engine, lab, "192.0.2.2", "alice")
    with pytest.raises(RateLimited) as caught:
        submit_nomination(engine, lab, "192.0.2.3", "alice")
    assert 0 < caught.value.retry_after <= 600
    assert submit_nomination(engine, lab, "192.0.2.3", "bob").status == "queued"


def test_bulk_nominations_cannot_aim_the_tester_at_one_network(
    engine: Engine, database_url: str
) -> None:
    lab = lab_settings(
        database_url, nominations_per_network=3, nominations_per_window=7, nomination_window=600
    )
    # Many submitters (one address each, as a botnet would be) against one /24:
    for host in (1, 2, 3):
        submit_nomination(engine, lab, f"192.0.2.{host}", f"bot{host}")
    with pytest.raises(RateLimited, match=r"3 hosts of 192\.0\.2\.0/24") as caught:
        submit_nomination(engine, lab, "192.0.2.4", "bot4")
    assert 0 < caught.value.retry_after <= 600
    # A host already queued still answers with its record; a refused one costs nothing.
    assert submit_nomination(engine, lab, "192.0.2.1", "bot5").address == "192.0.2.1"
    with pytest.raises(PolicyRefused):
        submit_nomination(engine, lab, "10.0.0.1", "bot6")
    # IPv6 by /48, whatever the spelling of the address.
    for host in ("2001:db8:1::1", "2001:db8:1:0:0:0:0:2", "2001:0db8:0001::3"):
        submit_nomination(engine, lab, host, "bot7")
    with pytest.raises(RateLimited, match="2001:db8:1::/48"):
        submit_nomination(engine, lab, "2001:db8:1:ffff::4", "bot8")
    # And everyone together: seven new tests in the window, whatever the networks.
    assert submit_nomination(engine, lab, "2001:db8:2::1", "bot9").status == "queued"
    with pytest.raises(RateLimited, match="from everyone"):
        submit_nomination(engine, lab, "2001:db8:3::1", "bot10")


def test_bad_addresses_are_refused(engine: Engine, lab: Settings) -> None:
    for text in ("not-an-ip", "192.0.2.0/24", "", "300.1.1.1"):
        with pytest.raises(AddressError):
            submit_nomination(engine, lab, text, "alice")
    assert get_nomination(engine, 1) is None


def test_queued_job_is_a_test_job(engine: Engine, lab: Settings) -> None:
    view = submit_nomination(engine, lab, "2001:db8::25", "alice")
    with engine.connect() as conn:
        job_id = conn.scalar(select(Nomination.job_id).where(Nomination.id == view.id))
    assert job_id is not None
    job = get_job(engine, job_id)
    assert job is not None and (job.kind, job.target, job.forced) == ("test", "2001:db8::25", False)
