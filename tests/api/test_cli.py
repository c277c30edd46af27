"""`dnsbl apikey create|list|revoke` and `dnsbl api` as an operator runs them."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dnsbl.apikeys import verify_key
from dnsbl.cli import main
from dnsbl.db import make_engine
from tests.conftest import write_config


def test_apikey_create_prints_the_key_once(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "dnsbl.toml", sqlite_url)
    assert main(["--config", str(config), "apikey", "create", "--role", "operator"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("dnsbl_1_")
    assert "not shown again" in err
    engine = make_engine(sqlite_url)
    info = verify_key(engine, key)
    assert info is not None and info.role == "operator"
    assert main(["--config", str(config), "apikey", "list"]) == 0
    listed = capsys.readouterr().out
    assert "operator" in listed and key.split("_")[2] not in listed
    assert main(["--config", str(config), "apikey", "revoke", "1"]) == 0
    assert verify_key(engine, key) is None
    assert main(["--config", str(config), "apikey", "revoke", "7"]) == 2
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.e2e
def test_dnsbl_api_serves_until_sigterm(tmp_path: Path, sqlite_url: str) -> None:
    port = _free_port()
    config = write_config(tmp_path / "dnsbl.toml", sqlite_url, api=f'listen = "127.0.0.1:{port}"')
    process = subprocess.Popen(
        [sys.executable, "-m", "dnsbl", "--config", str(config), "api"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "dnsbl api did not start"
                time.sleep(0.1)
        assert answer.json()["status"] == "ok"
        lookup = httpx.get(f"http://127.0.0.1:{port}/v1/lookup/127.0.0.2", timeout=5)
        assert lookup.json()["listed"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        if process.stdout:
            process.stdout.close()
