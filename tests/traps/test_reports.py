"""Reports over the API, removal through the removal page, and `dnsbl traps|reports`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from dnsbl.apikeys import create_key
from dnsbl.cli import main
from dnsbl.config import Settings
from dnsbl.listings.store import ListingStore
from dnsbl.traps.escalation import spam_listings
from dnsbl.traps.evidence import evidence_of
from tests.api_fixtures import assert_problem, bearer, form_token
from tests.conftest import write_config
from tests.traps.lab import TRUSTED_MX, trap_settings

RFC822 = {"Content-Type": "message/rfc822"}


def _report(source: str, subject: str = "Pills") -> bytes:
    return (
        f"Received: from spam.example (spam.example [{source}]) by mx.example.org"
        f" (Postfix); Tue, 1 Dec 2026 12:00:01 +0000\r\n"
        f"From: seller@shop.example\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\nbuy\r\n"
    ).encode()


@pytest.fixture
def two_reporters(database_url: str) -> Settings:
    return trap_settings(database_url, trusted_relays=[TRUSTED_MX]).model_copy(
        update={"reports": trap_settings(database_url).reports.model_copy(update={"threshold": 2})}
    )


@pytest.fixture
def client(two_reporters: Settings, engine: Engine) -> Iterator[TestClient]:
    ListingStore(engine).ensure_zones(two_reporters.zone_names)
    with TestClient(create_app(two_reporters, engine), raise_server_exceptions=False) as client:
        yield client


def test_listed_once_two_reporters_reported_it(
    client: TestClient, engine: Engine, two_reporters: Settings
) -> None:
    first = bearer(create_key(engine, "reporter", "one").key)
    second = bearer(create_key(engine, "admin", "two").key)
    for _ in range(2):  # the same reporter twice is one reporter
        answer = client.post(
            "/v1/admin/reports", content=_report("127.0.0.61"), headers={**RFC822, **first}
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["listed"] is False and answer.json()["reporters"] == 1
    assert spam_listings(engine, two_reporters.traps, "127.0.0.61") == []
    answer = client.post(
        "/v1/admin/reports", content=_report("127.0.0.61"), headers={**RFC822, **second}
    )
    assert answer.json()["listed"] is True and answer.json()["reporters"] == 2
    (listing,) = spam_listings(engine, two_reporters.traps, "127.0.0.61")
    assert listing.source == "report" and listing.reason == "spam source: reported by 2 reporters"
    assert evidence_of(engine, "127.0.0.61")[0].listing_id == listing.id
    metrics = client.get("/metrics").text
    assert 'dnsbl_spam_reports_total{reporter="key:1"} 2.0' in metrics
    assert 'dnsbl_spam_reports_total{reporter="key:2"} 1.0' in metrics
    assert (
        'dnsbl_listings{category="spam-source",source="report",zone="bl.example.org"} 1.0'
        in metrics
    )


def test_bad_reports_are_refused_in_one_line(client: TestClient, engine: Engine) -> None:
    key = bearer(create_key(engine, "reporter", "one").key)
    url = "/v1/admin/reports"
    assert_problem(client.post(url, content=_report("127.0.0.62")), 401)
    operator = bearer(create_key(engine, "operator", "op").key)
    assert_problem(
        client.post(url, content=_report("127.0.0.62"), headers={**RFC822, **operator}), 403
    )
    wrong_type = {"Content-Type": "application/json", **key}
    assert_problem(client.post(url, content=b"{}", headers=wrong_type), 415)
    assert_problem(client.post(url, content=b"", headers={**RFC822, **key}), 422, "empty-report")
    trusted_only = _report(TRUSTED_MX)
    body = assert_problem(client.post(url, content=trusted_only, headers={**RFC822, **key}), 422)
    assert "no host outside traps.trusted_relays" in body["detail"]
    assert (
        client.get("/v1/admin/audit", headers=bearer(create_key(engine, "admin", "a").key)).json()[
            "total"
        ]
        == 0
    )


def test_the_removal_page_ends_a_spam_source_listing_at_once(
    client: TestClient, engine: Engine, two_reporters: Settings
) -> None:
    settings = two_reporters.model_copy(
        update={"reports": two_reporters.reports.model_copy(update={"threshold": 1})}
    )
    with TestClient(create_app(settings, engine)) as single:
        key = bearer(create_key(engine, "reporter", "one").key)
        form = single.get("/delist/127.0.0.63")
        assert "spam source" not in form.text  # not listed yet: nothing said of spam
        assert single.post(
            "/v1/admin/reports", content=_report("127.0.0.63"), headers={**RFC822, **key}
        ).json()["listed"]
        assert "Removal is free and at once" in single.get("/delist/127.0.0.63").text
        token = form_token(single, "/delist/127.0.0.63")
        page = single.post(
            "/delist/127.0.0.63",
            data={"confirmed_fixed": "true", "csrf_token": token},
            follow_redirects=True,
        )
        assert page.status_code == 200 and "/delist/status/" in str(page.url)
        assert "The spam-source listing ended at once" in page.text
        assert spam_listings(engine, settings.traps, "127.0.0.63") == []
        assert (
            "delisted"
            in single.get(str(page.url).replace("/delist/status/", "/v1/delist-requests/")).text
        )
        # limited per address as every request is: the third in the window is refused
        for _ in range(2):
            single.post(
                "/v1/admin/reports", content=_report("127.0.0.63"), headers={**RFC822, **key}
            )
            single.post(
                "/v1/delist-requests", json={"address": "127.0.0.63", "confirmed_fixed": True}
            )
        single.post("/v1/admin/reports", content=_report("127.0.0.63"), headers={**RFC822, **key})
        refused = single.post(
            "/v1/delist-requests", json={"address": "127.0.0.63", "confirmed_fixed": True}
        )
        assert_problem(refused, 429)


def test_the_cli_shows_hits_with_the_trap_for_admins(
    client: TestClient,
    engine: Engine,
    two_reporters: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = bearer(create_key(engine, "reporter", "one").key)
    client.post(
        "/v1/admin/reports", content=_report("127.0.0.64", "Cheap"), headers={**RFC822, **key}
    )
    config = write_config(tmp_path / "dnsbl.toml", two_reporters.database_url)
    assert main(["--config", str(config), "reports", "127.0.0.64", "--evidence"]) == 0
    out = capsys.readouterr().out
    assert "subject: Cheap" in out and "reporter: key:1" in out and "buy" in out
    assert "bob@example.org" not in out  # the reporter's user is redacted too
    assert main(["--config", str(config), "traps", "127.0.0.64"]) == 0
    assert "no trap evidence for 127.0.0.64" in capsys.readouterr().out
    assert main(["--config", str(config), "traps", "not-an-address"]) == 2
