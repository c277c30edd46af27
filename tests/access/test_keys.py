"""Access keys in the database: issued once and hashed, listed with today's use, revoked,
each write with its audit entry; and `dnsbl accesskey` as an operator runs it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from dnsbl.access import keys
from dnsbl.access.keys import AccessKeyError
from dnsbl.cli import main
from dnsbl.db import make_engine
from dnsbl.dns.access import key_digest, utc_day
from dnsbl.models import AccessKey, AuditEntry
from tests.conftest import write_config


def test_a_key_is_a_dns_label_stored_only_as_its_hash(engine: Engine) -> None:
    issued = keys.create(engine, "partner-a", 1000)
    assert re.fullmatch(r"[a-z2-7]{32}", issued.key)  # one label, any case a resolver sends
    with engine.connect() as conn:
        stored = conn.execute(select(AccessKey)).one()
    assert stored.hash == key_digest(issued.key) and issued.key not in str(tuple(stored))
    active = keys.active_keys(engine, utc_day())
    assert active[key_digest(issued.key.upper())].name == "partner-a"
    assert active[key_digest(issued.key)].daily_quota == 1000


def test_use_is_summed_over_nodes_for_the_day(engine: Engine) -> None:
    key = keys.create(engine, "partner-a", 10).info
    today = utc_day()
    keys.record_use(engine, "node-1", [(today, "partner-a", 3), (today - 1, "partner-a", 50)])
    keys.record_use(engine, "node-2", [(today, "partner-a", 2)])
    keys.record_use(engine, "node-1", [(today, "partner-a", 4)])  # a total, not an increment
    (listed,) = keys.list_all(engine)
    assert listed.id == key.id and listed.used_today == 6
    (entry,) = keys.active_keys(engine, today).values()
    assert entry.used == 6
    (yesterday,) = keys.active_keys(engine, today - 1).values()
    assert yesterday.used == 50


def test_revoke_takes_a_key_out_of_force_and_every_write_is_audited(engine: Engine) -> None:
    issued = keys.create(engine, "partner-a", actor=None)
    keys.create(engine, "partner-b")
    revoked = keys.revoke(engine, "partner-a")
    assert not revoked.active
    assert keys.revoke(engine, "partner-a").revoked_at == revoked.revoked_at  # idempotent
    assert key_digest(issued.key) not in keys.active_keys(engine, utc_day())
    with engine.connect() as conn:
        actions = conn.execute(select(AuditEntry.action, AuditEntry.target)).all()
    assert sorted(actions) == [
        ("access-key.create", "access key 1"),
        ("access-key.create", "access key 2"),
        ("access-key.revoke", "access key 1"),
    ]


def test_bad_names_quotas_and_duplicates_are_one_line_errors(engine: Engine) -> None:
    keys.create(engine, "partner-a")
    for name, quota in (("partner-a", None), ("", None), ("x" * 65, None), ("ok", 0)):
        with pytest.raises(AccessKeyError):
            keys.create(engine, name, quota)
    with pytest.raises(AccessKeyError, match="no access key named 'nobody'"):
        keys.revoke(engine, "nobody")
    assert [info.name for info in keys.list_all(engine)] == ["partner-a"]


def test_the_accesskey_command(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path / "dnsbl.toml", sqlite_url))
    create = ["-c", config, "accesskey", "create", "--name", "partner-a"]
    assert main([*create, "--daily-quota", "5"]) == 0
    out, _ = capsys.readouterr()
    key = out.strip().splitlines()[-1]  # the key alone on the last line
    assert re.fullmatch(r"[a-z2-7]{32}", key)
    assert main(create) == 2
    assert "exists already" in capsys.readouterr().err
    engine = make_engine(sqlite_url)
    keys.record_use(engine, "node-1", [(utc_day(), "partner-a", 3)])
    assert main(["-c", config, "accesskey", "list"]) == 0
    listed = capsys.readouterr().out
    assert "partner-a\tactive\t5\t3" in listed and key not in listed
    assert main(["-c", config, "accesskey", "revoke", "partner-a"]) == 0
    assert main(["-c", config, "accesskey", "revoke", "nobody"]) == 2
    assert "no access key named" in capsys.readouterr().err
    assert keys.active_keys(engine, utc_day()) == {}
    engine.dispose()
