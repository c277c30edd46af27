"""STARTTLS: the battery runs under TLS when the host offers it, and falls back when TLS fails.

An aiosmtpd fake with a throwaway self-signed certificate and `require_starttls` refuses mail
before STARTTLS (530), as Postfix's `smtpd_tls_security_level = encrypt` does; hand-written
peers break the handshake or refuse STARTTLS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from dnsbl.relay.tester.probe import ProbeReport, probe
from tests.conftest import need_program
from tests.smtp_fakes import (
    GUARD,
    FakeSmtp,
    Policy,
    Serve,
    line_server,
    probe_settings,
    self_signed_certificate,
    server_tls_context,
)


async def _probe(port: int) -> ProbeReport:
    return await asyncio.wait_for(probe("127.0.0.1", probe_settings(port), test_id="41"), GUARD)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    need_program("openssl")
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def _ehlo_offering_starttls(line: bytes) -> bytes | None:
    if line[:4] == b"EHLO":
        return b"250-picky.lab.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
    return None


async def test_an_encrypt_only_open_relay_is_tested_under_tls(
    certificate: tuple[Path, Path],
) -> None:
    context = server_tls_context(*certificate)
    with FakeSmtp(tls_context=context, require_starttls=True) as fake:
        report = await _probe(fake.port)
    assert report.outcome == "accepted", report.transcript
    assert report.tls_version is not None and report.tls_version.startswith("TLSv1.")
    assert report.tls_cipher
    assert "STARTTLS" in (report.ehlo_reply or "")  # the clear-text EHLO, as offered
    assert "C: STARTTLS" in report.transcript
    assert f"TLS established: {report.tls_version}, cipher {report.tls_cipher}" in (
        report.transcript
    )
    assert "certificate not verified" in report.transcript
    # every envelope was sent under TLS: in clear text this fake answers 530 before MAIL
    assert len(fake.recorded.mail_args) == len(report.forms)
    assert all(result.accepted for result in report.forms if result.data_reply)


async def test_an_encrypt_only_closed_relay_is_closed_under_tls(
    certificate: tuple[Path, Path],
) -> None:
    context = server_tls_context(*certificate)
    closed = Policy(rcpt_reply="554 5.7.1 Relay access denied")
    with FakeSmtp(closed, tls_context=context, require_starttls=True) as fake:
        report = await _probe(fake.port)
    assert report.outcome == "refused", report.transcript
    assert report.tls_version is not None
    assert {result.rcpt_reply for result in report.forms} == {"554 5.7.1 Relay access denied"}


async def test_a_failed_handshake_goes_on_in_clear_text_where_530_is_untestable(
    raw_server: Callable[[Serve], Awaitable[int]],
) -> None:
    def answer(line: bytes) -> bytes | None:
        if line.startswith(b"STARTTLS"):
            return b"220 2.0.0 Ready to start TLS\r\nthis is not a TLS server hello\r\n"
        if line[:4] in (b"MAIL", b"RCPT"):
            return b"530 5.7.0 Must issue a STARTTLS command first\r\n"
        return _ehlo_offering_starttls(line) or b"250 ok\r\n"

    port = await raw_server(line_server(answer))
    report = await _probe(port)
    assert report.outcome == "untestable", report.transcript
    assert report.reason is not None
    assert report.reason.startswith("every form was answered 530 (TLS required) in clear text")
    assert "TLS handshake failed" in report.reason
    assert report.tls_version is None
    # one handshake only: the rest of the battery ran in clear text, on a new connection
    assert report.transcript.count("C: STARTTLS") == 1
    assert report.transcript.count("connecting to") >= 2


async def test_a_refused_starttls_goes_on_in_clear_text(
    raw_server: Callable[[Serve], Awaitable[int]],
) -> None:
    def answer(line: bytes) -> bytes | None:
        if line.startswith(b"STARTTLS"):
            return b"454 4.7.0 TLS not available due to local problem\r\n"
        if line[:4] == b"RCPT":
            return b"554 5.7.1 Relay access denied\r\n"
        return _ehlo_offering_starttls(line) or b"250 ok\r\n"

    port = await raw_server(line_server(answer))
    report = await _probe(port)
    assert report.outcome == "refused", report.transcript
    assert report.tls_version is None
    assert report.transcript.count("C: STARTTLS") == 1
    assert {result.rcpt_reply for result in report.forms if result.rcpt_reply} == {
        "554 5.7.1 Relay access denied"
    }
