"""The human pages, in process: lookup, evidence, the removal form and the status page."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.api_fixtures import *  # noqa: F403
from tests.api_fixtures import add_listing, form_token


def test_home_prefills_the_visitors_address(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert 'value="testclient"' in page.text  # TestClient's peer name stands for the address
    redirect = client.get("/", params={"addr": "192.0.2.1"}, follow_redirects=False)
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/lookup/192.0.2.1"


def test_lookup_page_listed_and_not(client: TestClient, engine: Engine) -> None:
    add_listing(engine, "192.0.2.10", reason="relayed <script>alert(1)</script>")
    listed = client.get("/lookup/192.0.2.10")
    assert listed.status_code == 200
    assert "Listed" in listed.text
    assert "&lt;script&gt;" in listed.text and "<script>" not in listed.text  # escaped
    assert 'href="/delist/192.0.2.10"' in listed.text
    clean = client.get("/lookup/192.0.2.11")
    assert "Not listed" in clean.text
    bad = client.get("/lookup/banana")
    assert bad.status_code == 400
    assert "not a valid" in bad.text


def test_delist_form_needs_the_confirmation(client: TestClient, engine: Engine) -> None:
    add_listing(engine, "192.0.2.20")
    form = client.get("/delist/192.0.2.20")
    assert 'name="confirmed_fixed"' in form.text
    token = form_token(client, "/delist/192.0.2.20")
    refused = client.post(
        "/delist/192.0.2.20", data={"email": "a@example.net", "csrf_token": token}
    )
    assert refused.status_code == 422
    assert "Confirm" in refused.text
    accepted = client.post(
        "/delist/192.0.2.20",
        data={"confirmed_fixed": "true", "csrf_token": token},
        follow_redirects=False,
    )
    assert accepted.status_code == 303
    location = accepted.headers["location"]
    assert re.fullmatch(r"/delist/status/\d+", location)
    status = client.get(location)
    assert status.status_code == 200
    assert 'http-equiv="refresh"' in status.text  # waiting for the retest
    assert "position 1 in the queue" in status.text
    assert client.get("/delist/status/99999").status_code == 404


def test_delist_form_for_an_unlisted_address(client: TestClient) -> None:
    token = form_token(client, "/lookup/192.0.2.99")
    answer = client.post(
        "/delist/192.0.2.99", data={"confirmed_fixed": "true", "csrf_token": token}
    )
    assert answer.status_code == 409
    assert "not listed" in answer.text


def test_nominate_from_the_lookup_page(client: TestClient) -> None:
    lookup = client.get("/lookup/192.0.2.30")
    assert 'action="/nominate/192.0.2.30"' in lookup.text
    token = form_token(client, "/lookup/192.0.2.30")
    queued = client.post("/nominate/192.0.2.30", data={"csrf_token": token}, follow_redirects=False)
    assert queued.status_code == 303
    status = client.get(queued.headers["location"])
    assert "position 1 in the queue" in status.text
    assert 'http-equiv="refresh"' in status.text
    refused = client.post("/nominate/10.9.9.9", data={"csrf_token": token})
    assert refused.status_code == 403
    assert "outside testable networks" in refused.text
    assert client.get("/nominations/4242").status_code == 404
