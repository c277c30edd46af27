"""Greylisting: a test the host held with temporary answers waits for its job to come back.

A greylisting server (postgrey, Postfix's postscreen) answers 4xx to the first attempt of every
new (client, sender, recipient) triplet and takes the same triplet once its delay has passed
(RFC 6647). A temporary answer to a direct form — a recipient plainly in the collector's
domain, which a closed server refuses outright — is such an answer, not a refusal. So the
worker does not decide on it: it notes on the test when the retry is due and puts the job back
in the queue until then, without counting an attempt and without holding a worker slot. The
job, claimed again by any worker, sends again only the envelopes that got a temporary answer
(every such form, not only the direct ones: a relay closed to a plain recipient may still take
the `%` hack once the delay is over) — the same sender and recipient (so the same token), from
the first session's address (the triplet's client) — and the verdict is decided on every
answer of the test, whose evidence keeps both sessions. At most `tester.greylist_attempts`
retries, `tester.greylist_retry` seconds apart; a retry follows only while a direct form is
held.

The job and the test stay the same throughout, so the one-test-per-host limit
(`schedule.next_allowed_test`, which leaves out the job's own tests) counts them once, and the
job, waiting, still keeps every other test of the host out (one active job per target).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update

from dnsbl.config import TesterSettings
from dnsbl.db import writer
from dnsbl.models import utcnow
from dnsbl.models.relay import ProbeToken, RelayTest
from dnsbl.relay.jobs import postpone
from dnsbl.relay.tester.battery import EnvelopeForm, is_direct
from dnsbl.relay.tester.probe import FormResult, ProbeReport, Retry


def retry_due(report: ProbeReport, settings: TesterSettings) -> bool:
    """Whether the test should send its held envelopes again rather than be decided now."""
    return bool(report.held) and report.retry < settings.greylist_attempts


def hold_for_retry(
    engine: Engine,
    job_id: int,
    owner: str,
    test_id: int,
    report: ProbeReport,
    settings: TesterSettings,
) -> datetime | None:
    """Make the test wait for its retry, and its job run again then; the time it is due.

    None when `owner` no longer holds the job (another worker took it over).
    """
    due = utcnow() + timedelta(seconds=settings.greylist_retry)
    with writer(engine).begin() as conn:
        conn.execute(
            update(RelayTest)
            .where(RelayTest.id == test_id, RelayTest.finished_at.is_(None))
            .values(retry_at=due)
        )
    why = (
        f"greylisted: {sum(1 for r in report.forms if r.temporary)} envelope(s) of test "
        f"#{test_id} to be sent again "
        f"at {due:%Y-%m-%d %H:%M:%S} UTC (retry {report.retry + 1} of at most "
        f"{settings.greylist_attempts})"
    )
    return due if postpone(engine, job_id, owner, due, why) else None


def pending_retry(engine: Engine, job_id: int, collector_domain: str) -> tuple[int, Retry] | None:
    """The test of `job_id` waiting for a greylisting retry, and that retry; None if none."""
    with engine.connect() as conn:
        test = conn.execute(
            select(RelayTest.id, RelayTest.retries, RelayTest.client_address)
            .where(
                RelayTest.job_id == job_id,
                RelayTest.finished_at.is_(None),
                RelayTest.retry_at.is_not(None),
            )
            .order_by(RelayTest.id.desc())
            .limit(1)
        ).first()
        if test is None:
            return None
        rows = conn.execute(
            select(
                ProbeToken.form,
                ProbeToken.token,
                ProbeToken.mail_from,
                ProbeToken.rcpt_to,
                ProbeToken.mail_reply,
                ProbeToken.rcpt_reply,
                ProbeToken.data_reply,
                ProbeToken.accepted,
            )
            .where(ProbeToken.test_id == test.id)
            .order_by(ProbeToken.id)
        ).all()
        earlier = [
            FormResult(
                EnvelopeForm(
                    row.form,
                    row.mail_from or "",
                    row.rcpt_to or "",
                    direct=is_direct(row.rcpt_to or "", collector_domain),
                ),
                row.token,
                mail_reply=row.mail_reply,
                rcpt_reply=row.rcpt_reply,
                data_reply=row.data_reply,
                accepted=bool(row.accepted),
            )
            for row in rows
        ]
    return test.id, Retry(int(test.retries or 0) + 1, earlier, test.client_address)
