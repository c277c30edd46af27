"""One relay test of one host: connect, greet, try every envelope form of the battery, report.

When the host offers STARTTLS the battery runs under TLS (the certificate is not checked); if
the handshake fails the probe goes on in clear text, where a host that answers every form with
530 (TLS required) is untestable, not closed. A greylisting retry (`Retry`) sends again, from
the address of the first session, only the envelopes that got a temporary answer.

The probe only reports what the host answered. Whether the host relays is decided elsewhere,
from the messages that arrive at the collector: a host that accepts every form may still be a
honeypot or an accept-then-bounce server. The probe never raises for anything a host does;
every failure ends as an `untestable` report with a reason and the transcript.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import re
import socket
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from dnsbl.config import TesterSettings
from dnsbl.errors import DnsblError
from dnsbl.relay.tester.battery import EnvelopeForm, battery
from dnsbl.relay.tester.message import build_message
from dnsbl.relay.tester.reach import why_unreachable
from dnsbl.relay.tester.reverse_dns import NOTHING, ReverseDns, reverse_lookup
from dnsbl.relay.tester.smtp_session import (
    Reply,
    SmtpError,
    SmtpSession,
    SmtpTlsError,
    Transcript,
    offers_starttls,
)
from dnsbl.relay.tester.tokens import token_factory

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """How a probe ended: some form accepted, every form refused, or no usable session."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    UNTESTABLE = "untestable"


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{4,253}}$)({_LABEL}\.)+[a-z]([a-z0-9-]{{0,61}}[a-z0-9])?$")
_GIVE_UP_AFTER_EMPTY_SESSIONS = 3


@dataclass
class FormResult:
    """What the host answered to one envelope form; `accepted` means it took the message."""

    form: EnvelopeForm
    token: str
    mail_reply: str | None = None
    rcpt_reply: str | None = None
    data_reply: str | None = None
    accepted: bool = False

    @property
    def temporary(self) -> bool:
        """The last answer was a temporary (4xx) one: the envelope may go through later."""
        last = self.data_reply or self.rcpt_reply or self.mail_reply
        return not self.accepted and bool(last) and str(last)[:1] == "4"

    @property
    def held(self) -> bool:
        """A temporary answer to a direct form: what greylisting answers, not a refusal.

        A closed server refuses a recipient plainly in the collector's domain outright, so
        such an answer calls for a retry (`Retry`) rather than a verdict.
        """
        return self.form.direct and self.temporary

    def clear(self) -> None:
        """Forget the answers, before the form is sent (again)."""
        self.mail_reply = self.rcpt_reply = self.data_reply = None
        self.accepted = False


@dataclass(frozen=True)
class Retry:
    """A greylisting retry of a test: which one (1, 2, …), the test's results so far (every
    envelope among them that got a temporary answer is sent again, with the same tokens), and
    the address the first session came from (the client of the greylisting triplet)."""

    number: int
    earlier: list[FormResult]
    client_address: str | None


@dataclass
class ProbeReport:
    """The result of one probe: outcome, greeting, reverse DNS, per-form answers, transcript.

    `accepted`: at least one form's message was taken (suspicious until it arrives);
    `refused`: every form was tried and none was taken; `untestable`: the test could not be
    completed (`reason` says why). `client_address` is the address the session came from;
    `tls_version` and `tls_cipher` are set when it ran under TLS; `retry` is the greylisting
    retry it was (0: the first session). `forms` holds every form of the test, the ones an
    earlier session settled included.
    """

    target: str
    started_at: datetime
    finished_at: datetime
    outcome: Outcome
    reason: str | None = None
    banner: str | None = None
    ehlo_reply: str | None = None
    reverse_name: str | None = None
    forward_matches: bool | None = None
    forms: list[FormResult] = field(default_factory=list)
    transcript: str = ""
    client_address: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    retry: int = 0

    @property
    def held(self) -> list[FormResult]:
        """The forms whose last answer was a temporary one to a direct form (greylisting)."""
        return [result for result in self.forms if result.held]


class _Untestable(DnsblError):
    """The host cannot be tested (no SMTP service, refused greeting); the reason is the text."""


def banner_host_name(banner: str) -> str | None:
    """The host name a 220 greeting announces (`220 mx.example.net ESMTP`), if it looks like one."""
    words = banner.split("\n", 1)[0][4:].split()
    if not words:
        return None
    name = words[0].strip().rstrip(".").lower()
    return name if _HOST_NAME.match(name) else None


class _Prober:
    """The state of one probe: the current session, the greeting, the per-form results."""

    def __init__(
        self,
        target_ip: str,
        settings: TesterSettings,
        test_id: str,
        retry: Retry | None = None,
    ) -> None:
        self.target = target_ip
        self.settings = settings
        self.test_id = test_id
        self.retry = retry
        self.transcript = Transcript()
        self.source: str | None = None  # the address to send from, chosen by `run`
        self.session: SmtpSession | None = None
        self.banner: Reply | None = None
        self.ehlo: Reply | None = None
        self.client_address: str | None = None
        self.results: list[FormResult] = []
        self.unanswered = 0  # forms the host hung up on, twice, instead of answering
        self.tls_wanted = True  # say STARTTLS when offered, until it fails once
        self.tls_problem: str | None = None
        self.tls_version: str | None = None
        self.tls_cipher: str | None = None

    async def connect(self) -> SmtpSession:
        """Open a session, read the greeting, say EHLO (HELO if refused), and STARTTLS when
        offered (then EHLO again, under TLS). Raises `_Untestable` on failure."""
        s = self.settings
        try:
            session = await SmtpSession.open(
                self.target,
                s.port,
                self.transcript,
                connect_timeout=s.connect_timeout,
                command_timeout=s.command_timeout,
                source_address=self.source,
            )
        except SmtpError as exc:
            raise _Untestable(str(exc)) from None
        try:
            banner = await session.read_reply(what="banner")
            if banner.code != 220:
                raise _Untestable(f"refused at banner: {banner.lines[0]}")
            ehlo = await self._hello(session)
            if self.banner is None:
                self.banner, self.ehlo = banner, ehlo
                self.client_address = session.local_address
            if self.tls_wanted and offers_starttls(ehlo) and await self._starttls(session):
                await self._hello(session)
        except SmtpTlsError as exc:
            # The handshake broke the connection: go on in clear text, on a new one.
            self.tls_wanted, self.tls_problem = False, str(exc)
            return await self.connect()
        except SmtpError as exc:
            session.abort()
            raise _Untestable(str(exc)) from None
        except _Untestable:
            await session.close()
            raise
        self.session = session
        return session

    async def _hello(self, session: SmtpSession) -> Reply:
        name = self.settings.helo_name
        ehlo = await session.command(f"EHLO {name}")
        if ehlo.code != 250:
            ehlo = await session.command(f"HELO {name}")
            if ehlo.code != 250:
                raise _Untestable(f"refused at HELO: {ehlo.lines[0]}")
        return ehlo

    async def _starttls(self, session: SmtpSession) -> bool:
        """STARTTLS; True once the session is encrypted. A refusal leaves it in clear text."""
        reply = await session.starttls()
        if reply.code != 220:
            self.tls_wanted, self.tls_problem = False, f"STARTTLS refused: {reply.lines[0]}"
            return False
        if self.tls_version is None:
            self.tls_version, self.tls_cipher = session.tls_version, session.tls_cipher
        return True

    async def try_form(self, session: SmtpSession, result: FormResult) -> bool:
        """Run one form; True when the host gave a final answer, False when it dropped us first.

        A 421 (closing) is not an answer: the form is tried again on a new session.
        """
        form = result.form
        result.clear()
        mail = await session.command(f"MAIL FROM:{form.mail_from}")
        result.mail_reply = mail.text
        if mail.closing:
            return False
        if mail.code // 100 != 2:
            await self._rset(session)
            return True
        rcpt = await session.command(f"RCPT TO:{form.rcpt_to}")
        result.rcpt_reply = rcpt.text
        if rcpt.closing:
            return False
        if rcpt.code // 100 != 2:
            await self._rset(session)
            return True
        data = await session.command("DATA")
        if data.code == 354:
            message = build_message(
                form,
                result.token,
                target_ip=self.target,
                test_id=self.test_id,
                collector_domain=self.settings.collector_domain,
                helo_name=self.settings.helo_name,
            )
            data = await session.send_message(message, self.settings.data_timeout)
            result.accepted = data.code // 100 == 2
        result.data_reply = data.text
        if data.closing:
            return result.accepted
        await self._rset(session)
        return True

    async def _rset(self, session: SmtpSession) -> None:
        """RSET between forms; a host that hangs up here is reconnected for the next form."""
        try:
            reply = await session.command("RSET")
        except SmtpError:
            await session.close()
            return
        if reply.closing:
            await session.close()

    async def run(self) -> tuple[Outcome, str | None]:
        """Greet the host, then try every form, reconnecting when the host hangs up."""
        if self.retry is not None:
            self.results = [replace(result) for result in self.retry.earlier]
            again = sum(1 for result in self.results if result.temporary)
            self.transcript.note(
                f"greylisting retry {self.retry.number} of at most "
                f"{self.settings.greylist_attempts}: sending again the {again} envelope(s) "
                "that got a temporary answer, with the same tokens"
            )
        self.source = _source(self.target, self.settings, self.retry, self.transcript)
        session = await self.connect()
        try:
            return await self._run_forms(session)
        except _Untestable as exc:
            # a reconnect failed part way: what was already accepted still counts
            outcome, _ = self.outcome()
            if outcome == Outcome.ACCEPTED:
                return outcome, None
            tried = sum(1 for r in self.results if r.mail_reply is not None)
            return Outcome.UNTESTABLE, f"{exc} (after {tried} of {len(self.results)} forms)"

    async def _run_forms(self, session: SmtpSession) -> tuple[Outcome, str | None]:
        assert self.banner is not None
        if self.retry is not None:
            # Greylisting holds every new triplet, not only the direct ones: a relay closed
            # to a plain recipient may still take `t%C@[IP]` once the delay is over.
            pending = [result for result in self.results if result.temporary]
        else:
            name = banner_host_name(self.banner.text)
            token_for = token_factory(self.test_id)
            forms = battery(token_for, self.settings.collector_domain, self.target, name)
            self.results = [FormResult(form, token_for(form.name)) for form in forms]
            pending = list(self.results)
        retried: set[str] = set()
        empty_sessions = 0
        decided_here = 0
        while pending:
            if session.closed:
                empty_sessions = empty_sessions + 1 if decided_here == 0 else 0
                if empty_sessions >= _GIVE_UP_AFTER_EMPTY_SESSIONS:
                    return Outcome.UNTESTABLE, "the host keeps dropping the connection"
                session = await self.connect()
                decided_here = 0
            result = pending[0]
            try:
                decided = await self.try_form(session, result)
            except SmtpError:
                decided = False
                session.abort()
            if not decided and not session.closed:
                await session.close()
            if decided:
                pending.pop(0)
                decided_here += 1
            elif result.form.name in retried:
                # dropped at this form twice: it did not take the message either way
                pending.pop(0)
                self.unanswered += 1
            else:
                retried.add(result.form.name)
        await session.close()
        return self.outcome()

    def outcome(self) -> tuple[Outcome, str | None]:
        """The outcome from the results so far."""
        if any(result.accepted for result in self.results):
            return Outcome.ACCEPTED, None
        mail_replies = [r.mail_reply for r in self.results if r.mail_reply]
        if self.tls_problem and mail_replies and all(m[:3] == "530" for m in mail_replies):
            return Outcome.UNTESTABLE, (
                f"every form was answered 530 (TLS required) in clear text, and TLS could "
                f"not be used: {self.tls_problem}"
            )
        transient = sum(
            1
            for r in self.results
            if any(
                reply and reply[:1] == "4" for reply in (r.mail_reply, r.rcpt_reply, r.data_reply)
            )
        )
        notes = []
        if transient:
            notes.append(f"temporary failure on {transient} forms")
        if self.unanswered:
            notes.append(f"connection dropped at {self.unanswered} forms")
        return Outcome.REFUSED, "; ".join(notes) or None

    def abort(self) -> None:
        """Drop the current connection at once (the session deadline has passed)."""
        if self.session is not None:
            self.session.abort()


async def _reverse(target_ip: str, settings: TesterSettings) -> ReverseDns:
    # Loopback names come from /etc/hosts and mean nothing; skipping them also keeps labs and
    # tests from sending PTR queries to the outside resolver.
    if settings.reverse_dns_timeout == 0 or ipaddress.ip_address(target_ip).is_loopback:
        return NOTHING
    return await reverse_lookup(target_ip, settings.reverse_dns_timeout)


def _source(
    target_ip: str, settings: TesterSettings, retry: Retry | None, transcript: Transcript
) -> str | None:
    """The address to send from: the first session's on a retry (greylisting remembers the
    client), when this machine has it; else the configured one of the target's family."""
    configured = settings.source_for(target_ip)
    if retry is None or retry.client_address is None:
        return configured
    wanted = retry.client_address
    family = socket.AF_INET6 if ipaddress.ip_address(wanted).version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((wanted, 0))
    except OSError:
        transcript.note(
            f"cannot send from {wanted} (the first session's address) here: greylisting "
            "may hold the envelopes again"
        )
        return configured
    return wanted


async def probe(
    target_ip: str,
    settings: TesterSettings,
    *,
    test_id: str,
    retry: Retry | None = None,
) -> ProbeReport:
    """Run the relay battery against `target_ip` within `settings.session_timeout`.

    With `retry`, send again only the envelopes of `retry.earlier` that got a temporary
    answer; the report covers every form. Refuses (outcome `untestable`) an address that
    `why_unreachable` does not allow.
    """
    started = datetime.now(UTC)
    target = target_ip.strip()
    refusal = why_unreachable(target, settings)
    if refusal is not None:
        return ProbeReport(
            target,
            started,
            datetime.now(UTC),
            Outcome.UNTESTABLE,
            refusal,
            forms=list(retry.earlier) if retry else [],
            retry=retry.number if retry else 0,
        )
    target = str(ipaddress.ip_address(target))
    prober = _Prober(target, settings, test_id, retry)
    reverse = asyncio.create_task(_reverse(target, settings))
    outcome: Outcome
    try:
        async with asyncio.timeout(settings.session_timeout):
            outcome, reason = await prober.run()
    except _Untestable as exc:
        outcome, reason = Outcome.UNTESTABLE, str(exc)
    except TimeoutError:
        prober.abort()
        prober.transcript.note(f"session timeout after {settings.session_timeout:g} s")
        tried = sum(1 for r in prober.results if r.mail_reply is not None)
        outcome, reason = prober.outcome()
        if outcome != Outcome.ACCEPTED:
            outcome = Outcome.UNTESTABLE
            reason = f"session timeout after {tried} of {len(prober.results)} forms"
    if reason is not None:
        log.info("test %s of %s: %s (%s)", test_id, target, outcome, reason)
    names = await reverse
    return ProbeReport(
        target=target,
        started_at=started,
        finished_at=datetime.now(UTC),
        outcome=outcome,
        reason=reason,
        banner=prober.banner.text if prober.banner else None,
        ehlo_reply=prober.ehlo.text if prober.ehlo else None,
        reverse_name=names.name,
        forward_matches=names.forward_matches,
        forms=prober.results,
        transcript=prober.transcript.text(),
        client_address=prober.client_address,
        tls_version=prober.tls_version,
        tls_cipher=prober.tls_cipher,
        retry=retry.number if retry else 0,
    )
