"""A worker and an unavailable PostgreSQL: it keeps polling, and logs the outage, not each poll.

A real `dnsbl worker` reads PostgreSQL through a proxy (tests/db_proxy.py) that the test closes
for several of the worker's polls and then opens again: the log has one line when the outage
begins and one when it ends, and no traceback.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import PG_URL, need
from tests.db_proxy import bounded_config, proxy_to
from tests.node.test_node import _process_until
from tests.node.test_outage import _until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_logs_an_outage_once_not_once_per_poll(tmp_path: Path, database_url: str) -> None:
    need(PG_URL is not None, "DNSBL_TEST_DATABASE_URL is not set (the proxy needs PostgreSQL)")
    log = tmp_path / "worker.log"
    with proxy_to(database_url) as proxy:
        config = bounded_config(tmp_path / "worker.toml", proxy.url_for(database_url))
        with _process_until(config, "worker", log, "running") as (process, _):
            proxy.close()
            _until(lambda: "database unavailable" in log.read_text(), "the outage to be logged")
            time.sleep(5)  # several polls (one a second) fail meanwhile
            proxy.open()
            _until(lambda: "database available again" in log.read_text(), "the end of it")
            assert process.poll() is None
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.count("database unavailable") == 1, text
    assert text.count("database available again") == 1, text
