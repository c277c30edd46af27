"""An admin write, its change-log rows and its audit entry commit together, or none of them.

Two real failures: a trigger that refuses audit entries (SQLite and PostgreSQL), raised after
the listing has been written in the same transaction; and SQLite on a full disk (a 2 MB tmpfs,
root only). After a failed write: a non-2xx answer, no listing, nothing in a DNS node's index,
no audit entry; /readyz says not-ready while the disk is full.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text

from api.app import create_app
from dnsbl.db import is_sqlite, make_engine, upgrade
from dnsbl.models import AuditEntry, Change
from dnsbl.node.loader import load_index
from tests.api_fixtures import *  # noqa: F403
from tests.api_fixtures import ZONE, bearer
from tests.conftest import need
from tests.index.test_zone_index import codes


def _refuse_audit_entries(engine: Engine) -> None:
    """A trigger that makes every insert into the audit log fail."""
    with engine.begin() as conn:
        if is_sqlite(engine):
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log"
                    " BEGIN SELECT RAISE(ABORT, 'audit log refused'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE EXCEPTION 'audit log refused'; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log"
                    " FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
                )
            )


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        audit = conn.scalar(select(func.count()).select_from(AuditEntry)) or 0
        changes = conn.scalar(select(func.count()).select_from(Change)) or 0
    return audit, changes


def test_a_write_whose_audit_entry_fails_leaves_nothing(
    client: TestClient, engine: Engine, admin_key: str, api_settings: object
) -> None:
    headers = bearer(admin_key)
    done = client.post(
        "/v1/admin/listings",
        headers=headers,
        json={"zone": ZONE, "network": "192.0.2.1", "reason": "before"},
    )
    assert done.status_code == 201
    before = _counts(engine)
    _refuse_audit_entries(engine)

    for method, path, body in [
        ("POST", "/v1/admin/listings", {"zone": ZONE, "network": "192.0.2.2", "reason": "x"}),
        ("POST", f"/v1/admin/listings/{done.json()['id']}/end", {"reason": "x"}),
        ("POST", "/v1/admin/policy-networks", {"network": "203.0.113.0/24", "kind": "never-list"}),
        ("POST", "/v1/admin/keys", {"role": "operator"}),
        ("POST", "/v1/admin/retests", {"address": "192.0.2.1"}),
    ]:
        answer = client.request(method, path, headers=headers, json=body)
        assert not 200 <= answer.status_code < 300, (path, answer.text)
        assert "Traceback" not in answer.text

    assert _counts(engine) == before  # no audit entry, no change-log row
    listings = client.get("/v1/admin/listings", headers=headers).json()
    assert [item["network"] for item in listings["items"]] == ["192.0.2.1/32"]
    assert listings["items"][0]["active"] is True  # the end did not happen either
    index = load_index(engine, api_settings.zone(ZONE))  # type: ignore[attr-defined]
    assert codes(index, "192.0.2.2") == []
    assert codes(index, "192.0.2.1") == ["127.0.0.2"]
    assert client.get("/v1/admin/policy-networks", headers=headers).json() == []
    assert len(client.get("/v1/admin/keys", headers=headers).json()) == 1  # the admin's own
    assert client.get("/v1/admin/queue", headers=headers).json()["items"] == []


@contextlib.contextmanager
def _tiny_disk(where: Path) -> Iterator[Path]:
    """A 2 MB tmpfs at `where` (root only), unmounted at the exit."""
    need(os.geteuid() == 0, "mounting a small tmpfs needs root")
    need(shutil.which("mount") is not None, "mount is not installed")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path, leave: int) -> None:
    """Fill `disk` but for `leave` bytes: room for a few writes, then none."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))


@pytest.mark.e2e
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_full_disk_fails_a_write_whole(
    tmp_path: Path, api_settings: object, admin_key: str, database_url: str
) -> None:
    with _tiny_disk(tmp_path / "disk") as disk:
        url = f"sqlite:///{disk / 'dnsbl.sqlite3'}"
        upgrade(url)
        engine = make_engine(url)
        settings = api_settings.model_copy(update={"database_url": url})  # type: ignore[attr-defined]
        with TestClient(create_app(settings, engine), raise_server_exceptions=False) as client:
            from dnsbl.apikeys import create_key

            headers = bearer(create_key(engine, "admin").key)
            assert client.get("/readyz").status_code == 200
            _fill(disk, leave=256 * 1024)
            written: list[str] = []
            failed = None
            for n in range(1, 5000):
                network = f"10.{n // 250}.{n % 250}.0/24"
                answer = client.post(
                    "/v1/admin/listings",
                    headers=headers,
                    json={"zone": ZONE, "network": network, "reason": "x" * 1500},
                )
                if answer.status_code != 201:
                    failed = (network, answer)
                    break
                written.append(network)
            assert failed is not None, "the disk never filled"
            network, answer = failed
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"]
            audit, _ = _counts(engine)
            assert audit == len(written)  # every listing that answered 201 has its entry
            index = load_index(engine, settings.zone(ZONE))
            assert codes(index, network.split("/")[0]) == []
            assert codes(index, written[-1].split("/")[0]) == ["127.0.0.2"]
            deadline = time.monotonic() + 30  # past the probe's cache (1.5 s)
            while (ready := client.get("/readyz")).status_code != 503:
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.2)
            assert "disk" in ready.json()["detail"] or "write" in ready.json()["detail"]
        engine.dispose()
