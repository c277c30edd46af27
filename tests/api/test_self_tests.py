"""Self-tests and dry runs over the API and the pages: who may ask, what is answered, limits.

The test client comes from 192.0.2.5 (a testable network of the API tests' settings), as a
mail server running `curl -X POST …/v1/self-tests` would. No worker runs here: what the tests
find is in tests/relay/test_self_tests.py and, against real Postfix, tests/e2e.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from dnsbl.policy import add_policy_network
from tests.api_fixtures import *  # noqa: F403
from tests.api_fixtures import assert_problem, bearer, form_token

MAIL_SERVER = "192.0.2.5"


@pytest.fixture
def server_client(app: FastAPI) -> Iterator[TestClient]:
    """A client whose requests come from the mail server's address."""
    with TestClient(app, raise_server_exceptions=False, client=(MAIL_SERVER, 50025)) as client:
        yield client


def test_a_self_test_tests_the_requesting_address(server_client: TestClient) -> None:
    response = server_client.post("/v1/self-tests")
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["Location"] == f"/v1/self-tests/{body['id']}"
    assert (body["address"], body["status"], body["verdict"]) == (MAIL_SERVER, "queued", None)
    assert body["forms"] == [] and body["grace_test"] is None
    assert "never lists" in body["summary"]
    assert body["page_url"].endswith(f"/self-tests/{body['id']}")
    again = server_client.get(f"/v1/self-tests/{body['id']}")
    assert again.status_code == 200 and again.json()["id"] == body["id"]


def test_naming_the_own_address_is_allowed_and_another_refused(
    server_client: TestClient,
) -> None:
    other = server_client.post("/v1/self-tests", json={"address": "192.0.2.6"})
    problem = assert_problem(other, 403, "not-your-address")
    assert MAIL_SERVER in problem["detail"] and "192.0.2.6" in problem["detail"]
    bad = server_client.post("/v1/self-tests", json={"address": "not-an-address"})
    assert_problem(bad, 400, "bad-address")
    own = server_client.post("/v1/self-tests", json={"address": MAIL_SERVER})
    assert own.status_code == 202, own.text


def test_limits_answer_429_with_retry_after(server_client: TestClient) -> None:
    assert server_client.post("/v1/self-tests").status_code == 202
    again = server_client.post("/v1/self-tests")
    problem = assert_problem(again, 429, "rate-limited")
    assert "one self-test per address per hour" in problem["detail"]
    assert 3500 < int(again.headers["Retry-After"]) <= 3600


def test_a_host_with_a_test_queued_is_refused_a_self_test(
    server_client: TestClient, client: TestClient
) -> None:
    assert client.post("/v1/nominations", json={"address": MAIL_SERVER}).status_code == 202
    busy = server_client.post("/v1/self-tests")
    problem = assert_problem(busy, 429, "rate-limited")
    assert "one test of a host at a time" in problem["detail"]
    assert int(busy.headers["Retry-After"]) >= 60


def test_untestable_addresses_are_refused(app: FastAPI) -> None:
    with TestClient(app, raise_server_exceptions=False, client=("10.0.0.5", 1)) as outside:
        assert_problem(outside.post("/v1/self-tests"), 403, "not-testable")
    with TestClient(app, raise_server_exceptions=False) as unnamed:  # "testclient"
        assert_problem(unnamed.post("/v1/self-tests"), 400, "bad-address")


def test_a_never_test_network_refuses_self_tests(server_client: TestClient, engine: Engine) -> None:
    add_policy_network(engine, "192.0.2.0/29", "never-test", "asked not to be probed", "test")
    problem = assert_problem(server_client.post("/v1/self-tests"), 403, "not-testable")
    assert "never-test" in problem["detail"]


def test_reading_self_tests(server_client: TestClient) -> None:
    assert_problem(server_client.get("/v1/self-tests/999"), 404, "not-found")
    nomination = server_client.post("/v1/nominations", json={"address": "192.0.2.9"}).json()
    # a nomination is not a self-test
    assert_problem(server_client.get(f"/v1/self-tests/{nomination['id']}"), 404, "not-found")


def test_a_dry_run_needs_an_operator_key(
    client: TestClient, operator_key: str, admin_key: str
) -> None:
    body = {"address": "192.0.2.20", "dry_run": True}
    assert_problem(client.post("/v1/nominations", json=body), 401, "unauthenticated")
    bad_key = client.post("/v1/nominations", json=body, headers=bearer("nope"))
    assert_problem(bad_key, 401, "unauthenticated")
    dry = client.post("/v1/nominations", json=body, headers=bearer(operator_key))
    assert dry.status_code == 202, dry.text
    assert (dry.json()["kind"], dry.json()["status"]) == ("dry-run", "queued")
    # the host is under test now: a second dry run (an admin's) is refused until it is free
    again = client.post("/v1/nominations", json=body, headers=bearer(admin_key))
    assert_problem(again, 429, "rate-limited")
    plain = client.post("/v1/nominations", json={"address": "192.0.2.21"})
    assert plain.json()["kind"] == "nomination"


def test_the_self_test_pages(server_client: TestClient) -> None:
    form = server_client.get("/self-test")
    assert form.status_code == 200
    assert MAIL_SERVER in form.text and 'action="/self-test"' in form.text
    assert "<script" not in form.text
    token = form_token(server_client, "/self-test")
    refused = server_client.post("/self-test", follow_redirects=False)  # no form token
    assert refused.status_code == 403
    submitted = server_client.post("/self-test", data={"csrf_token": token}, follow_redirects=False)
    assert submitted.status_code == 303
    result = server_client.get(submitted.headers["location"])
    assert result.status_code == 200
    assert f"Self-test of {MAIL_SERVER}" in result.text
    assert 'http-equiv="refresh"' in result.text and "<script" not in result.text
    limited = server_client.post("/self-test", data={"csrf_token": token})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert "one self-test per address per hour" in limited.text
    assert server_client.get("/self-tests/999").status_code == 404


def test_the_openapi_document_names_the_self_tests(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/self-tests"]) == {"post"}
    assert "429" in paths["/v1/self-tests"]["post"]["responses"]
    assert "/v1/self-tests/{self_test_id}" in paths
