"""Relay tests as evidence: recording a probe's answers and the arrivals, and reading them back.

A test row is written when a worker starts it, filled with the probe's evidence (banner, EHLO
reply, reverse DNS, the address it came from, TLS version and cipher, the verbatim transcript,
one token per envelope form) when the SMTP session ends, and given its verdict after the wait
window. A greylisting retry (`dnsbl.relay.greylisting`) adds its session to the same test: the
answers of the envelopes it sent again replace theirs, and its transcript follows. Arrivals
are written by the collector as they come, keyed by token, and joined to the test through its
tokens.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Engine, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dnsbl.addresses import parse_address
from dnsbl.db import writer
from dnsbl.listings.covering import in_force_clause
from dnsbl.models import Listing, ListingValue, Zone, utcnow
from dnsbl.models.relay import (
    Nomination,
    ProbeToken,
    RelayTest,
    RelayTestListing,
    TokenArrival,
)
from dnsbl.relay.collector import Arrival
from dnsbl.relay.states import Verdict
from dnsbl.relay.tester.probe import ProbeReport
from dnsbl.timestamps import aware, maybe_aware


class ArrivalView(NamedTuple):
    """A token that reached the collector: its form, the token, who delivered it, and when."""

    form: str
    token: str
    delivered_by: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class RelayTestView:
    """One relay test with its evidence, as the API, the CLI and the evidence pages show it.

    `listed_as` names the listings this test made that are still in force
    (`"bl.example.org open-relay"`). `retries`: greylisting retry sessions run (their
    transcripts follow the first one's); `retry_at`: when the next is due, while it waits.
    `dry_run`: a self-test's or a dry run's, which lists nothing whatever it finds.
    """

    id: int
    address: str
    verdict: Verdict | None
    reason: str | None
    forced: bool
    started_at: datetime
    finished_at: datetime | None
    banner: str | None
    ehlo_reply: str | None
    reverse_name: str | None
    forward_matches: bool | None
    transcript: str | None
    accepted_forms: list[str]
    arrivals: list[ArrivalView]
    listed_as: list[str]
    client_address: str | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    retries: int = 0
    retry_at: datetime | None = None
    dry_run: bool = False


class FormOutcome(enum.StrEnum):
    """What became of one envelope form of a test, as a self-test's result shows it."""

    RELAYED = "relayed"  # its message arrived at the collector
    ACCEPTED = "accepted"  # accepted, but nothing arrived (yet)
    REFUSED = "refused"  # a permanent (5xx) answer
    DEFERRED = "deferred"  # only temporary (4xx) answers
    NOT_TRIED = "not tried"  # the session ended before this form got an answer


@dataclass(frozen=True, slots=True)
class FormResult:
    """One envelope form of a test: what was sent, what the host answered, what became of it."""

    form: str
    mail_from: str | None
    rcpt_to: str | None
    mail_reply: str | None
    rcpt_reply: str | None
    data_reply: str | None
    outcome: FormOutcome


# -- writing --------------------------------------------------------------------------------


def start_test(
    engine: Engine, address: str, *, job_id: int | None, forced: bool, dry_run: bool = False
) -> int:
    """Open the record of a test about to run; returns its id. A `dry_run` test lists nothing."""
    with writer(engine).begin() as conn:
        return int(
            conn.execute(
                insert(RelayTest)
                .values(
                    job_id=job_id,
                    address=address,
                    forced=forced,
                    dry_run=dry_run,
                    started_at=utcnow(),
                )
                .returning(RelayTest.id)
            ).scalar_one()
        )


def _answers(report: ProbeReport) -> list[dict[str, object]]:
    return [
        {
            "form": result.form.name,
            "token": result.token,
            "mail_from": result.form.mail_from,
            "rcpt_to": result.form.rcpt_to,
            "mail_reply": result.mail_reply,
            "rcpt_reply": result.rcpt_reply,
            "data_reply": result.data_reply,
            "accepted": bool(result.accepted),
        }
        for result in report.forms
    ]


def record_probe(engine: Engine, test_id: int, report: ProbeReport) -> None:
    """Store a probe's evidence and the token of every envelope form it tried."""
    tokens = [{"test_id": test_id, **answer} for answer in _answers(report)]
    with writer(engine).begin() as conn:
        conn.execute(
            update(RelayTest)
            .where(RelayTest.id == test_id)
            .values(
                banner=report.banner,
                ehlo_reply=report.ehlo_reply,
                reverse_name=report.reverse_name,
                forward_matches=report.forward_matches,
                transcript=report.transcript,
                reason=report.reason,
                client_address=report.client_address,
                tls_version=report.tls_version,
                tls_cipher=(report.tls_cipher or "")[:64] or None,
            )
        )
        if tokens:
            conn.execute(insert(ProbeToken), tokens)


def record_retry(engine: Engine, test_id: int, report: ProbeReport) -> None:
    """Add a greylisting retry's session to its test: the forms' answers as they stand now,
    its transcript after the earlier ones, one retry more and none due."""
    by_token = update(ProbeToken).where(ProbeToken.token == bindparam("b_token"))
    kept = ("token", "mail_reply", "rcpt_reply", "data_reply", "accepted")
    answers = [{f"b_{key}": answer[key] for key in kept} for answer in _answers(report)]
    with writer(engine).begin() as conn:
        conn.execute(
            update(RelayTest)
            .where(RelayTest.id == test_id)
            .values(
                transcript=func.coalesce(RelayTest.transcript, "") + report.transcript,
                reason=report.reason,
                retries=RelayTest.retries + 1,
                retry_at=None,
            )
        )
        if answers:
            conn.execute(
                by_token.values(
                    mail_reply=bindparam("b_mail_reply"),
                    rcpt_reply=bindparam("b_rcpt_reply"),
                    data_reply=bindparam("b_data_reply"),
                    accepted=bindparam("b_accepted"),
                ),
                answers,
            )


def record_arrivals(engine: Engine, arrivals: list[Arrival]) -> int:
    """Store several arrivals in one transaction; returns how many carried a token."""
    rows = [
        {
            "token": arrival.token[:64],
            "delivered_by": arrival.delivered_by,
            "mail_from": arrival.mail_from,
            "rcpt_tos": "\n".join(arrival.rcpt_tos),
            "received_at": arrival.received_at,
            "headers": arrival.headers,
        }
        for arrival in arrivals
        if arrival.token
    ]
    if rows:
        with writer(engine).begin() as conn:
            conn.execute(insert(TokenArrival), rows)
    return len(rows)


def set_verdict(engine: Engine, test_id: int, verdict: Verdict, reason: str | None) -> bool:
    """Close a test with its verdict; False when it was closed already (its worker was lost)."""
    with writer(engine).begin() as conn:
        done = conn.execute(
            update(RelayTest)
            .where(RelayTest.id == test_id, RelayTest.finished_at.is_(None))
            .values(verdict=verdict, reason=reason, finished_at=utcnow())
        )
    return bool(done.rowcount)


def close_unfinished(engine: Engine, job_id: int, reason: str) -> int:
    """Close a job's tests that never got a verdict (kept as evidence, `untestable`)."""
    with writer(engine).begin() as conn:
        done = conn.execute(
            update(RelayTest)
            .where(RelayTest.job_id == job_id, RelayTest.finished_at.is_(None))
            .values(verdict=Verdict.UNTESTABLE, reason=reason[:2000], finished_at=utcnow())
        )
    return int(done.rowcount)


def revise_verdict(engine: Engine, test_id: int, old: Verdict, new: Verdict, reason: str) -> bool:
    """Change a finished test's verdict from `old` to `new` (False if it was not `old`).

    The nominations answered by the test follow it.
    """
    with writer(engine).begin() as conn:
        done = conn.execute(
            update(RelayTest)
            .where(RelayTest.id == test_id, RelayTest.verdict == old)
            .values(verdict=new, reason=reason)
        )
        if done.rowcount:
            conn.execute(
                update(Nomination).where(Nomination.test_id == test_id).values(verdict=new)
            )
    return bool(done.rowcount)


def link_listings(engine: Engine, test_id: int, listing_ids: list[int]) -> None:
    """Remember which listings a test made."""
    if not listing_ids:
        return
    try:
        with writer(engine).begin() as conn:
            conn.execute(
                insert(RelayTestListing),
                [{"test_id": test_id, "listing_id": listing_id} for listing_id in listing_ids],
            )
    except IntegrityError:  # pragma: no cover - a listing id vanished: evidence only
        pass


# -- reading --------------------------------------------------------------------------------


def arrivals_for(engine: Engine, test_id: int) -> list[ArrivalView]:
    """The arrivals of a test's tokens, oldest first."""
    query = (
        select(
            ProbeToken.form,
            TokenArrival.token,
            TokenArrival.delivered_by,
            TokenArrival.received_at,
        )
        .join(ProbeToken, ProbeToken.token == TokenArrival.token)
        .where(ProbeToken.test_id == test_id)
        .order_by(TokenArrival.received_at, TokenArrival.id)
    )
    with engine.connect() as conn:
        return [
            ArrivalView(form, token, delivered_by, aware(received))
            for form, token, delivered_by, received in conn.execute(query)
        ]


def accepted_tokens(engine: Engine, test_id: int) -> dict[str, str]:
    """The form of each token whose message the host accepted, by token (what is waited on)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(ProbeToken.token, ProbeToken.form).where(
                ProbeToken.test_id == test_id, ProbeToken.accepted.is_(True)
            )
        ).all()
    return {token: form for token, form in rows}


def _listed_as(engine: Engine, test_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {test_id: [] for test_id in test_ids}
    if not test_ids:
        return found
    query = (
        select(RelayTestListing.test_id, Zone.name, ListingValue.category, Listing.start_key)
        .join(Listing, Listing.id == RelayTestListing.listing_id)
        .join(Zone, Zone.id == Listing.zone_id)
        .join(ListingValue, ListingValue.id == Listing.value_id)
        .where(RelayTestListing.test_id.in_(test_ids), in_force_clause(utcnow()))
        .order_by(RelayTestListing.id)
    )
    with engine.connect() as conn:
        for test_id, zone, category, _start in conn.execute(query):
            label = f"{zone} {category}"
            if label not in found[test_id]:
                found[test_id].append(label)
    return found


def _views(engine: Engine, rows: list[RelayTest]) -> list[RelayTestView]:
    ids = [row.id for row in rows]
    listed = _listed_as(engine, ids)
    with engine.connect() as conn:
        accepted: dict[int, list[str]] = {test_id: [] for test_id in ids}
        if ids:
            for test_id, form in conn.execute(
                select(ProbeToken.test_id, ProbeToken.form)
                .where(ProbeToken.test_id.in_(ids), ProbeToken.accepted.is_(True))
                .order_by(ProbeToken.id)
            ):
                accepted[test_id].append(form)
    return [
        RelayTestView(
            id=row.id,
            address=row.address,
            verdict=Verdict(row.verdict) if row.verdict else None,
            reason=row.reason,
            forced=bool(row.forced),
            started_at=aware(row.started_at),
            finished_at=maybe_aware(row.finished_at),
            banner=row.banner,
            ehlo_reply=row.ehlo_reply,
            reverse_name=row.reverse_name,
            forward_matches=row.forward_matches,
            transcript=row.transcript,
            accepted_forms=accepted[row.id],
            arrivals=arrivals_for(engine, row.id),
            listed_as=listed[row.id],
            client_address=row.client_address,
            tls_version=row.tls_version,
            tls_cipher=row.tls_cipher,
            retries=row.retries or 0,
            retry_at=maybe_aware(row.retry_at),
            dry_run=bool(row.dry_run),
        )
        for row in rows
    ]


def form_results(engine: Engine, test_id: int) -> list[FormResult]:
    """Every envelope form a test tried, in the order it tried them, with its outcome."""
    arrived = {arrival.token for arrival in arrivals_for(engine, test_id)}
    with Session(engine) as session:
        rows = session.scalars(
            select(ProbeToken).where(ProbeToken.test_id == test_id).order_by(ProbeToken.id)
        )
        return [
            FormResult(
                form=row.form,
                mail_from=row.mail_from,
                rcpt_to=row.rcpt_to,
                mail_reply=row.mail_reply,
                rcpt_reply=row.rcpt_reply,
                data_reply=row.data_reply,
                outcome=_form_outcome(row, row.token in arrived),
            )
            for row in rows
        ]


def _form_outcome(row: ProbeToken, arrived: bool) -> FormOutcome:
    replies = [reply for reply in (row.mail_reply, row.rcpt_reply, row.data_reply) if reply]
    if arrived:
        return FormOutcome.RELAYED
    if row.accepted:
        return FormOutcome.ACCEPTED
    if any(reply[:1] == "5" for reply in replies):
        return FormOutcome.REFUSED
    if any(reply[:1] == "4" for reply in replies):
        return FormOutcome.DEFERRED
    return FormOutcome.NOT_TRIED


def get_test(engine: Engine, test_id: int) -> RelayTestView | None:
    """One relay test with its evidence, or None."""
    with Session(engine) as session:
        row = session.get(RelayTest, test_id)
    return _views(engine, [row])[0] if row is not None else None


def tests_for(engine: Engine, address: str, limit: int = 100) -> list[RelayTestView]:
    """The relay tests of one address, newest first."""
    text = str(parse_address(address))
    with Session(engine) as session:
        rows = list(
            session.scalars(
                select(RelayTest)
                .where(RelayTest.address == text)
                .order_by(RelayTest.id.desc())
                .limit(limit)
            )
        )
    return _views(engine, rows)


def recent_tests(engine: Engine, limit: int = 50) -> list[RelayTestView]:
    """The latest relay tests of every address, newest first."""
    with Session(engine) as session:
        rows = list(session.scalars(select(RelayTest).order_by(RelayTest.id.desc()).limit(limit)))
    return _views(engine, rows)


# `tests_for` is the API's name for it; tell pytest it is not a test when a test imports it.
tests_for.__test__ = False  # type: ignore[attr-defined]
