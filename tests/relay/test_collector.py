"""The collector: a real SMTP client delivers to it; arrivals, refusals and robustness."""

from __future__ import annotations

import smtplib
import socket
import threading
from collections.abc import Iterator

import pytest

from dnsbl.config import TesterSettings
from dnsbl.relay.collector import Arrival, Collector, CollectorError

C = "relaytest.example"
TOKEN = "17z03abcdef0123"


class _Arrivals:
    """Collects arrivals from the collector's thread; can be told to fail."""

    def __init__(self) -> None:
        self.items: list[Arrival] = []
        self.fail = False
        self.lock = threading.Lock()

    def __call__(self, arrival: Arrival) -> None:
        if self.fail:
            raise RuntimeError("database down")
        with self.lock:
            self.items.append(arrival)


@pytest.fixture
def arrivals() -> _Arrivals:
    return _Arrivals()


@pytest.fixture
def collector(arrivals: _Arrivals) -> Iterator[Collector]:
    settings = TesterSettings(
        collector_listen="127.0.0.1:0", collector_domain=C, max_message_size=4096
    )
    with Collector(settings, arrivals) as running:
        yield running


def _message(token: str = TOKEN, filler: str = "") -> str:
    return (
        f"From: <relaytest@{C}>\r\nSubject: Open relay test {token}\r\n"
        f"X-Relay-Test-Token: {token}\r\n\r\nToken: {token}\r\n{filler}"
    )


def _client(collector: Collector, source: str | None = None) -> smtplib.SMTP:
    host, port = collector.endpoint
    return smtplib.SMTP(host, port, source_address=(source, 0) if source else None, timeout=10)


def test_listens_on_a_free_port(collector: Collector) -> None:
    host, port = collector.endpoint
    assert host == "127.0.0.1"
    assert port != 0


def test_a_test_message_is_recorded_with_its_token_and_deliverer(
    collector: Collector, arrivals: _Arrivals
) -> None:
    with _client(collector, source="127.0.0.5") as smtp:
        refused = smtp.sendmail("relaytest@[127.0.0.10]", [f"rt-{TOKEN}@{C}"], _message())
    assert refused == {}
    [arrival] = arrivals.items
    assert arrival.token == TOKEN
    assert arrival.delivered_by == "127.0.0.5"
    assert arrival.mail_from == "relaytest@[127.0.0.10]"
    assert arrival.rcpt_tos == [f"rt-{TOKEN}@{C}"]
    assert f"X-Relay-Test-Token: {TOKEN}" in arrival.headers
    assert f"\nToken: {TOKEN}" not in arrival.headers  # headers only, not the body
    assert arrival.received_at.tzinfo is not None


def test_the_token_survives_case_changes(collector: Collector, arrivals: _Arrivals) -> None:
    with _client(collector) as smtp:
        smtp.sendmail("", [f"RT-{TOKEN.upper()}@RELAYTEST.EXAMPLE"], _message())
    assert [arrival.token for arrival in arrivals.items] == [TOKEN]


def test_mail_for_another_domain_is_refused(collector: Collector, arrivals: _Arrivals) -> None:
    with _client(collector) as smtp, pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        smtp.sendmail("a@example.org", [f"rt-{TOKEN}@example.net"], _message())
    [(code, _)] = refused.value.recipients.values()
    assert code == 550
    assert arrivals.items == []


def test_an_oversized_message_is_refused(collector: Collector, arrivals: _Arrivals) -> None:
    big = _message(filler=("x" * 70 + "\r\n") * 120)
    with _client(collector) as smtp:
        # announced with SIZE= (smtplib does, as the collector advertises SIZE): refused at MAIL
        with pytest.raises(smtplib.SMTPSenderRefused) as announced:
            smtp.sendmail("a@example.org", [f"rt-{TOKEN}@{C}"], big)
        assert announced.value.smtp_code == 552
        # not announced: refused after the data
        smtp.rset()
        assert smtp.mail("a@example.org")[0] == 250
        assert smtp.rcpt(f"rt-{TOKEN}@{C}")[0] == 250
        assert smtp.data(big)[0] == 552
    assert arrivals.items == []


def test_a_bounce_without_a_token_is_dropped(collector: Collector, arrivals: _Arrivals) -> None:
    with _client(collector) as smtp:
        # a bounce to the test sender quotes the original, token header included
        assert smtp.sendmail("", [f"relaytest@{C}"], _message()) == {}
    assert arrivals.items == []


def test_one_arrival_per_message(collector: Collector, arrivals: _Arrivals) -> None:
    other = "17z04abcdef0123"
    with _client(collector) as smtp:
        smtp.sendmail("", [f"rt-{TOKEN}@{C}", f"rt-{other}@{C}"], _message())
    [arrival] = arrivals.items
    assert arrival.token == TOKEN
    assert len(arrival.rcpt_tos) == 2


def test_a_failing_recorder_asks_the_relay_to_retry(
    collector: Collector, arrivals: _Arrivals
) -> None:
    arrivals.fail = True
    with _client(collector) as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail("", [f"rt-{TOKEN}@{C}"], _message())
    assert refused.value.smtp_code == 451
    arrivals.fail = False
    with _client(collector) as smtp:
        smtp.sendmail("", [f"rt-{TOKEN}@{C}"], _message())
    assert len(arrivals.items) == 1


def test_a_bad_session_does_not_take_it_down(collector: Collector, arrivals: _Arrivals) -> None:
    with socket.create_connection(collector.endpoint, timeout=5) as raw:
        raw.recv(1024)
        raw.sendall(b"\xff\xfe garbage\r\nMAIL FROM:<<<\r\nDATA\r\n" + b"A" * 100_000 + b"\r\n")
        raw.shutdown(socket.SHUT_RDWR)
    with _client(collector) as smtp:
        smtp.sendmail("", [f"rt-{TOKEN}@{C}"], _message())
    assert len(arrivals.items) == 1


def test_stop_frees_the_port(arrivals: _Arrivals) -> None:
    settings = TesterSettings(collector_listen="127.0.0.1:0", collector_domain=C)
    collector = Collector(settings, arrivals)
    collector.start()
    endpoint = collector.endpoint
    collector.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(endpoint, timeout=5).close()


def test_a_taken_port_is_reported_at_once(collector: Collector, arrivals: _Arrivals) -> None:
    host, port = collector.endpoint
    settings = TesterSettings(collector_listen=f"{host}:{port}", collector_domain=C)
    with pytest.raises(CollectorError, match=f"cannot listen on 127.0.0.1 port {port}"):
        Collector(settings, arrivals).start()


def test_it_listens_on_both_families(arrivals: _Arrivals) -> None:
    settings = TesterSettings(collector_listen=["127.0.0.1:0", "[::1]:0"], collector_domain=C)
    with Collector(settings, arrivals) as collector:
        [(v4, v4_port), (v6, v6_port)] = collector.endpoints
        assert (v4, v6) == ("127.0.0.1", "::1") and 0 not in (v4_port, v6_port)
        for host, port in collector.endpoints:
            with smtplib.SMTP(host, port, timeout=10) as smtp:
                smtp.sendmail("", [f"rt-{TOKEN}@{C}"], _message())
    assert sorted(arrival.delivered_by for arrival in arrivals.items) == ["127.0.0.1", "::1"]


def test_a_failed_endpoint_stops_the_ones_already_started(
    collector: Collector, arrivals: _Arrivals
) -> None:
    host, port = collector.endpoint
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    first = free.getsockname()[1]
    free.close()
    settings = TesterSettings(
        collector_listen=[f"127.0.0.1:{first}", f"{host}:{port}"], collector_domain=C
    )
    with pytest.raises(CollectorError, match=f"port {port}"):
        Collector(settings, arrivals).start()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", first), timeout=5).close()
