"""The public API: lookup, nominations, delist requests and relay-test evidence."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dnsbl.relay.states import Verdict
from tests.api_fixtures import *  # noqa: F403
from tests.api_fixtures import ZONE, add_listing, assert_problem, relay_test_of

# -- lookup ----------------------------------------------------------------------------------


def test_lookup_unlisted_address(client: TestClient) -> None:
    response = client.get("/v1/lookup/192.0.2.10")
    assert response.status_code == 200
    body = response.json()
    assert body["address"] == "192.0.2.10"
    assert body["listed"] is False
    assert body["listings"] == []
    assert body["delist_url"] is None
    assert body["zones"] == [ZONE, "pbl.example.org"]


def test_lookup_listed_address_gives_code_reason_andrelay_test_of(
    client: TestClient, engine: Engine
) -> None:
    listing_id = add_listing(engine, "192.0.2.10")
    test_id = relay_test_of(engine, "192.0.2.10")
    body = client.get("/v1/lookup/192.0.2.10").json()
    assert body["listed"] is True
    [item] = body["listings"]
    assert item["zone"] == ZONE
    assert item["category"] == "open-relay"
    assert item["code"] == "127.0.0.2"  # the category's code in the zone (the listing has none)
    assert item["txt"] == "Listed: see https://bl.example.org/lookup/192.0.2.10"
    assert item["reason"] == "relayed a test message"
    assert item["source"] == "relay-test"
    assert item["listing_id"] == listing_id
    assert item["since"].endswith("Z") or "+00:00" in item["since"]
    assert body["evidence"][0]["id"] == test_id
    assert body["evidence"][0]["verdict"] == Verdict.CONFIRMED
    assert body["evidence"][0]["url"] == f"https://bl.example.org/v1/relay-tests/{test_id}"
    assert body["delist_url"] == "https://bl.example.org/delist/192.0.2.10"


def test_lookup_follows_longest_prefix_and_exclusions(client: TestClient, engine: Engine) -> None:
    add_listing(engine, "198.51.100.0/24", category="manual", source="manual", code="127.0.0.4")
    add_listing(engine, "198.51.100.64/26", category="manual", source="manual", excluded=True)
    add_listing(engine, "198.51.100.70", category="manual", source="manual", code="127.0.0.5")
    add_listing(engine, "198.51.100.0/24", zone="pbl.example.org", category="dynamic")

    def codes(address: str) -> dict[tuple[str, str], str]:
        body = client.get(f"/v1/lookup/{address}").json()
        return {(i["zone"], i["category"]): i["code"] for i in body["listings"]}

    assert codes("198.51.100.1") == {
        (ZONE, "manual"): "127.0.0.4",
        ("pbl.example.org", "dynamic"): "127.0.0.2",
    }
    # Inside the excluded /26: not listed in that zone and category, still in the other zone.
    assert codes("198.51.100.65") == {("pbl.example.org", "dynamic"): "127.0.0.2"}
    # A more specific listing inside the exclusion lists again.
    assert codes("198.51.100.70")[(ZONE, "manual")] == "127.0.0.5"


def test_lookup_exclusion_alone_is_not_listed(client: TestClient, engine: Engine) -> None:
    add_listing(engine, "192.0.2.5", excluded=True)
    body = client.get("/v1/lookup/192.0.2.5").json()
    assert body["listed"] is False


def test_lookup_ipv6(client: TestClient, engine: Engine) -> None:
    add_listing(engine, "2001:db8::/64", category="manual", source="manual")
    body = client.get("/v1/lookup/2001:db8::25").json()
    assert body["listed"] is True
    assert body["listings"][0]["network"] == "2001:db8::/64"
    assert client.get("/v1/lookup/2001:db8:1::25").json()["listed"] is False


def test_lookup_rfc5782_test_addresses(client: TestClient) -> None:
    listed = client.get("/v1/lookup/127.0.0.2").json()
    assert listed["listed"] is True
    assert {i["zone"] for i in listed["listings"]} == {ZONE, "pbl.example.org"}
    assert all(i["code"] == "127.0.0.2" for i in listed["listings"])
    assert client.get("/v1/lookup/127.0.0.1").json()["listed"] is False


def test_lookup_bad_address_is_a_problem(client: TestClient) -> None:
    body = assert_problem(client.get("/v1/lookup/not-an-address"), 400, "bad-address")
    assert "not-an-address" in body["detail"]
    assert_problem(client.get("/v1/lookup/" + "1" * 80), 422, "validation")


# -- nominations -----------------------------------------------------------------------------


def test_nomination_is_queued_and_readable(client: TestClient) -> None:
    response = client.post(
        "/v1/nominations", json={"address": "192.0.2.20", "email": "me@example.net"}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["address"] == "192.0.2.20"
    assert body["status"] == "queued"
    assert body["queue_position"] == 1
    assert response.headers["location"] == f"/v1/nominations/{body['id']}"
    again = client.get(response.headers["location"]).json()
    assert again["id"] == body["id"]
    assert again["verdict"] is None


def test_nomination_refusals(client: TestClient) -> None:
    assert_problem(client.post("/v1/nominations", json={"address": "nope"}), 400, "bad-address")
    body = assert_problem(
        client.post("/v1/nominations", json={"address": "10.0.0.1"}), 403, "not-testable"
    )
    assert "10.0.0.1" in body["detail"]
    assert_problem(client.post("/v1/nominations", json={}), 422, "validation")
    assert_problem(
        client.post("/v1/nominations", json={"address": "192.0.2.1", "email": "x"}),
        422,
        "validation",
    )
    assert_problem(client.get("/v1/nominations/999999"), 404, "not-found")
    assert_problem(client.get("/v1/nominations/0"), 422, "validation")


def test_nominations_are_rate_limited_per_submitter(client: TestClient) -> None:
    for host in range(30, 33):  # the settings allow 3 per submitter per hour
        ok = client.post("/v1/nominations", json={"address": f"192.0.2.{host}"})
        assert ok.status_code == 202
    limited = client.post("/v1/nominations", json={"address": "192.0.2.40"})
    assert_problem(limited, 429, "rate-limited")
    assert int(limited.headers["retry-after"]) > 0


# -- delist requests -------------------------------------------------------------------------


def test_delist_request_needs_confirmation_and_a_listing(
    client: TestClient, engine: Engine
) -> None:
    add_listing(engine, "192.0.2.50")
    body = assert_problem(
        client.post(
            "/v1/delist-requests", json={"address": "192.0.2.50", "confirmed_fixed": False}
        ),
        422,
        "confirmation-required",
    )
    assert "fixed" in body["detail"]
    assert_problem(
        client.post("/v1/delist-requests", json={"address": "192.0.2.51", "confirmed_fixed": True}),
        409,
        "not-listed",
    )
    assert_problem(
        client.post("/v1/delist-requests", json={"address": "192.0.2.50"}), 422, "validation"
    )
    assert_problem(client.get("/v1/delist-requests/424242"), 404, "not-found")


def test_delist_request_queues_a_retest(client: TestClient, engine: Engine) -> None:
    add_listing(engine, "192.0.2.60")
    response = client.post(
        "/v1/delist-requests",
        json={"address": "192.0.2.60", "confirmed_fixed": True, "note": "closed the relay"},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert body["queue_position"] == 1
    assert body["page_url"] == f"https://bl.example.org/delist/status/{body['id']}"
    status = client.get(f"/v1/delist-requests/{body['id']}").json()
    assert status["address"] == "192.0.2.60"
    assert status["test_id"] is None


# -- evidence --------------------------------------------------------------------------------


def test_relay_testrelay_test_of(client: TestClient, engine: Engine) -> None:
    test_id = relay_test_of(engine, "192.0.2.70")
    body = client.get(f"/v1/relay-tests/{test_id}").json()
    assert body["address"] == "192.0.2.70"
    assert body["banner"] == "220 mx.example.net ESMTP"
    assert "EHLO tester" in body["transcript"]
    assert body["verdict"] == Verdict.CONFIRMED
    assert_problem(client.get("/v1/relay-tests/77777"), 404, "not-found")


def test_zone_txt_defaults_to_the_lookup_page() -> None:
    from dnsbl.config import load_settings

    zone = {"name": "bl.example.net", "ns": ["ns1.example.net"], "hostmaster": "h.example.net"}
    settings = load_settings(
        None,
        api={"public_url": "https://dnsbl.example.net/"},
        zones=[zone, {**zone, "name": "own.example.net", "txt": "see $"}],
    )
    assert settings.zones[0].txt == "Listed: see https://dnsbl.example.net/lookup/$"
    assert settings.zones[1].txt == "see $"
