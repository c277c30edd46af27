"""The probe against fake SMTP peers: open, closed, auth-only, impatient, silent, absent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from dnsbl.config import TesterSettings
from dnsbl.relay.tester.probe import ProbeReport, Retry, banner_host_name, probe
from tests.smtp_fakes import (
    GUARD,
    FakeSmtp,
    Policy,
    Serve,
    free_port,
    line_server,
    probe_settings,
)


async def _probe(settings: TesterSettings, ip: str = "127.0.0.1") -> ProbeReport:
    return await asyncio.wait_for(probe(ip, settings, test_id="17"), GUARD)


async def test_a_server_that_accepts_everything() -> None:
    with FakeSmtp() as fake:
        report = await _probe(probe_settings(fake.port))
    assert report.outcome == "accepted"
    assert report.reason is None
    assert report.target == "127.0.0.1"
    assert report.banner is not None and report.banner.startswith("220 fake.lab.example")
    assert report.ehlo_reply is not None and report.ehlo_reply.startswith("250-fake.lab.example")
    assert len(report.forms) >= 20
    assert all(result.accepted for result in report.forms)
    assert len(fake.recorded.messages) == len(report.forms)
    assert fake.recorded.sessions == 1
    assert report.started_at <= report.finished_at
    assert report.reverse_name is None  # loopback: not looked up
    # the transcript holds both directions, every form, and the message bodies
    for result in report.forms:
        assert f"C: RCPT TO:{result.form.rcpt_to}\n" in report.transcript
        assert f"X-Relay-Test-Token: {result.token}" in report.transcript
    assert "S: 354" in report.transcript
    assert "C: RSET" in report.transcript


async def test_a_closed_server_refuses_every_form_and_gets_no_data() -> None:
    policy = Policy(rcpt_reply="554 5.7.1 Relay access denied")
    with FakeSmtp(policy) as fake:
        report = await _probe(probe_settings(fake.port))
    assert report.outcome == "refused"
    assert not any(result.accepted for result in report.forms)
    assert all(result.rcpt_reply == "554 5.7.1 Relay access denied" for result in report.forms)
    assert all(result.data_reply is None for result in report.forms)
    assert fake.recorded.messages == []
    assert "C: DATA" not in report.transcript


async def test_authentication_required_is_closed() -> None:
    policy = Policy(mail_reply="530 5.7.0 Authentication required")
    with FakeSmtp(policy) as fake:
        report = await _probe(probe_settings(fake.port))
    assert report.outcome == "refused"
    assert all(r.mail_reply == "530 5.7.0 Authentication required" for r in report.forms)
    assert all(r.rcpt_reply is None for r in report.forms)
    assert fake.recorded.rcpt_args == []


async def test_a_server_that_hangs_up_after_three_rejections_is_reconnected() -> None:
    policy = Policy(rcpt_reply="550 5.7.1 No relaying", drop_after_rejections=3)
    with FakeSmtp(policy) as fake:
        report = await _probe(probe_settings(fake.port))
    assert report.outcome == "refused"
    assert fake.recorded.sessions > 1
    assert report.transcript.count("connecting to 127.0.0.1") == fake.recorded.sessions
    # every form got a real answer, the ones cut off by the 421 on a later session
    assert all(r.rcpt_reply == "550 5.7.1 No relaying" for r in report.forms)
    assert sorted(set(fake.recorded.rcpt_args)) == sorted(r.form.rcpt_to for r in report.forms)


async def test_a_server_whose_accepted_message_is_refused_at_data() -> None:
    policy = Policy(data_reply="554 5.6.0 Message rejected")
    with FakeSmtp(policy) as fake:
        report = await _probe(probe_settings(fake.port))
    assert report.outcome == "refused"
    assert all(r.data_reply == "554 5.6.0 Message rejected" for r in report.forms)


async def test_greylisting_is_refused_with_a_reason() -> None:
    with FakeSmtp(Policy(rcpt_reply="450 4.7.1 Greylisted, try again later")) as fake:
        report = await _probe(probe_settings(fake.port))
    assert report.outcome == "refused"
    assert report.reason == f"temporary failure on {len(report.forms)} forms"


async def test_a_greylisting_retry_sends_only_the_held_envelopes_again() -> None:
    with FakeSmtp(Policy(rcpt_reply="450 4.2.0 Greylisted, try again later")) as fake:
        first = await _probe(probe_settings(fake.port))
    held = first.held
    assert held and all(r.form.direct for r in held)
    assert len(held) < len(first.forms)  # `t%C@[IP]` and the like: no plain collector recipient
    assert first.client_address == "127.0.0.1"
    # one form answered for good meanwhile: it is not sent again
    first.forms[-1].rcpt_reply = "554 5.7.1 Relay access denied"
    again = [r for r in first.forms if r.temporary]
    assert len(again) == len(first.forms) - 1
    with FakeSmtp() as fake:
        retry = Retry(1, first.forms, first.client_address)
        second = await asyncio.wait_for(
            probe("127.0.0.1", probe_settings(fake.port), test_id="17", retry=retry), GUARD
        )
    # the same envelopes, tokens and all (greylisting remembers the recipient), and no other
    assert sorted(fake.recorded.rcpt_args) == sorted(r.form.rcpt_to for r in again)
    assert [r.token for r in second.forms] == [r.token for r in first.forms]
    assert second.retry == 1 and second.held == [] and second.outcome == "accepted"
    assert {r.form.name for r in second.forms if r.accepted} == {r.form.name for r in again}
    assert second.forms[-1].rcpt_reply == "554 5.7.1 Relay access denied"
    assert f"sending again the {len(again)} envelope(s) that got a temporary answer" in (
        second.transcript
    )
    assert "connected from 127.0.0.1 " in second.transcript


async def test_a_retry_from_elsewhere_says_it_cannot_use_the_first_address() -> None:
    with FakeSmtp(Policy(rcpt_reply="450 4.2.0 Greylisted")) as fake:
        first = await _probe(probe_settings(fake.port))
        retry = Retry(1, first.forms, "192.0.2.200")  # not an address of this machine
        second = await asyncio.wait_for(
            probe("127.0.0.1", probe_settings(fake.port), test_id="17", retry=retry), GUARD
        )
    assert "cannot send from 192.0.2.200 (the first session's address)" in second.transcript
    assert second.client_address == "127.0.0.1"


async def test_nothing_listening_is_untestable() -> None:
    report = await _probe(probe_settings(free_port()))
    assert report.outcome == "untestable"
    assert report.reason == "connection refused"
    assert report.forms == []
    assert "connection refused" in report.transcript


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.read()
    finally:
        writer.close()


async def test_a_silent_banner_is_untestable(raw_server: Callable[[Serve], Awaitable[int]]) -> None:
    port = await raw_server(_hold)
    report = await _probe(probe_settings(port, command_timeout=0.3))
    assert report.outcome == "untestable"
    assert report.reason == "timeout at banner"


async def test_a_dribbling_tarpit_is_cut_off(raw_server: Callable[[Serve], Awaitable[int]]) -> None:
    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # a byte at a time, never a whole line
                writer.write(b"2")
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    port = await raw_server(dribble)
    report = await _probe(probe_settings(port, command_timeout=0.3))
    assert report.outcome == "untestable"
    assert report.reason == "timeout at banner"


async def test_a_slow_server_hits_the_session_deadline(
    raw_server: Callable[[Serve], Awaitable[int]],
) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 slow.lab.example ESMTP\r\n")
        try:
            while line := await reader.readline():
                await asyncio.sleep(0.1)
                reply = b"550 no\r\n" if line.startswith(b"RCPT") else b"250 ok\r\n"
                writer.write(reply)
                await writer.drain()
        finally:
            writer.close()

    port = await raw_server(slow)
    report = await _probe(probe_settings(port, session_timeout=1.0))
    assert report.outcome == "untestable"
    assert report.reason is not None and report.reason.startswith("session timeout after ")
    assert report.reason.endswith(f" of {len(report.forms)} forms")
    assert "session timeout after 1 s" in report.transcript


async def test_helo_when_ehlo_is_refused(raw_server: Callable[[Serve], Awaitable[int]]) -> None:
    async def old(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 old.lab.example SMTP\r\n")
        replies = {b"EHLO": b"502 unknown command\r\n", b"MAIL": b"550 go away\r\n"}
        try:
            while line := await reader.readline():
                writer.write(replies.get(line[:4], b"250 ok\r\n"))
                await writer.drain()
        finally:
            writer.close()

    port = await raw_server(old)
    report = await _probe(probe_settings(port))
    assert report.outcome == "refused"
    assert report.ehlo_reply == "250 ok"
    assert "C: HELO dnsbl-tester.example" in report.transcript


async def test_a_refusing_banner_is_untestable(
    raw_server: Callable[[Serve], Awaitable[int]],
) -> None:
    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.7.1 You are not welcome here\r\n")
        await _hold(reader, writer)

    port = await raw_server(busy)
    report = await _probe(probe_settings(port, command_timeout=0.3))
    assert report.outcome == "untestable"
    assert report.reason == "refused at banner: 554 5.7.1 You are not welcome here"


async def test_addresses_outside_the_testable_networks_are_never_contacted() -> None:
    with FakeSmtp() as fake:
        report = await _probe(probe_settings(fake.port, testable_networks=[]))
        never = await _probe(probe_settings(fake.port, never_test=["127.0.0.0/24"]))
    assert report.outcome == "untestable"
    assert report.reason == "outside testable networks"
    assert never.reason == "on the never-test list"
    assert fake.recorded.sessions == 0
    assert report.transcript == ""


def test_banner_host_name() -> None:
    assert banner_host_name("220 mx1.Example.NET ESMTP Postfix") == "mx1.example.net"
    assert banner_host_name("220-mail.example.org ESMTP\n220 more") == "mail.example.org"
    assert banner_host_name("220 localhost ESMTP") is None
    assert banner_host_name("220 192.0.2.1 ESMTP") is None
    assert banner_host_name("220 [192.0.2.1]") is None
    assert banner_host_name("220 ") is None


async def test_a_host_that_hangs_up_on_some_forms_refused_them(
    raw_server: Callable[[Serve], Awaitable[int]],
) -> None:
    def answer(line: bytes) -> bytes | None:
        if line.startswith(b"RCPT"):
            return None if b":<@" in line else b"550 5.7.1 No relaying\r\n"
        return b"250 ok\r\n"

    port = await raw_server(line_server(answer))
    report = await _probe(probe_settings(port))
    source_routes = [r for r in report.forms if r.form.rcpt_to.startswith("<@")]
    assert len(source_routes) == 3
    assert report.outcome == "refused"
    assert report.reason == "connection dropped at 3 forms"
    assert all(r.rcpt_reply is None and not r.accepted for r in source_routes)


async def test_a_host_that_hangs_up_on_every_form_is_untestable(
    raw_server: Callable[[Serve], Awaitable[int]],
) -> None:
    port = await raw_server(
        line_server(lambda line: None if line[:4] == b"MAIL" else b"250 ok\r\n")
    )
    report = await _probe(probe_settings(port))
    assert report.outcome == "untestable"
    assert report.reason is not None
    assert report.reason.startswith("the host keeps dropping the connection")
    assert report.transcript.count("connecting to") == 3
