"""A DNS node and an unavailable PostgreSQL: it waits to serve, it keeps serving, it logs little.

A real `dnsbl dns` reads PostgreSQL through a proxy (tests/db_proxy.py). Started while the
proxy refuses connections, the node answers nothing and retries; once the database is there it
loads and answers. Then the database goes away, and later hangs: the node answers from the
index it holds throughout and follows the writes made meanwhile once it reads again. Its log
has one line when each outage begins and one when it ends, and no traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.rcode
import pytest

from tests.conftest import PG_URL, ZONE, need, write_config
from tests.db_proxy import bounded_config, proxy_to
from tests.dns_support import answers
from tests.node.test_node import _ask, _cli, _process_until
from tests.smtp_fakes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
DEADLINE = 60.0


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"not within {DEADLINE:g} s: {what}"
        time.sleep(0.1)


def _listed(port: int, address: str) -> bool:
    name = ".".join(reversed(address.split("."))) + "." + ZONE
    return answers(_ask(port, name), "A") == ["127.0.0.2"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_dns_node_waits_for_the_database_and_serves_through_outages(
    tmp_path: Path, database_url: str
) -> None:
    need(PG_URL is not None, "DNSBL_TEST_DATABASE_URL is not set (the proxy needs PostgreSQL)")
    port = free_port()
    direct = write_config(tmp_path / "direct.toml", database_url)  # the operator's CLI
    log = tmp_path / "dns.log"
    with proxy_to(database_url) as proxy:
        config = bounded_config(tmp_path / "dns.toml", proxy.url_for(database_url), dns_port=port)
        proxy.close()
        with _process_until(config, "dns", log, "database unavailable") as (process, _):
            # waiting for its first load, the node answers nothing
            with pytest.raises(dns.exception.Timeout):
                _ask(port, ZONE, "SOA")
            assert "DNS listening" not in log.read_text()
            proxy.open()
            _until(lambda: "DNS listening" in log.read_text(), "the node to start serving")
            assert _ask(port, ZONE, "SOA").rcode() == dns.rcode.NOERROR

            _cli(direct, "list", ZONE, "192.0.2.1", "--reason", "before")
            _until(lambda: _listed(port, "192.0.2.1"), "the first listing")

            proxy.close()  # the database goes away
            _until(lambda: log.read_text().count("database unavailable") == 2, "the outage")
            _cli(direct, "list", ZONE, "192.0.2.2", "--reason", "during")
            for _ in range(20):  # it answers from the index it holds
                assert _listed(port, "192.0.2.1")
                time.sleep(0.1)
            proxy.open()
            _until(lambda: _listed(port, "192.0.2.2"), "the listing written meanwhile")

            proxy.freeze()  # the database hangs
            _until(lambda: log.read_text().count("database unavailable") == 3, "the hang")
            _cli(direct, "list", ZONE, "192.0.2.3", "--reason", "hung")
            assert _listed(port, "192.0.2.2")
            proxy.thaw()
            _until(lambda: _listed(port, "192.0.2.3"), "the listing written during the hang")
            assert process.poll() is None
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.count("database unavailable") == 3, text
    assert text.count("database available again") == 3, text
