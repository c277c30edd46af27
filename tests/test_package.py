"""The package as an operator installs it: sdist and wheel built, the wheel installed into a
fresh virtual environment outside the checkout, and that `dnsbl` run from there.

It migrates a database (the migrations are package data), lists an address, answers DNS over
a real socket, and serves the API's pages (templates), its /docs assets and /metrics: every
file the programs look up at run time must have come with the wheel, not from this checkout.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests.conftest import ZONE, need, stop_process, write_config
from tests.smtp_fakes import free_port

pytestmark = pytest.mark.e2e

CHECKOUT = Path(__file__).resolve().parent.parent
LISTED = "192.0.2.7"


def _run(*args: str | Path, cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """(the venv's bin directory, an environment for it): the built wheel, installed."""
    need(
        subprocess.run([sys.executable, "-m", "build", "--version"], capture_output=True).returncode
        == 0,
        "the `build` package is not installed (pip install -e '.[dev]')",
    )
    root = tmp_path_factory.mktemp("package")
    env = {key: value for key, value in os.environ.items() if not key.startswith("DNSBL_")}
    env.pop("PYTHONPATH", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    dist = root / "dist"
    # sdist first, then the wheel built from that sdist: what the sdist lacks, the wheel lacks
    _run(sys.executable, "-m", "build", "--outdir", dist, CHECKOUT, cwd=root, env=env)
    (sdist,) = dist.glob("dnsbl-*.tar.gz")
    (wheel,) = dist.glob("dnsbl-*.whl")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(name.endswith("dnsbl/migrations/env.py") for name in names), names
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
    for needed in (
        "dnsbl/migrations/env.py",
        "dnsbl/migrations/script.py.mako",
        "dnsbl/migrations/versions/0001_listing_store.py",
        "api/templates/lookup.html",
    ):
        assert needed in members, f"{needed} is not in {wheel.name}"
    assert not any(name.startswith("tests/") for name in members)
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=root, env=env)
    _run(venv / "bin" / "pip", "install", "-q", wheel, cwd=root, env=env)
    yield venv / "bin", env


def _where(bin_dir: Path, env: dict[str, str], cwd: Path, module: str) -> Path:
    code = f"import {module}; print({module}.__file__)"
    return Path(_run(bin_dir / "python", "-c", code, cwd=cwd, env=env).strip())


@contextlib.contextmanager
def _started(
    bin_dir: Path, config: Path, role: str, log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [bin_dir / "dnsbl", "--config", config, role],
            cwd=config.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        stop_process(process)


def _wait_for(pattern: str, log: Path, process: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + 60
    while (found := re.search(pattern, log.read_text())) is None:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return found


def _get(url: str) -> tuple[int, str]:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_installed_wheel_migrates_lists_and_answers(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    work = tmp_path / "elsewhere"  # not the checkout: nothing can be picked up from it
    work.mkdir()
    for module in ("dnsbl", "api"):
        location = _where(bin_dir, env, work, module)
        assert location.is_relative_to(bin_dir.parent), location
        assert not location.is_relative_to(CHECKOUT), location
    api_port = free_port()
    config = write_config(
        work / "dnsbl.toml",
        f"sqlite:///{work / 'dnsbl.sqlite3'}",
        api=f'listen = "127.0.0.1:{api_port}"\npublic_url = "http://127.0.0.1:{api_port}"',
    )
    dnsbl = bin_dir / "dnsbl"
    upgraded = _run(dnsbl, "--config", config, "db", "upgrade", cwd=work, env=env)
    assert "Traceback" not in upgraded
    _run(dnsbl, "--config", config, "list", ZONE, LISTED, "--reason", "smoke", cwd=work, env=env)
    checked = _run(dnsbl, "--config", config, "check", LISTED, cwd=work, env=env)
    assert ZONE in checked and "smoke" in checked, checked

    with _started(bin_dir, config, "dns", work / "dns.log", env) as node:
        port = int(_wait_for(r"DNS listening on 127\.0\.0\.1:(\d+)", work / "dns.log", node)[1])
        name = ".".join(reversed(LISTED.split("."))) + "." + ZONE
        reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=5)
        assert reply.rcode() == dns.rcode.NOERROR
        assert [item.to_text() for rrset in reply.answer for item in rrset] == ["127.0.0.2"]
        other = dns.message.make_query("8.2.0.192." + ZONE, "A")
        reply = dns.query.tcp(other, "127.0.0.1", port=port, timeout=5)
        assert reply.rcode() == dns.rcode.NXDOMAIN

    with _started(bin_dir, config, "api", work / "api.log", env):
        base = f"http://127.0.0.1:{api_port}"
        status, page = _get(f"{base}/lookup/{LISTED}")  # a template from the wheel
        assert status == 200 and LISTED in page and "smoke" in page, page
        status, docs = _get(f"{base}/docs")
        assert status == 200
        asset = re.search(r'src="([^"]+\.js)"', docs)
        assert asset is not None, docs
        status, script = _get(base + asset[1])  # Swagger UI, from its package's data
        assert status == 200 and len(script) > 10_000
        status, metrics = _get(f"{base}/metrics")
        assert status == 200 and "dnsbl_listings" in metrics
