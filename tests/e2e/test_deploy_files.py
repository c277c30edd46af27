"""The rest of deploy/: the configurations load, the systemd units are valid and their
commands run, and the rbldnsd mirror script ships a file a real rbldnsd answers from."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from dnsbl.config import load_settings
from tests.conftest import ZONE, need_program, write_config
from tests.rbldnsd.test_parity import rbldnsd
from tests.smtp_fakes import free_port

pytestmark = pytest.mark.e2e

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BIN = Path(sys.executable).parent  # this checkout's venv, where `dnsbl` is installed


@pytest.mark.parametrize("name", ["example.toml", "production.toml"])
def test_the_example_configurations_load(name: str) -> None:
    settings = load_settings(DEPLOY / name)
    assert settings.zone(ZONE).categories["open-relay"] == "127.0.0.2"


def _unit(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith(("#", "[")):
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_systemd_units_verify_and_their_commands_run(tmp_path: Path, sqlite_url: str) -> None:
    analyze = need_program("systemd-analyze")
    ports = {"dns": free_port(), "api": free_port(), "collector": free_port()}
    config = write_config(
        tmp_path / "dnsbl.toml",
        sqlite_url,
        dns_port=ports["dns"],
        api=f'listen = "127.0.0.1:{ports["api"]}"',
        tester=f'collector_listen = "127.0.0.1:{ports["collector"]}"',
    )
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert [unit.name for unit in units] == [
        "dnsbl-api.service",
        "dnsbl-dns.service",
        "dnsbl-worker.service",
    ]
    started = {
        "dnsbl-api.service": r"Uvicorn running on|Application startup complete",
        "dnsbl-dns.service": r"DNS listening on",
        "dnsbl-worker.service": r"worker \S+ running",
    }
    for unit in units:
        # the units name /opt/dnsbl/.venv; here the checkout's venv stands in for it
        text = unit.read_text().replace("/opt/dnsbl/.venv/bin/", f"{BIN}/")
        copy = tmp_path / unit.name
        copy.write_text(text)
        verified = subprocess.run(
            [analyze, "verify", str(copy)], capture_output=True, text=True, check=False
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        fields = _unit(copy)
        env = {**os.environ, "DNSBL_CONFIG": str(config)}
        assert fields["Environment"] == ["DNSBL_CONFIG=/etc/dnsbl/dnsbl.toml"]
        for pre in fields.get("ExecStartPre", []):
            subprocess.run(shlex.split(pre), env=env, check=True, capture_output=True)
        log = tmp_path / f"{unit.stem}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                shlex.split(fields["ExecStart"][0]), env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 60
            while not re.search(started[unit.name], log.read_text()):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            process.terminate()
            assert process.wait(timeout=30) == 0, log.read_text()


def test_the_rbldnsd_mirror_script_ships_a_file_rbldnsd_answers_from(
    tmp_path: Path, sqlite_url: str
) -> None:
    need_program("rsync")
    config = write_config(tmp_path / "dnsbl.toml", sqlite_url)
    dnsbl = [sys.executable, "-m", "dnsbl", "--config", str(config)]
    for address, how in (
        ("192.0.2.7", ["--category", "open-relay"]),
        ("198.51.100.0/24", ["--category", "relay-output", "--code", "127.0.0.3"]),
    ):
        subprocess.run(
            [*dnsbl, "list", ZONE, address, *how, "--reason", "mirror"],
            check=True,
            capture_output=True,
        )
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    exported = tmp_path / "export" / f"{ZONE}.rbldnsd"
    exported.parent.mkdir()
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DNSBL_CONFIG": str(config),
        "EXPORT": str(exported),
        "MIRROR": f"{mirror}/",  # a local rsync stands in for mirror.example.net:
    }
    script = DEPLOY / "secondaries" / "rbldnsd-mirror.sh"
    result = subprocess.run([str(script)], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = mirror / exported.name
    assert shipped.read_text() == exported.read_text()
    assert not exported.with_name(exported.name + ".new").exists()
    # the file's header says how to load it
    found = re.search(rf"rbldnsd \.\.\. {re.escape(ZONE)}:(\w+):FILE", shipped.read_text())
    assert found, shipped.read_text()[:300]
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(shipped, served / shipped.name)
    with rbldnsd(served, [f"{ZONE}:{found[1]}:{shipped.name}"]) as port:
        for name, code in (("7.2.0.192", "127.0.0.2"), ("9.100.51.198", "127.0.0.3")):
            reply = dns.query.udp(
                dns.message.make_query(f"{name}.{ZONE}", "A"), "127.0.0.1", port=port, timeout=3
            )
            assert [r.to_text() for rrset in reply.answer for r in rrset] == [code]
        reply = dns.query.udp(
            dns.message.make_query(f"8.2.0.192.{ZONE}", "A"), "127.0.0.1", port=port, timeout=3
        )
        assert reply.rcode() == dns.rcode.NXDOMAIN
