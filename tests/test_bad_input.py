"""Bad input to the real `dnsbl` command: one line naming each problem, never a traceback.

Data files with a NUL, binary bytes, a 5-million-character line, a 10-million-digit number,
an unknown `$` directive or a TXT longer than a zone serves; configurations bad in a file, in
an environment variable, in the database URL or in several list entries at once; a DNS node
with no zone to serve. Nothing half-written: a refused entry is not listed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dnsbl.index.txt_template import MAX_TXT_BYTES
from tests.conftest import ZONE, write_config

pytestmark = pytest.mark.e2e


def dnsbl(config: Path | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dnsbl"]
    if config is not None:
        command += ["--config", str(config)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DNSBL_")}
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment, **env},
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert len(output) < 20_000, "the whole input echoed back"
    return output


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str) -> Path:
    return write_config(tmp_path / "dnsbl.toml", sqlite_url)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"192.0.2.1\n19\x002.0.2.2\n", "bad.txt:2: not a data line: a NUL byte"),
        (bytes(range(256)) * 40, "bad.txt:1:"),
        (b"192.0.2.1 " + b"x" * 5_000_000 + b"\n", "bad.txt:1: not a data line: longer than"),
        (b"1" * 10_000_000 + b"\n", "bad.txt:1: not a data line: longer than 4096 characters"),
        (b"$DATASET frobnicate @\n192.0.2.1\n", "bad.txt:1: invalid or unrecognized special"),
        (
            b"192.0.2.9 :127.0.0.2:" + b"t" * 1000 + b"\n",
            f"the TXT is 1,000 bytes; a zone serves at most {MAX_TXT_BYTES}",
        ),
    ],
    ids=["nul", "binary", "huge-line", "huge-number", "unknown-directive", "long-txt"],
)
def test_a_bad_data_file_is_one_line_per_problem(
    tmp_path: Path, config: Path, content: bytes, problem: str
) -> None:
    data = tmp_path / "bad.txt"
    data.write_bytes(content)
    result = dnsbl(config, "import", ZONE, str(data))
    output = no_traceback(result)
    assert problem in output, output[-3000:]
    # the bad line listed nothing
    assert dnsbl(config, "check", "192.0.2.2").stdout.strip() == "192.0.2.2: not listed"
    assert dnsbl(config, "check", "192.0.2.9").stdout.strip() == "192.0.2.9: not listed"


def test_a_txt_longer_than_a_zone_serves_is_refused_with_the_limit(config: Path) -> None:
    result = dnsbl(config, "list", ZONE, "192.0.2.10", "--txt", "t" * (MAX_TXT_BYTES + 1))
    assert result.returncode != 0
    assert no_traceback(result).strip() == (
        f"dnsbl: 192.0.2.10/32: the TXT is {MAX_TXT_BYTES + 1} bytes; "
        f"a zone serves at most {MAX_TXT_BYTES}"
    )
    assert dnsbl(config, "check", "192.0.2.10").stdout.strip() == "192.0.2.10: not listed"


@pytest.mark.parametrize(
    ("env", "lines"),
    [
        ({"DNSBL_DNS__LISTEN": "oops"}, ["DNSBL_DNS__LISTEN (dns.listen): 'oops' is not JSON"]),
        (
            {"DNSBL_DATABASE_URL": "mysql://user@host/db"},
            ["database_url: unsupported database 'mysql'"],
        ),
        ({"DNSBL_DATABASE_URL": "not a url"}, ["database_url: 'not a url' is not a database URL"]),
        (
            {"DNSBL_DNS__TRANSFER_PEERS": '["x", "192.0.2.53", "y/99"]'},
            [
                "dns.transfer_peers.0: 'x' is not an IP address or network",
                "dns.transfer_peers.2: 'y/99' is not an IP address or network",
            ],
        ),
        (
            {"DNSBL_API__TRUSTED_PROXIES": '["proxy"]', "DNSBL_DNS__SYNC_INTERVAL": "fast"},
            ["api.trusted_proxies.0: 'proxy' is not", "dns.sync_interval:"],
        ),
        (
            {"DNSBL_DATABASE_STATEMENT_TIMEOUT": "-1"},
            ["database_statement_timeout: Input should be greater than 0"],
        ),
    ],
    ids=["env-not-json", "mysql", "not-a-url", "every-bad-peer", "two-keys", "timeout"],
)
def test_every_configuration_error_is_named_by_its_key(
    config: Path, env: dict[str, str], lines: list[str]
) -> None:
    result = dnsbl(config, "check", "192.0.2.1", **env)
    assert result.returncode == 2
    output = no_traceback(result)
    assert output.startswith("dnsbl: invalid configuration:")
    for line in lines:
        assert line in output, output


def test_a_bad_configuration_file_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[[zones]\n")
    result = dnsbl(broken, "check", "192.0.2.1")
    assert result.returncode == 2
    assert no_traceback(result).startswith(f"dnsbl: config file {broken} is not valid TOML")
    missing = dnsbl(tmp_path / "missing.toml", "check", "192.0.2.1")
    assert (
        no_traceback(missing).strip()
        == f"dnsbl: config file {tmp_path}/missing.toml does not exist"
    )


def test_a_dns_node_without_zones_refuses_to_start(tmp_path: Path, sqlite_url: str) -> None:
    config = tmp_path / "nozones.toml"
    config.write_text(f'database_url = "{sqlite_url}"\n')
    result = dnsbl(config, "dns")
    assert result.returncode == 2
    assert "zones: none configured" in no_traceback(result)


def test_an_unreachable_database_is_one_line(config: Path) -> None:
    result = dnsbl(
        config,
        "list",
        ZONE,
        "192.0.2.1",
        DNSBL_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
    )
    assert result.returncode == 1
    assert no_traceback(result).startswith("dnsbl: the database is unavailable: ")
    assert len(result.stderr.strip().splitlines()) == 1
