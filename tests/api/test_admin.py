"""The admin API: authentication and roles, listings, retests, queue, policy, audit, zones, keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dnsbl.apikeys import create_key, revoke_key
from dnsbl.listings.store import ListingStore
from tests.api_fixtures import *  # noqa: F403
from tests.api_fixtures import ZONE, add_listing, assert_problem, bearer

# -- authentication --------------------------------------------------------------------------


def test_admin_paths_need_a_key(client: TestClient, engine: Engine) -> None:
    for method, path in [
        ("GET", "/v1/admin/listings"),
        ("POST", "/v1/admin/listings"),
        ("GET", "/v1/admin/queue"),
        ("GET", "/v1/admin/audit"),
        ("GET", "/v1/admin/zones"),
        ("POST", "/v1/admin/retests"),
        ("GET", "/v1/admin/policy-networks"),
        ("GET", "/v1/admin/keys"),
    ]:
        response = client.request(method, path, json={})
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_bad_and_revoked_keys_are_refused(client: TestClient, engine: Engine) -> None:
    issued = create_key(engine, "admin")
    assert client.get("/v1/admin/zones", headers=bearer(issued.key)).status_code == 200
    wrong = issued.key[:-4] + ("AAAA" if not issued.key.endswith("AAAA") else "BBBB")
    for key in (wrong, "dnsbl_1", "garbage", "dnsbl_999_secret", "dnsbl_x_y"):
        assert_problem(client.get("/v1/admin/zones", headers=bearer(key)), 401, "unauthenticated")
    assert_problem(
        client.get("/v1/admin/zones", headers={"Authorization": f"Basic {issued.key}"}), 401
    )
    revoke_key(engine, issued.info.id)
    assert_problem(client.get("/v1/admin/zones", headers=bearer(issued.key)), 401)


def test_operator_reads_but_may_not_change(client: TestClient, operator_key: str) -> None:
    headers = bearer(operator_key)
    assert client.get("/v1/admin/listings", headers=headers).status_code == 200
    assert client.get("/v1/admin/queue", headers=headers).status_code == 200
    body = assert_problem(
        client.post(
            "/v1/admin/listings",
            headers=headers,
            json={"zone": ZONE, "network": "192.0.2.1", "reason": "x"},
        ),
        403,
        "forbidden",
    )
    assert "admin" in body["detail"]
    assert_problem(client.get("/v1/admin/keys", headers=headers), 403)
    assert_problem(
        client.post(
            "/v1/admin/policy-networks",
            headers=headers,
            json={"network": "192.0.2.0/24", "kind": "never-test", "reason": "x"},
        ),
        403,
    )


# -- listings --------------------------------------------------------------------------------


def test_create_list_and_end_a_listing(client: TestClient, engine: Engine, admin_key: str) -> None:
    headers = bearer(admin_key)
    serial = ListingStore(engine).serial(ZONE)
    response = client.post(
        "/v1/admin/listings",
        headers=headers,
        json={
            "zone": ZONE,
            "network": "192.0.2.0/28",
            "category": "spam-source",
            "code": "127.0.0.9",
            "reason": "trap hits",
            "source": "report",
            "expires_at": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    listing = response.json()
    assert listing["network"] == "192.0.2.0/28"
    assert listing["code"] == "127.0.0.9"
    assert listing["source"] == "report"
    assert listing["active"] is True
    assert listing["created_by"].startswith("key:")
    assert ListingStore(engine).serial(ZONE) == serial + 1
    looked = client.get("/v1/lookup/192.0.2.3").json()
    assert looked["listings"][0]["code"] == "127.0.0.9"

    ended = client.post(
        f"/v1/admin/listings/{listing['id']}/end", headers=headers, json={"reason": "cleaned"}
    )
    assert ended.status_code == 200
    assert ended.json()["active"] is False
    assert ended.json()["end_reason"] == "cleaned"
    assert client.get("/v1/lookup/192.0.2.3").json()["listed"] is False
    assert_problem(
        client.post(
            f"/v1/admin/listings/{listing['id']}/end", headers=headers, json={"reason": "again"}
        ),
        409,
        "already-ended",
    )
    assert_problem(
        client.post("/v1/admin/listings/987654/end", headers=headers, json={"reason": "x"}), 404
    )

    audit = client.get("/v1/admin/audit", headers=headers).json()
    actions = [entry["action"] for entry in audit["items"]]
    assert actions[:2] == ["listing.end", "listing.create"]
    assert audit["items"][0]["reason"] == "cleaned"
    assert audit["items"][0]["actor_key_id"] == int(admin_key.split("_")[1])


def test_create_listing_refusals(client: TestClient, admin_key: str) -> None:
    headers = bearer(admin_key)

    def create(**fields: object) -> object:
        body = {"zone": ZONE, "network": "192.0.2.1", "reason": "r", **fields}
        return client.post("/v1/admin/listings", headers=headers, json=body)

    assert_problem(create(zone="nope.example"), 422, "unknown-zone")
    bad = assert_problem(create(network="192.0.2.300"), 422, "validation")
    assert bad["errors"] == [
        {
            "field": "body.network",
            "message": "'192.0.2.300' is not a valid IPv4 or IPv6 address or CIDR network",
        }
    ]
    assert_problem(create(network="192.0.2.0/33"), 422, "validation")
    assert_problem(create(code="10.0.0.1"), 422, "validation")
    assert_problem(create(code="banana"), 422, "validation")
    assert_problem(create(expires_at="2001-01-01T00:00:00Z"), 422)
    assert_problem(create(expires_at="2101-01-01T00:00:00Z", expires_in_days=2), 422)
    assert_problem(
        client.post(
            "/v1/admin/retests", headers=headers, json={"address": "192.0.2.1", "zone": ZONE}
        ),
        422,
        "validation",
    )
    assert_problem(create(reason=""), 422, "validation")
    assert_problem(create(txt="a\x00b"), 422, "validation")
    assert_problem(create(colour="red"), 422, "validation")
    assert_problem(create(source="rumour"), 422, "validation")


def test_never_list_policy_refuses_a_manual_listing(client: TestClient, admin_key: str) -> None:
    headers = bearer(admin_key)
    added = client.post(
        "/v1/admin/policy-networks",
        headers=headers,
        json={"network": "198.51.100.0/24", "kind": "never-list", "reason": "our own"},
    )
    assert added.status_code == 201, added.text
    assert added.json()["network"] == "198.51.100.0/24"
    refused = client.post(
        "/v1/admin/listings",
        headers=headers,
        json={"zone": ZONE, "network": "198.51.100.7", "reason": "r"},
    )
    assert_problem(refused, 403, "never-list")
    # A network that covers the never-list one, or meets only part of it, is refused too.
    for network in ("198.51.0.0/16", "198.51.100.128/25"):
        wider = client.post(
            "/v1/admin/listings",
            headers=headers,
            json={"zone": ZONE, "network": network, "reason": "r"},
        )
        assert_problem(wider, 403, "never-list")
        assert "198.51.100.0/24: our own" in wider.json()["detail"]
    excluded = client.post(
        "/v1/admin/listings",
        headers=headers,
        json={"zone": ZONE, "network": "198.51.0.0/16", "excluded": True, "reason": "r"},
    )
    assert excluded.status_code == 201, excluded.text  # an exclusion lists nothing
    listed = client.get("/v1/admin/policy-networks?kind=never-list", headers=headers).json()
    assert [item["network"] for item in listed] == ["198.51.100.0/24"]
    removed = client.delete(
        "/v1/admin/policy-networks",
        headers=headers,
        params={"network": "198.51.100.0/24", "kind": "never-list", "reason": "sold"},
    )
    assert removed.status_code == 204
    assert_problem(
        client.delete(
            "/v1/admin/policy-networks",
            headers=headers,
            params={"network": "198.51.100.0/24", "kind": "never-list"},
        ),
        404,
    )


def test_listing_filters_and_pagination(client: TestClient, engine: Engine, admin_key: str) -> None:
    for host in range(1, 8):
        add_listing(engine, f"192.0.2.{host}")
    add_listing(engine, "198.51.100.0/24", category="manual", source="manual")
    ended = add_listing(engine, "198.51.100.9", category="manual", source="manual")
    ListingStore(engine).end_ids([ended], actor="test", reason="gone")
    headers = bearer(admin_key)

    def page(**params: str | int | bool) -> dict[str, Any]:
        response = client.get("/v1/admin/listings", headers=headers, params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    first = page(limit=3, category="open-relay")
    assert first["total"] == 7
    assert len(first["items"]) == 3
    rest = page(limit=3, offset=6, category="open-relay")
    assert len(rest["items"]) == 1
    assert page(active=False)["total"] == 1
    assert page(active=True, source="manual")["total"] == 1
    assert page(network="192.0.2.0/29")["total"] == 7
    assert page(network="192.0.2.4/30")["total"] == 4  # .4 to .7
    assert page(address="198.51.100.9", active=True)["total"] == 1
    assert page(zone="pbl.example.org")["total"] == 0
    assert_problem(
        client.get("/v1/admin/listings", headers=headers, params={"limit": 0}), 422, "validation"
    )
    assert_problem(
        client.get("/v1/admin/listings", headers=headers, params={"network": "x/99"}), 422
    )
    assert_problem(client.get("/v1/admin/listings", headers=headers, params={"address": "x"}), 422)
    one = client.get(f"/v1/admin/listings/{ended}", headers=headers).json()
    assert one["end_reason"] == "gone"
    assert_problem(client.get("/v1/admin/listings/5555", headers=headers), 404)


# -- retests, queue, zones, keys -------------------------------------------------------------


def test_retests_and_queue(client: TestClient, engine: Engine, operator_key: str) -> None:
    headers = bearer(operator_key)
    add_listing(engine, "192.0.2.80")
    add_listing(engine, "192.0.2.81")
    add_listing(engine, "192.0.2.0/24", category="manual", source="manual")  # not a host
    one = client.post("/v1/admin/retests", headers=headers, json={"address": "192.0.2.90"})
    assert one.status_code == 202, one.text
    assert one.json()["addresses"] == ["192.0.2.90"]
    zone = client.post(
        "/v1/admin/retests", headers=headers, json={"zone": ZONE, "category": "open-relay"}
    )
    assert zone.json()["addresses"] == ["192.0.2.80", "192.0.2.81"]
    assert_problem(
        client.post("/v1/admin/retests", headers=headers, json={"address": "10.1.1.1"}),
        403,
        "not-testable",
    )
    assert_problem(client.post("/v1/admin/retests", headers=headers, json={}), 422, "validation")
    assert_problem(
        client.post("/v1/admin/retests", headers=headers, json={"zone": "other.example"}),
        422,
        "unknown-zone",
    )
    queue = client.get("/v1/admin/queue", headers=headers).json()
    assert queue["counts"]["waiting"] == 3
    assert {job["target"] for job in queue["items"]} == {"192.0.2.80", "192.0.2.81", "192.0.2.90"}
    assert client.get("/v1/admin/queue?status=failed", headers=headers).json()["items"] == []
    assert_problem(client.get("/v1/admin/queue?status=lost", headers=headers), 422)


def test_zones_show_serials_and_counts(
    client: TestClient, engine: Engine, operator_key: str
) -> None:
    add_listing(engine, "192.0.2.1")
    add_listing(engine, "192.0.2.2")
    add_listing(engine, "192.0.2.3", excluded=True)
    zones = {
        z["name"]: z for z in client.get("/v1/admin/zones", headers=bearer(operator_key)).json()
    }
    assert zones[ZONE]["listings"] == {"open-relay": 2}
    assert zones[ZONE]["exclusions"] == 1
    assert zones[ZONE]["serial"] == ListingStore(engine).serial(ZONE)
    assert zones["pbl.example.org"]["listings"] == {}


def test_keys_are_issued_listed_and_revoked(client: TestClient, admin_key: str) -> None:
    headers = bearer(admin_key)
    issued = client.post("/v1/admin/keys", headers=headers, json={"role": "operator", "name": "ci"})
    assert issued.status_code == 201
    key = issued.json()
    assert key["key"].startswith(f"dnsbl_{key['id']}_")
    listed = client.get("/v1/admin/keys", headers=headers).json()
    assert all("key" not in item and "hash" not in item for item in listed)
    assert client.get("/v1/admin/queue", headers=bearer(key["key"])).status_code == 200
    revoked = client.delete(f"/v1/admin/keys/{key['id']}", headers=headers)
    assert revoked.json()["revoked_at"] is not None
    assert_problem(client.get("/v1/admin/queue", headers=bearer(key["key"])), 401)
    assert_problem(client.delete("/v1/admin/keys/99999", headers=headers), 404)
    own = int(admin_key.split("_")[1])
    assert_problem(client.delete(f"/v1/admin/keys/{own}", headers=headers), 409, "own-key")
    assert_problem(
        client.post("/v1/admin/keys", headers=headers, json={"role": "root"}), 422, "validation"
    )


def test_expiry_with_an_offset_is_kept_in_utc(client: TestClient, admin_key: str) -> None:
    response = client.post(
        "/v1/admin/listings",
        headers=bearer(admin_key),
        json={
            "zone": ZONE,
            "network": "192.0.2.77",
            "reason": "r",
            "expires_at": "2100-01-01T12:00:00+02:00",
        },
    )
    assert response.status_code == 201, response.text
    stored = datetime.fromisoformat(response.json()["expires_at"].replace("Z", "+00:00"))
    assert stored == datetime(2100, 1, 1, 10, 0, tzinfo=UTC)


def test_the_audit_log_cannot_be_changed(client: TestClient, admin_key: str) -> None:
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        response = client.request(method, "/v1/admin/audit", headers=bearer(admin_key))
        assert_problem(response, 405)
        assert response.headers["allow"] == "GET"
