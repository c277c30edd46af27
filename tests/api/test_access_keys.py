"""`/v1/admin/access-keys`: admins issue, list and revoke the DNS zones' access keys; audited."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dnsbl.access import keys
from dnsbl.dns.access import key_digest, utc_day
from tests.api_fixtures import *  # noqa: F403
from tests.api_fixtures import assert_problem, bearer

PATH = "/v1/admin/access-keys"


def test_access_keys_are_issued_listed_and_revoked(
    client: TestClient, engine: Engine, admin_key: str
) -> None:
    headers = bearer(admin_key)
    response = client.post(PATH, headers=headers, json={"name": "partner-a", "daily_quota": 50})
    assert response.status_code == 201
    issued = response.json()
    assert re.fullmatch(r"[a-z2-7]{32}", issued["key"]) and issued["daily_quota"] == 50
    assert key_digest(issued["key"]) in keys.active_keys(engine, utc_day())
    keys.record_use(engine, "node-1", [(utc_day(), "partner-a", 7)])
    (listed,) = client.get(PATH, headers=headers).json()
    assert listed["used_today"] == 7 and "key" not in listed and "hash" not in listed
    again = client.post(PATH, headers=headers, json={"name": "partner-a"})
    assert_problem(again, 409, "access-key-exists")
    revoked = client.delete(f"{PATH}/partner-a", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert keys.active_keys(engine, utc_day()) == {}
    assert_problem(client.delete(f"{PATH}/nobody", headers=headers), 404, "not-found")
    assert_problem(
        client.post(PATH, headers=headers, json={"name": "b", "daily_quota": 0}), 422, "validation"
    )
    audit = client.get("/v1/admin/audit", headers=headers).json()
    actions = [entry["action"] for entry in audit["items"]]
    assert actions[:2] == ["access-key.revoke", "access-key.create"]
    assert {entry["actor_key_id"] for entry in audit["items"][:2]} == {int(admin_key.split("_")[1])}


def test_access_keys_are_for_admins_only(client: TestClient, operator_key: str) -> None:
    assert_problem(client.get(PATH), 401, "unauthenticated")
    assert_problem(client.get(PATH, headers=bearer(operator_key)), 403)
    assert_problem(client.post(PATH, headers=bearer(operator_key), json={"name": "x"}), 403)
    assert_problem(client.delete(f"{PATH}/x", headers=bearer(operator_key)), 403)
