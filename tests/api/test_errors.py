"""Errors as problem documents, body limits, the OpenAPI document, health and metrics."""

from __future__ import annotations

import collections
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from api.app import create_app
from dnsbl.config import Settings
from dnsbl.listings.store import ListingStore
from dnsbl.node.metrics import NodeCollector, NodeStats
from tests.api_fixtures import *  # noqa: F403
from tests.api_fixtures import ZONE, add_listing, assert_problem, bearer, relay_test_of


def test_unknown_path_and_method(client: TestClient) -> None:
    body = assert_problem(client.get("/v1/nothing-here"), 404, "not-found")
    assert "/v1/nothing-here" in body["detail"]
    response = client.delete("/v1/lookup/192.0.2.1")
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET"
    # Every method of the path, though Starlette's router only knows the first route's.
    other = client.request("OPTIONS", "/v1/admin/policy-networks")
    assert_problem(other, 405)
    assert other.headers["allow"] == "DELETE, GET, POST"


def test_validation_errors_name_the_field(client: TestClient) -> None:
    body = assert_problem(
        client.post("/v1/nominations", json={"address": 7, "extra": 1}), 422, "validation"
    )
    fields = {error["field"] for error in body["errors"]}
    assert {"body.address", "body.extra"} <= fields
    assert_problem(
        client.post(
            "/v1/nominations",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        422,
        "validation",
    )
    assert_problem(client.post("/v1/nominations", content=b"\xff\xfe"), 422)


def test_unknown_query_parameters_are_refused_on_the_api_only(
    client: TestClient, admin_key: str
) -> None:
    # A misspelt filter must not answer as if there were no filter.
    response = client.get("/v1/admin/listings?categroy=spam&limit=5", headers=bearer(admin_key))
    body = assert_problem(response, 422, "validation")
    assert "'categroy'" in body["detail"] and "category" in body["detail"]
    assert [error["field"] for error in body["errors"]] == ["query.categroy"]
    assert_problem(client.get("/v1/lookup/192.0.2.1?verbose=1"), 422, "validation")
    twice = client.get("/v1/admin/listings?zone=a&zone=b", headers=bearer(admin_key))
    assert "given more than once" in assert_problem(twice, 422, "validation")["detail"]
    assert (
        client.get("/v1/admin/listings?category=spam", headers=bearer(admin_key)).status_code == 200
    )
    # Pages are opened from links, which carry what they carry.
    assert client.get("/lookup/192.0.2.1?utm_source=bounce").status_code == 200
    document = client.get("/openapi.json").json()
    assert "422" in document["paths"]["/v1/admin/queue"]["get"]["responses"]
    # and the document says what bodies refuse: text with a NUL in it
    reason = document["components"]["schemas"]["ListingCreate"]["properties"]["reason"]
    assert reason["pattern"] == r"^[^\x00]*$"
    body = client.post(
        "/v1/admin/keys", json={"role": "operator", "name": "a\x00b"}, headers=bearer(admin_key)
    )
    assert "NUL" in assert_problem(body, 422, "validation")["detail"]


def test_docs_are_served_with_their_assets_from_here(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/docs/assets/swagger-ui-bundle.js" in page.text and "/static/docs.js" in page.text
    assert "cdn" not in page.text.lower()
    start = client.get("/static/docs.js")  # no inline script: the CSP would not run it
    assert "javascript" in start.headers["content-type"] and "/openapi.json" in start.text
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200


def test_oversized_body_by_content_length(client: TestClient) -> None:
    big = {"address": "192.0.2.1", "note": "x" * 5000}  # the test settings allow 4096 bytes
    body = assert_problem(client.post("/v1/nominations", json=big), 413, "too-large")
    assert "4096" in body["detail"]


def test_oversized_streamed_body(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"address": "192.0.2.1", "note": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    # A generator body goes out chunked, with no Content-Length to check up front.
    response = client.post(
        "/v1/nominations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "too-large")


def test_unhandled_error_is_a_500_problem_without_a_trace(
    app: FastAPI, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    body = assert_problem(client.get("/boom"), 500, "internal")
    assert "secret" not in body["detail"]
    assert "Traceback" not in str(body)
    assert "secret internals" in caplog.text  # logged for the operator


def test_openapi_declares_problems_and_security(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "ProblemDetail" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for code, answer in operation["responses"].items():
                if code.startswith(("4", "5")):
                    assert list(answer["content"]) == ["application/problem+json"], (
                        path,
                        method,
                        code,
                    )
            if path.startswith("/v1/admin"):
                assert operation["security"] == [{"ApiKey": []}], (path, method)
                assert {"401", "403"} <= operation["responses"].keys()
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
            assert "Allow" in operation["responses"]["405"]["headers"]
    lookup = schema["paths"]["/v1/lookup/{addr}"]["get"]
    assert lookup["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LookupPublic"
    }
    nominate = schema["paths"]["/v1/nominations"]["post"]["responses"]
    assert "Retry-After" in nominate["429"]["headers"]
    assert client.get("/docs").status_code == 200


def test_healthz_and_readyz(api_settings: Settings, engine: Engine, client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    assert client.get("/readyz").json()["checks"] == {"database": "ok"}
    ready = {"value": False}
    app = create_app(api_settings, engine, dns_ready=lambda: ready["value"])
    with TestClient(app, raise_server_exceptions=False) as other:
        assert_problem(other.get("/readyz"), 503, "not-ready")
        ready["value"] = True
        assert other.get("/readyz").json()["checks"] == {"database": "ok", "dns_index": "ok"}


def test_metrics_parse_and_count(
    api_settings: Settings, engine: Engine, client: TestClient, admin_key: str
) -> None:
    add_listing(engine, "192.0.2.1")
    add_listing(engine, "192.0.2.2")
    add_listing(engine, "192.0.2.6", category="manual", source="manual")
    add_listing(engine, "192.0.2.3", excluded=True)
    relay_test_of(engine, "192.0.2.1")
    relay_test_of(engine, "192.0.2.4", verdict="closed")
    relay_test_of(engine, "192.0.2.5", verdict="closed")
    delist = {"address": "192.0.2.1", "confirmed_fixed": True}
    assert client.post("/v1/delist-requests", json=delist).status_code == 202
    client.post("/v1/admin/retests", headers=bearer(admin_key), json={"address": "192.0.2.9"})
    # another role's metrics in the same process (`dnsbl serve`) are exported beside
    node = NodeStats(queries=collections.Counter({(ZONE, "A", "NOERROR", "python"): 5}))
    app = create_app(api_settings, engine, collectors=[NodeCollector(lambda: node)])
    with TestClient(app) as other:
        response = other.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    by_name = {name: value for (name, labels), value in samples.items() if not labels}
    query = (("engine", "python"), ("qtype", "A"), ("rcode", "NOERROR"), ("zone", ZONE))
    assert samples[("dnsbl_dns_queries_total", query)] == 5
    relayed = (("category", "open-relay"), ("source", "relay-test"), ("zone", ZONE))
    assert samples[("dnsbl_listings", relayed)] == 2
    manual = (("category", "manual"), ("source", "manual"), ("zone", ZONE))
    assert samples[("dnsbl_listings", manual)] == 1
    serial = ListingStore(engine).serials()[ZONE]
    assert serial >= 4  # four listings written, one serial each
    assert samples[("dnsbl_database_serial", (("zone", ZONE),))] == serial
    assert samples[("dnsbl_queue_jobs", (("status", "waiting"),))] == 2  # retest, delist
    assert samples[("dnsbl_queue_jobs", (("status", "failed"),))] == 0
    assert 0 <= by_name["dnsbl_queue_oldest_job_age_seconds"] < 3600
    assert samples[("dnsbl_relay_tests_total", (("verdict", "confirmed"),))] == 1
    assert samples[("dnsbl_relay_tests_total", (("verdict", "closed"),))] == 2
    assert samples[("dnsbl_delist_requests_total", (("outcome", "pending"),))] == 1
    assert by_name["dnsbl_relay_arrivals_total"] == 0
    assert by_name["dnsbl_database_up"] == 1


def test_nul_characters_are_refused_before_the_database(client: TestClient, admin_key: str) -> None:
    # PostgreSQL cannot store NUL; without the check these would be 500s there.
    body = assert_problem(
        client.post("/v1/nominations", json={"address": "192.0.2.1", "note": "a\x00b"}),
        422,
        "validation",
    )
    assert body["errors"][0]["field"] == "body.note"
    assert_problem(
        client.get("/v1/admin/listings", params={"category": "x\x00"}, headers=bearer(admin_key)),
        422,
        "validation",
    )
    assert_problem(client.get("/v1/lookup/192.0.2.1%00"), 400, "bad-address")
