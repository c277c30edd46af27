"""NSD and Knot as real secondaries, configured with deploy/secondaries/nsd.conf and
knot.conf: each transfers the zone from us, and follows changes on NOTIFY (a whole new index
by AXFR, a change from the change log by IXFR), unsigned and with TSIG."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import subprocess
import time
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import pytest

from tests.conftest import need_program
from tests.dns_support import ZONE, answers, change, make_index, row, running

pytestmark = pytest.mark.usefixtures("dns_engine")  # each engine in turn


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SECRET = base64.b64encode(bytes(range(1, 33))).decode()
KEY_NAME = "xfr.bl.example.org"  # as the deploy/ examples name it
KEY = {"name": KEY_NAME, "secret": SECRET}
SECONDARIES = Path(__file__).resolve().parents[2] / "deploy" / "secondaries"


def _example(name: str, primary: int) -> str:
    """deploy/secondaries/NAME, its dnsbl node (192.0.2.10) moved to our test server."""
    text = (SECONDARIES / name).read_text()
    return text.replace("192.0.2.10@53", f"127.0.0.1@{primary}").replace("192.0.2.10", "127.0.0.1")


def _nsd_config(directory: Path, port: int, primary: int, keyed: bool) -> list[str]:
    """The NSD command line: deploy/secondaries/nsd.conf and where this NSD keeps things."""
    path = directory / "nsd.conf"
    zone = _example("nsd.conf", primary)
    key_section = ""
    if keyed:  # as the example's comment says: the key, named instead of NOKEY
        zone = zone.replace("NOKEY", KEY_NAME)
        key_section = (
            f'key:\n  name: "{KEY_NAME}"\n  algorithm: hmac-sha256\n  secret: "{SECRET}"\n'
        )
    path.write_text(
        key_section + "server:\n"
        f"  ip-address: 127.0.0.1@{port}\n"
        '  username: ""\n  chroot: ""\n'
        f'  zonesdir: "{directory}"\n  pidfile: "{directory}/nsd.pid"\n'
        f'  xfrdfile: "{directory}/xfrd.state"\n  zonelistfile: "{directory}/zone.list"\n'
        f'  logfile: "{directory}/nsd.log"\n  database: ""\n'
        "  server-count: 1\n  verbosity: 2\n"
        "remote-control:\n  control-enable: no\n" + zone
    )
    return [need_program("nsd"), "-d", "-c", str(path)]


def _knot_config(directory: Path, port: int, primary: int, keyed: bool) -> list[str]:
    """The knotd command line: deploy/secondaries/knot.conf and where this Knot keeps things."""
    path = directory / "knot.conf"
    example = _example("knot.conf", primary)
    key_section = ""
    if keyed:  # as the example's comment says: the key, and its two `key:` lines
        example = example.replace(f"# key: {KEY_NAME}", f"key: {KEY_NAME}")
        key_section = (
            f"key:\n  - id: {KEY_NAME}\n    algorithm: hmac-sha256\n    secret: {SECRET}\n"
        )
    path.write_text(
        "server:\n"
        f"  rundir: {directory}\n  listen: 127.0.0.1@{port}\n"
        f"database:\n  storage: {directory}\n"
        f"control:\n  listen: {directory}/knot.sock\n"
        "log:\n"
        f"  - target: {directory}/knot.log\n    any: info\n"
        "template:\n"
        f"  - id: default\n    storage: {directory}\n"
        "    zonefile-sync: -1\n    zonefile-load: none\n    journal-content: all\n"
        + key_section
        + example
    )
    return [need_program("knotd"), "-c", str(path)]


SECONDARY_CONFIGS = {"nsd": _nsd_config, "knot": _knot_config}


async def _a(port: int, name: str) -> list[str]:
    query = dns.message.make_query(name, "A")
    try:
        reply = await dns.asyncquery.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return ["(no answer)"]
    if reply.rcode() != dns.rcode.NOERROR:
        return [dns.rcode.to_text(reply.rcode())]
    return answers(reply, "A")


async def _eventually(port: int, name: str, expected: list[str], log: Path) -> None:
    deadline = time.monotonic() + 30
    while (got := await _a(port, name)) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"the secondary answers {got} for {name}; log:\n{log.read_text()}")
        await asyncio.sleep(0.1)


@pytest.mark.e2e
@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "tsig"])
@pytest.mark.parametrize("secondary", ["nsd", "knot"])
async def test_a_secondary_transfers_and_follows_notify(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, secondary: str, keyed: bool
) -> None:
    nsd_port = _free_port()
    first = make_index([row("10.0.0.1"), row("192.0.2.0/24", "relay-output")], serial=100)
    keys = [KEY] if keyed else []
    async with running([first], notify=[f"127.0.0.1:{nsd_port}"], transfer_keys=keys) as server:
        _, primary = server.endpoints[0]
        command = SECONDARY_CONFIGS[secondary](tmp_path, nsd_port, primary, keyed)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            log = tmp_path / f"{secondary}.log"
            await _eventually(nsd_port, "1.0.0.10." + ZONE, ["127.0.0.2"], log)
            await _eventually(nsd_port, "9.2.0.192." + ZONE, ["127.0.0.3"], log)
            assert await _a(nsd_port, "2.0.0.10." + ZONE) == ["NXDOMAIN"]
            second = make_index([row("10.0.0.2"), row("172.16.0.0/16")], serial=101)
            server.publish(second)
            await _eventually(nsd_port, "2.0.0.10." + ZONE, ["127.0.0.2"], log)
            assert await _a(nsd_port, "1.0.0.10." + ZONE) == ["NXDOMAIN"]
            # A change from the change log reaches the secondary as an incremental transfer.
            changes = [
                change("remove", "10.0.0.2"),
                change("add", "10.0.0.3", code="127.0.0.4", txt=""),
                change("add", "172.16.5.5", excluded=True),
            ]
            with caplog.at_level(logging.INFO, logger="dnsbl.dns.answers"):
                server.publish(second.with_changes(102, changes))
                await _eventually(nsd_port, "3.0.0.10." + ZONE, ["127.0.0.4"], log)
            assert "serials 101 to 102 (3 networks changed)" in caplog.text
            assert await _a(nsd_port, "2.0.0.10." + ZONE) == ["NXDOMAIN"]
            assert await _a(nsd_port, "5.5.16.172." + ZONE) == ["NXDOMAIN"]
            assert await _a(nsd_port, "6.5.16.172." + ZONE) == ["127.0.0.2"]
        finally:
            process.terminate()
            process.wait(timeout=10)
