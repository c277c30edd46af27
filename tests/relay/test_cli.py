"""`dnsbl nominate`, `retest`, `tests`, `queue` and `policy`, run in-process on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnsbl.cli import main
from dnsbl.db import make_engine
from dnsbl.models import utcnow
from dnsbl.relay.evidence import record_probe, set_verdict, start_test
from dnsbl.relay.tester.battery import EnvelopeForm
from dnsbl.relay.tester.probe import FormResult, ProbeReport
from tests.conftest import write_config


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str) -> str:
    tester = 'testable_networks = ["127.0.0.0/8", "192.0.2.0/24"]\nreverse_dns_timeout = 0'
    return str(write_config(tmp_path / "dnsbl.toml", sqlite_url, tester=tester))


def test_nominate_retest_queue(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", config, "nominate", "192.0.2.1", "--note", "seen spam"]) == 0
    assert "nomination #1: 192.0.2.1 queued, position 1" in capsys.readouterr().out
    assert main(["-c", config, "nominate", "10.1.1.1"]) == 2
    assert "outside testable networks" in capsys.readouterr().err
    assert main(["-c", config, "retest", "192.0.2.2"]) == 0
    assert "forced retest of 192.0.2.2 waiting" in capsys.readouterr().out
    assert main(["-c", config, "queue"]) == 0
    out = capsys.readouterr().out
    assert "waiting: 2" in out and "192.0.2.2" in out


def test_nominate_dry_run(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", config, "nominate", "--dry-run", "192.0.2.7"]) == 0
    out = capsys.readouterr().out
    assert "nomination #1: 192.0.2.7 queued, position 1 (dry run: nothing will be listed)" in out
    # one test of a host at a time: a second dry run is refused, saying until when
    assert main(["-c", config, "nominate", "--dry-run", "192.0.2.7"]) == 2
    assert "one test of a host at a time" in capsys.readouterr().err


def test_tests_show_verdicts_and_the_transcript(
    config: str, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", config, "tests"]) == 1
    engine = make_engine(sqlite_url)
    test_id = start_test(engine, "192.0.2.1", job_id=None, forced=False)
    now = utcnow()
    form = FormResult(EnvelopeForm("null-sender", "<>", "<rt-x@relaytest.example>"), "tok1")
    form.rcpt_reply = "554 5.7.1 Relay access denied"
    report = ProbeReport(
        "192.0.2.1",
        now,
        now,
        "refused",
        None,
        banner="220 mx.lab.example ESMTP",
        forms=[form],
        transcript="S: 220 mx.lab.example ESMTP\nC: EHLO t\n",
    )
    record_probe(engine, test_id, report)
    set_verdict(engine, test_id, "closed", "refused every relay form")
    engine.dispose()
    capsys.readouterr()
    assert main(["-c", config, "tests"]) == 0
    assert f"#{test_id}\t192.0.2.1\tclosed" in capsys.readouterr().out
    assert main(["-c", config, "tests", "192.0.2.1"]) == 0
    out = capsys.readouterr().out
    assert "220 mx.lab.example ESMTP" in out and "C: EHLO t" in out and "transcript:" in out
    assert main(["-c", config, "tests", "--id", "999"]) == 1


def test_policy_lists(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", config, "policy", "add", "never-test", "192.0.2.0/25", "--reason", "x"]) == 0
    assert main(["-c", config, "nominate", "192.0.2.3"]) == 2
    assert "never-test" in capsys.readouterr().err
    assert main(["-c", config, "policy", "list"]) == 0
    assert "never-test\t192.0.2.0/25\tx" in capsys.readouterr().out
    assert main(["-c", config, "policy", "remove", "never-test", "192.0.2.0/25"]) == 0
    assert main(["-c", config, "policy", "remove", "never-test", "192.0.2.0/25"]) == 1


def test_worker_command_tests_and_stops_on_sigterm(tmp_path: Path, sqlite_url: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    from dnsbl.config import load_settings
    from dnsbl.relay.nominations import get_nomination, submit_nomination
    from tests.relay_lab import FakeHost
    from tests.smtp_fakes import free_port

    port, collector_port = free_port(), free_port()
    tester = "\n".join(
        [
            'testable_networks = ["127.0.0.0/8"]',
            "reverse_dns_timeout = 0",
            f"port = {port}",
            f'collector_listen = "127.0.0.1:{collector_port}"',
            "wait_window = 2",
            "poll_interval = 0.1",
        ]
    )
    config = write_config(tmp_path / "worker.toml", sqlite_url, tester=tester)
    settings = load_settings(config)
    engine = make_engine(sqlite_url)
    dnsbl = str(Path(sys.executable).with_name("dnsbl"))
    with FakeHost("127.0.0.60", port, "open", ("127.0.0.1", collector_port)):
        nomination = submit_nomination(engine, settings, "127.0.0.60", "cli")
        process = subprocess.Popen([dnsbl, "-c", str(config), "worker"], stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                view = get_nomination(engine, nomination.id)
                if view is not None and view.status == "done":
                    break
                time.sleep(0.1)
            assert view is not None and view.verdict == "confirmed"
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
    engine.dispose()
    assert process.returncode == 0, err.decode()
