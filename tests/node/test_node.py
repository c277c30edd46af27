"""A DNS node follows the database: in-process on SQLite and PostgreSQL, and as `dnsbl dns`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from sqlalchemy import Engine

from dnsbl.addresses import parse_network
from dnsbl.config import load_settings
from dnsbl.dns.server import DnsServer
from dnsbl.listings.store import Entry, ListingStore
from dnsbl.node.node import run_dns_node
from tests.conftest import ZONE, need_program, write_config, zone_config
from tests.dns_support import answers, ask
from tests.smtp_fakes import free_port


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> float:
    """Poll the async `check` until it is true; the seconds it took."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, "condition not met in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_node_answers_what_the_store_holds(engine: Engine, database_url: str) -> None:
    settings = load_settings(
        None,
        database_url=database_url,
        zones=[zone_config()],
        dns={"listen": ["127.0.0.1:0"], "sync_interval": 0.05},
    )
    store = ListingStore(engine)
    store.ensure_zones(settings.zone_names)
    store.add(ZONE, [Entry(parse_network("10.0.0.1"))], actor="test", source="manual")
    server = DnsServer(settings.zones, settings.dns)
    started = asyncio.Event()
    node = asyncio.create_task(run_dns_node(settings, engine, started=started, server=server))
    try:
        await asyncio.wait_for(started.wait(), 30)
        assert answers(await ask(server, "1.0.0.10." + ZONE), "A") == ["127.0.0.2"]
        await asyncio.to_thread(
            store.add, ZONE, [Entry(parse_network("10.0.0.2"))], actor="test", source="manual"
        )

        async def listed() -> bool:
            return bool((await ask(server, "2.0.0.10." + ZONE)).answer)

        await _until(listed)
        await asyncio.to_thread(
            store.end, ZONE, [parse_network("10.0.0.1")], actor="test", reason="test"
        )

        async def gone() -> bool:
            return (await ask(server, "1.0.0.10." + ZONE)).rcode() == dns.rcode.NXDOMAIN

        await _until(gone)
    finally:
        node.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await node
    assert server.endpoints == []  # stopped with the node


# -- as processes ------------------------------------------------------------------------


def _process(
    config: Path, command: str, log: Path, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[tuple[subprocess.Popen[bytes], int]]:
    """`dnsbl --config CONFIG COMMAND`, and the DNS port it reports once it listens."""
    return _process_until(config, command, log, r"DNS listening on 127\.0\.0\.1:(\d+)", env)


@contextlib.contextmanager
def _process_until(
    config: Path, command: str, log: Path, ready: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`dnsbl --config CONFIG COMMAND`, once its log matches `ready` (and the number that
    the pattern's group caught, if it has one)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dnsbl", "--config", str(config), command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            found = re.search(ready, log.read_text())
            if found:
                break
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield process, int(found[1]) if found.groups() else 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _eventually(check: Callable[[], bool], limit: float = 30.0) -> bool:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _ask(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=3)


def _cli(config: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "dnsbl", "--config", str(config), *args],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _serial(port: int) -> int:
    return int(_ask(port, ZONE, "SOA").answer[0][0].serial)


def _wait(check: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "DNS did not follow the change in time"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.mark.e2e
def test_dnsbl_dns_follows_list_and_delist(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path / "dnsbl.toml", sqlite_url)
    with _process(config, "dns", tmp_path / "dns.log") as (process, port):
        name = "2.0.0.10." + ZONE
        assert _ask(port, name).rcode() == dns.rcode.NXDOMAIN
        before = _serial(port)
        _cli(config, "list", ZONE, "10.0.0.2")
        # sync_interval is 0.2 s: the change shows within a poll or two; the deadline is generous.
        _wait(lambda: answers(_ask(port, name), "A") == ["127.0.0.2"], 30)
        assert _serial(port) > before
        _cli(config, "delist", ZONE, "10.0.0.2")
        _wait(lambda: _ask(port, name).rcode() == dns.rcode.NXDOMAIN, 30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # the command may hold spaces and parentheses: the fields follow the last ")"
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(fields[1]) == pid:
                    found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) has stopped answering
    with contextlib.suppress(OSError):
        return (Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split() or ["Z"])[0] != "Z"
    return False


@pytest.mark.e2e
def test_dnsbl_dns_processes_share_the_sockets_and_each_follows_the_log(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = write_config(tmp_path / "dnsbl.toml", sqlite_url)
    processes = {"DNSBL_DNS__PROCESSES": "3"}
    with _process(config, "dns", tmp_path / "dns.log", processes) as (group, port):
        assert _eventually(lambda: len(_children(group.pid)) == 3, 10)
        children = _children(group.pid)
        name = "2.0.0.10." + ZONE
        _cli(config, "list", ZONE, "10.0.0.2")
        # Whichever process takes a query answers the change: every one follows the log, each
        # on its own poll (so one may be a poll behind another): until 30 answers in a row are
        # right. (Each query goes from a fresh socket, and the processes compete for each.)
        _wait(lambda: all(answers(_ask(port, name), "A") == ["127.0.0.2"] for _ in range(30)), 30)
        tcp = dns.query.tcp(dns.message.make_query(name, "TXT"), "127.0.0.1", port=port, timeout=3)
        assert answers(tcp, "TXT") == ['"Listed: see https://bl.example.org/lookup/10.0.0.2"']
        # A process that dies is replaced; the others answered meanwhile.
        victim = min(children)
        os.kill(victim, signal.SIGKILL)
        assert answers(_ask(port, name), "A") == ["127.0.0.2"]
        assert _eventually(lambda: len(_children(group.pid) - {victim}) == 3, 10)
        assert "DNS process" in (tmp_path / "dns.log").read_text()
        children = _children(group.pid)
        group.send_signal(signal.SIGTERM)
        assert group.wait(timeout=20) == 0
        assert not any(_alive(pid) for pid in children)
    # Without their parent, the processes stop by themselves (it holds no port open alone).
    with _process(config, "dns", tmp_path / "dns2.log", processes) as (group, port):
        assert _eventually(lambda: len(_children(group.pid)) == 3, 10)
        children = _children(group.pid)
        group.kill()
        group.wait()
        assert _eventually(lambda: not any(_alive(pid) for pid in children), 10)


@pytest.mark.e2e
def test_dnsbl_serve_migrates_and_answers(tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    api_port, smtp_port = free_port(), free_port()
    config = write_config(
        tmp_path / "dnsbl.toml",
        fresh,
        api=f'listen = "127.0.0.1:{api_port}"',
        tester=f'collector_listen = "127.0.0.1:{smtp_port}"',
    )
    with _process(config, "serve", tmp_path / "serve.log") as (process, port):
        # Every role of the one process group is up: API, worker's collector, DNS.
        assert _eventually(lambda: _http_status(f"http://127.0.0.1:{api_port}/readyz") == 200)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            assert smtp.noop()[0] == 250
        reply = _ask(port, "2.0.0.127." + ZONE, "A")
        assert answers(reply, "A") == ["127.0.0.2"]
        reply = _ask(port, "2.0.0.127." + ZONE, "TXT")
        assert answers(reply, "TXT") == ['"Listed: see https://bl.example.org/lookup/127.0.0.2"']
        # dig as an operator would run it (EDNS with a cookie option: the general path).
        dig = subprocess.run(
            [need_program("dig"), "@127.0.0.1", "-p", str(port), "2.0.0.127." + ZONE, "A"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "status: NOERROR" in dig.stdout and "flags: qr aa rd;" in dig.stdout
        assert re.search(r"IN\s+A\s+127\.0\.0\.2", dig.stdout), dig.stdout
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
