"""The arrival recorder: queued from the collector's thread, written in batches, retried,
and waited for by the collector before it acknowledges a message."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select, text

import dnsbl.relay.arrivals as arrivals_module
import dnsbl.relay.collector as collector_module
from dnsbl.config import TesterSettings
from dnsbl.models import utcnow
from dnsbl.models.relay import TokenArrival
from dnsbl.relay.arrivals import ArrivalRecorder
from dnsbl.relay.collector import Arrival, Collector

C = "relaytest.example"


def _arrival(n: int) -> Arrival:
    return Arrival(f"tok{n}", "192.0.2.1", "<>", [f"rt-tok{n}@relaytest.example"], utcnow(), "")


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(TokenArrival)) or 0)


def test_arrivals_are_written_and_flushed(engine: Engine) -> None:
    recorder = ArrivalRecorder(engine)
    recorder.start()
    for n in range(300):
        recorder(_arrival(n))
    assert recorder.flush(30)
    assert _count(engine) == 300 == recorder.written
    recorder(_arrival(300))
    recorder.stop()  # what is queued is written before the thread ends
    assert _count(engine) == 301


def test_a_failed_batch_is_retried(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    real = arrivals_module.record_arrivals
    calls: list[int] = []

    def flaky(engine: Engine, batch: list[Arrival]) -> int:
        calls.append(len(batch))
        if len(calls) == 1:
            raise OSError("database went away")
        return real(engine, batch)

    monkeypatch.setattr(arrivals_module, "record_arrivals", flaky)
    monkeypatch.setattr(arrivals_module, "_RETRY_AFTER", 0.01)
    recorder = ArrivalRecorder(engine)
    recorder.start()
    recorder(_arrival(1))
    assert recorder.flush(30)
    recorder.stop()
    assert len(calls) == 2 and _count(engine) == 1


def test_the_future_is_done_once_written_and_failed_once_stopped(engine: Engine) -> None:
    recorder = ArrivalRecorder(engine)
    recorder.start()
    written = recorder(_arrival(1))
    assert written.result(30) is None and _count(engine) == 1
    recorder.stop()
    late = recorder(_arrival(2))
    with pytest.raises(RuntimeError, match="stopped"):
        late.result(1)


@pytest.fixture
def collecting(engine: Engine) -> Iterator[tuple[Collector, ArrivalRecorder]]:
    recorder = ArrivalRecorder(engine)
    settings = TesterSettings(collector_listen="127.0.0.1:0", collector_domain=C)
    recorder.start()
    with Collector(settings, recorder) as collector:
        yield collector, recorder
    recorder.stop()


def _send(collector: Collector, token: str) -> None:
    host, port = collector.endpoint
    with smtplib.SMTP(host, port, timeout=10) as smtp:
        smtp.sendmail("<>", [f"rt-{token}@{C}"], f"Subject: test {token}\r\n\r\n{token}\r\n")


def test_the_collector_acknowledges_only_what_is_written(
    engine: Engine, collecting: tuple[Collector, ArrivalRecorder]
) -> None:
    collector, _ = collecting
    _send(collector, "17z03abcdef0123")
    # No flush: the 250 came after the commit, so the row is there when the relay is told.
    assert _count(engine) == 1


def test_the_collector_answers_451_when_the_write_does_not_happen(
    engine: Engine,
    collecting: tuple[Collector, ArrivalRecorder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collector, _ = collecting
    monkeypatch.setattr(collector_module, "RECORD_TIMEOUT", 0.5)
    monkeypatch.setattr(arrivals_module, "_RETRY_AFTER", 0.05)
    # A real failure: the table the arrivals go to is gone.
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {TokenArrival.__tablename__} RENAME TO moved_away"))
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _send(collector, "17z03abcdef0124")
        assert refused.value.smtp_code == 451
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE moved_away RENAME TO {TokenArrival.__tablename__}"))
    # The queued arrival is still written once the database is back: nothing is lost.
    _, recorder = collecting
    assert recorder.flush(30) and _count(engine) == 1
