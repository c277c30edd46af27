"""Two `dnsbl dns` processes on one PostgreSQL both follow a listing and its delisting.

The scale-out of the README: PostgreSQL holds the truth and any number of DNS nodes follow
its change log. Two real `dnsbl --config FILE dns` processes, each on a port of its own, share
a PostgreSQL schema; `dnsbl list` and then `dnsbl delist`, run as an operator runs them, show
on both (asked with dnspython). Without PostgreSQL this fails under DNSBL_REQUIRE_E2E=1.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import dns.rcode
import pytest

from tests.conftest import PG_URL, ZONE, need, write_config
from tests.dns_support import answers
from tests.node.test_node import _ask, _cli, _process

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
DEADLINE = 30.0  # seconds a change may take to show on a node (they poll every 0.2 s)


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"not within {DEADLINE:g} s: {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_dns_nodes_follow_a_listing_and_its_delisting(
    tmp_path: Path, database_url: str
) -> None:
    need(PG_URL is not None, "DNSBL_TEST_DATABASE_URL is not set (two nodes need PostgreSQL)")
    config = write_config(tmp_path / "dnsbl.toml", database_url)
    name = "5.2.0.192." + ZONE
    with ExitStack() as stack:
        nodes = [
            stack.enter_context(_process(config, "dns", tmp_path / f"dns{n}.log")) for n in (1, 2)
        ]
        ports = [port for _, port in nodes]
        assert ports[0] != ports[1]
        for port in ports:
            assert _ask(port, name).rcode() == dns.rcode.NXDOMAIN

        _cli(config, "list", ZONE, "192.0.2.5", "--reason", "two nodes")
        for n, port in enumerate(ports, 1):
            _until(lambda port=port: answers(_ask(port, name), "A") == ["127.0.0.2"], f"node {n}")
            assert answers(_ask(port, name, "TXT"), "TXT") == [
                '"Listed: see https://bl.example.org/lookup/192.0.2.5"'
            ]

        _cli(config, "delist", ZONE, "192.0.2.5")
        for n, port in enumerate(ports, 1):
            _until(lambda port=port: _ask(port, name).rcode() == dns.rcode.NXDOMAIN, f"node {n}")
        # both at the serial of the delisting
        serials = {int(_ask(port, ZONE, "SOA").answer[0][0].serial) for port in ports}
        assert len(serials) == 1

        for process, _ in nodes:
            process.send_signal(signal.SIGTERM)
        for process, _ in nodes:
            assert process.wait(timeout=DEADLINE) == 0
