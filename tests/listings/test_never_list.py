"""`dnsbl list` and `dnsbl import` refuse what the never-list policy forbids, and list nothing.

Driven through the real entry point on SQLite and PostgreSQL: a never-list /24, then listings
that lie inside it, cover it or meet only part of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from dnsbl.cli import main
from dnsbl.listings.covering import listings_containing
from tests.conftest import ZONE, write_config


@pytest.fixture
def config(tmp_path: Path, database_url: str, engine: Engine) -> str:
    path = str(write_config(tmp_path / "dnsbl.toml", database_url))
    assert main(["--config", path, "policy", "add", "never-list", "198.51.100.0/24"]) == 0
    assert main(["--config", path, "policy", "add", "never-list", "2001:db8:ff::/48"]) == 0
    return path


def _listed(engine: Engine, address: str) -> bool:
    return bool(listings_containing(engine, address))


@pytest.mark.parametrize(
    "networks",
    [
        ["198.51.100.5"],
        ["198.51.0.0/16"],  # covers the never-list network
        ["198.51.100.250-198.51.101.5"],  # a range that meets its last addresses only
        ["198.51.100.128/25"],
        ["192.0.2.1", "198.51.100.5"],  # one refused address refuses the whole command
        ["2001:db8::/32"],
    ],
)
def test_list_refuses_with_the_policy_entry_named(
    config: str, engine: Engine, networks: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["--config", config, "list", ZONE, *networks, "--reason", "r"]) != 0
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("dnsbl: ") and "never-list list (" in line
    assert "198.51.100.0/24" in line or "2001:db8:ff::/48" in line
    for address in ("192.0.2.1", "198.51.100.5", "198.51.101.1", "2001:db8:ff::1"):
        assert not _listed(engine, address)


def test_list_outside_and_exclusions_pass(config: str, engine: Engine) -> None:
    assert main(["--config", config, "list", ZONE, "198.51.101.0/24", "198.51.98.0/23"]) == 0
    assert main(["--config", config, "list", ZONE, "198.51.100.7", "--exclude"]) == 0
    assert _listed(engine, "198.51.101.9") and _listed(engine, "198.51.99.1")


def test_import_reports_the_lines_and_lists_the_rest(
    config: str, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "list.txt"
    data.write_text(
        "192.0.2.1\n"
        "198.51.100.7\n"  # inside
        "198.51.0.0/16\n"  # covers
        "203.0.113.0/24\n"
        "198.51.100.250-198.51.101.5\n"  # meets part of it
        "!198.51.100.9\n"  # an exclusion lists nothing: fine
        "2001:db8:ff:1::/64\n"  # inside the IPv6 entry
        "2001:db8:1::/48\n"
    )
    capsys.readouterr()
    assert main(["--config", config, "import", ZONE, str(data)]) == 0
    err = capsys.readouterr().err
    refused = [line for line in err.splitlines() if "never-list list" in line]
    assert [line.split(": ")[0] for line in refused] == [
        f"{data}:2",
        f"{data}:3",
        f"{data}:5",
        f"{data}:7",
    ]
    assert _listed(engine, "192.0.2.1") and _listed(engine, "203.0.113.9")
    assert _listed(engine, "2001:db8:1::1")
    for address in ("198.51.100.7", "198.51.7.7", "198.51.101.1", "2001:db8:ff:1::1"):
        assert not _listed(engine, address)
