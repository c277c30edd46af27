"""`dnsbl list`, `delist`, `check` and `db upgrade`, driven through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnsbl.cli import main
from tests.conftest import write_config


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> str:
    return str(write_config(tmp_path / "dnsbl.toml", database_url))


def run(config: str, *args: str) -> int:
    return main(["--config", config, *args])


def test_list_check_delist_round_trip(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "db", "upgrade") == 0
    assert (
        run(
            config,
            "list",
            "bl.example.org",
            "192.0.2.0/24",
            "198.51.100.1-198.51.100.2",
            "--reason",
            "seen relaying",
            "--category",
            "manual",
        )
        == 0
    )
    assert "3 listed" in capsys.readouterr().out
    assert run(config, "check", "192.0.2.9") == 0
    out = capsys.readouterr().out
    assert "192.0.2.0/24" in out and "seen relaying" in out and "ACTIVE" in out
    assert run(config, "delist", "bl.example.org", "192.0.2.0/24") == 0
    assert "1 delisted" in capsys.readouterr().out
    assert run(config, "check", "192.0.2.9") == 1
    assert "not listed" in capsys.readouterr().out
    assert run(config, "check", "192.0.2.9", "--history") == 1
    assert "delisted by operator" in capsys.readouterr().out


def test_exclusions_are_not_listed(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(config, "list", "bl.example.org", "10.0.0.0/8")
    run(config, "list", "bl.example.org", "10.1.0.0/16", "--exclude")
    capsys.readouterr()
    assert run(config, "check", "10.1.2.3") == 1
    assert run(config, "check", "10.2.0.1") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "nope.example.org", "192.0.2.1"], "unknown zone 'nope.example.org'"),
        (["list", "bl.example.org", "192.0.2.300"], "192.0.2.300"),
        (["list", "bl.example.org", "192.0.2.9-192.0.2.1"], "ends before it starts"),
        (["list", "bl.example.org", "192.0.2.1", "--code", "10.0.0.1"], "127.0.0.0/8"),
        (["check", "not-an-address"], "not a valid"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    config: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run(config, *args) == 2
    assert message in capsys.readouterr().err
    assert run(config, "check", "192.0.2.1", "--history") == 1


def test_bad_config_is_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[dns]\nlisten = ["not an address"]\n')
    assert main(["--config", str(path), "db", "upgrade"]) == 2
    assert "dns.listen" in capsys.readouterr().err
