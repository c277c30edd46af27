"""The pages are safe by default: cross-site form posts are refused, every HTML response carries
the security headers, and X-Forwarded-For counts only from the configured proxies.

Forms are posted with httpx as a browser on another site posts them (a foreign `Origin`,
`Sec-Fetch-Site: cross-site`, no token or a guessed one): 403, and nothing is filed. The
proxy setting is tested on a real uvicorn server, as `dnsbl api` configures it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from api.security_headers import CONTENT_SECURITY_POLICY
from api.server import _config
from dnsbl.config import Settings
from dnsbl.models.relay import DelistRequest, Nomination
from tests.api_fixtures import *  # noqa: F403
from tests.api_fixtures import add_listing, form_token
from tests.smtp_fakes import free_port

SITE = "http://testserver"  # the TestClient's origin


def _filed(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        delists = conn.scalar(select(func.count()).select_from(DelistRequest)) or 0
        nominations = conn.scalar(select(func.count()).select_from(Nomination)) or 0
    return delists, nominations


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://other.testserver"},
    ],
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_cross_site_post_is_refused_and_files_nothing(
    client: TestClient, engine: Engine, headers: dict[str, str]
) -> None:
    add_listing(engine, "192.0.2.20")
    token = form_token(client, "/delist/192.0.2.20")  # even with the right token
    for path, data in [
        ("/delist/192.0.2.20", {"confirmed_fixed": "true", "csrf_token": token}),
        ("/nominate/192.0.2.30", {"csrf_token": token}),
    ]:
        answer = client.post(path, data=data, headers=headers, follow_redirects=False)
        assert answer.status_code == 403, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        assert "form refused" in answer.text
    assert _filed(engine) == (0, 0)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_post_without_the_pages_token_is_refused(client: TestClient, engine: Engine) -> None:
    add_listing(engine, "192.0.2.20")
    fresh = TestClient(client.app, raise_server_exceptions=False)  # never saw a page
    for data in [{}, {"csrf_token": "A" * 43}]:
        answer = fresh.post("/delist/192.0.2.20", data={"confirmed_fixed": "true", **data})
        assert answer.status_code == 403
    token = form_token(client, "/delist/192.0.2.20")
    wrong = client.post(
        "/delist/192.0.2.20", data={"confirmed_fixed": "true", "csrf_token": token[::-1]}
    )
    assert wrong.status_code == 403
    assert _filed(engine) == (0, 0)
    same_site = client.post(
        "/delist/192.0.2.20",
        data={"confirmed_fixed": "true", "csrf_token": token},
        headers={"Origin": SITE, "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert same_site.status_code == 303
    assert _filed(engine) == (1, 0)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_html_response_carries_the_security_headers(
    client: TestClient, engine: Engine
) -> None:
    add_listing(engine, "192.0.2.20")
    token = form_token(client, "/delist/192.0.2.20")
    pages = [
        client.get("/"),
        client.get("/?addr=192.0.2.20"),
        client.get("/lookup/192.0.2.20"),
        client.get("/lookup/banana"),  # an error page
        client.get("/delist/192.0.2.20"),
        client.get("/delist/status/999"),
        client.get("/delist/status/not-a-number"),  # a page's validation error is a page too
        client.get("/nominations/999"),
        client.get("/docs"),
        client.post("/nominate/10.9.9.9", data={"csrf_token": token}),  # refused: 403 page
        client.post("/nominate/10.9.9.9", headers={"Origin": "http://evil.example"}),
    ]
    for page in pages:
        where = page.request.url
        assert page.headers["content-type"].startswith("text/html"), where
        csp = page.headers["content-security-policy"]
        assert csp == CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "same-origin"
        # nothing the policy would block: no inline script or style
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), where
        assert "<style" not in page.text and " style=" not in page.text, where
    api = client.get("/v1/lookup/192.0.2.20")
    assert api.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/style.css").status_code == 200


@contextmanager
def _uvicorn(settings: Settings, engine: Engine) -> Iterator[str]:
    """`settings`' API as `dnsbl api` serves it (uvicorn configured by api.server)."""
    port = free_port()
    settings = settings.model_copy(
        update={"api": settings.api.model_copy(update={"listen": f"127.0.0.1:{port}"})}
    )
    server = uvicorn.Server(_config(settings, engine, None, ()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        threading.Event().wait(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _nominate(base: str, count: int, *, rotate: bool) -> list[int]:
    statuses = []
    with httpx.Client(base_url=base, timeout=30) as http:
        for n in range(count):
            headers = {"X-Forwarded-For": f"203.0.113.{n + 1}"} if rotate else {}
            answer = http.post(
                "/v1/nominations", json={"address": f"192.0.2.{n + 100}"}, headers=headers
            )
            statuses.append(answer.status_code)
    return statuses


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_x_forwarded_for_counts_only_from_trusted_proxies(
    api_settings: Settings, engine: Engine
) -> None:
    limit = api_settings.tester.nominations_per_submitter
    with _uvicorn(api_settings, engine) as base:  # trusted_proxies = [] (the default)
        statuses = _nominate(base, limit + 2, rotate=True)
    # rotating the header changes nothing: the peer (127.0.0.1) is the submitter
    assert statuses.count(202) == limit and statuses[-1] == 429, statuses

    trusting = api_settings.model_copy(
        update={"api": api_settings.api.model_copy(update={"trusted_proxies": ["127.0.0.1"]})}
    )
    with _uvicorn(trusting, engine) as base:  # behind a proxy on 127.0.0.1: its header counts
        statuses = _nominate(base, limit + 2, rotate=True)
    assert statuses.count(202) == limit + 2, statuses
