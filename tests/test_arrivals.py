"""The arrival recorder: queued from the collector's thread, written in batches, retried."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

import dnsbl.arrivals as arrivals_module
from dnsbl.arrivals import ArrivalRecorder
from dnsbl.collector import Arrival
from dnsbl.models import utcnow
from dnsbl.models.testing import TokenArrival


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
