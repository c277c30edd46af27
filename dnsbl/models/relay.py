"""The relay-testing tables: jobs, nominations, relay tests with their evidence, delist requests.

The flow is nomination → job → relay test (tokens sent, arrivals seen) → verdict → listing.
A job is claimed with a lease; at most one job per target is waiting or running at any time,
which a partial unique index enforces, so no two tests of one host can ever overlap.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from dnsbl.models.base import Base, utcnow
from dnsbl.relay.states import (
    ACTIVE_JOB,
    DelistStatus,
    JobStatus,
    NominationKind,
    NominationStatus,
)

_ACTIVE = "status IN ({})".format(", ".join(f"'{status}'" for status in ACTIVE_JOB))


class Job(Base):
    """A unit of work for the workers: test or retest a target, or sweep expired listings.

    `status` is waiting, running, done or failed. A running job belongs to `lease_owner`
    until `lease_until`; past it, any worker may claim the job again.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # a JobKind
    target: Mapped[str] = mapped_column(String(64))  # an address, or SWEEP_TARGET for sweeps
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.WAITING.value)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128))
    finished_at: Mapped[datetime | None] = mapped_column()
    test_id: Mapped[int | None] = mapped_column(Integer)  # the relay test that finished it

    __table_args__ = (
        Index("ix_jobs_claim", "status", "run_after"),
        # The guarantee behind "never two tests of the same target at once".
        Index(
            "uq_jobs_active_target",
            "target",
            unique=True,
            sqlite_where=text(_ACTIVE),
            postgresql_where=text(_ACTIVE),
        ),
    )


class RelayTest(Base):
    """One relay test of one host: the SMTP evidence, and the verdict once it is decided.

    `verdict` is NULL while the test runs, then confirmed, suspicious, closed or untestable.
    A test greylisted by the host waits, unfinished, until `retry_at` for its job to send the
    held envelopes again from `client_address` (the greylisting triplet's client); `retries`
    counts those sessions, whose transcripts follow the first one's. `tls_version` and
    `tls_cipher`: the session ran under STARTTLS. `dry_run`: a self-test's or a dry run's,
    whose verdict lists and delists nothing.
    """

    __tablename__ = "relay_tests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    address: Mapped[str] = mapped_column(String(45), index=True)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    verdict: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    banner: Mapped[str | None] = mapped_column(Text)
    ehlo_reply: Mapped[str | None] = mapped_column(Text)
    reverse_name: Mapped[str | None] = mapped_column(String(255))
    forward_matches: Mapped[bool | None] = mapped_column(Boolean)
    transcript: Mapped[str | None] = mapped_column(Text)
    client_address: Mapped[str | None] = mapped_column(String(45))
    tls_version: Mapped[str | None] = mapped_column(String(16))
    tls_cipher: Mapped[str | None] = mapped_column(String(64))
    retries: Mapped[int] = mapped_column(SmallInteger, default=0, server_default=text("0"))
    retry_at: Mapped[datetime | None] = mapped_column()
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))


class ProbeToken(Base):
    """A token one envelope form of a test carried, and what the host answered to that form."""

    __tablename__ = "test_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("relay_tests.id"), index=True)
    form: Mapped[str] = mapped_column(String(64))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    mail_from: Mapped[str | None] = mapped_column(Text)
    rcpt_to: Mapped[str | None] = mapped_column(Text)
    mail_reply: Mapped[str | None] = mapped_column(Text)
    rcpt_reply: Mapped[str | None] = mapped_column(Text)
    data_reply: Mapped[str | None] = mapped_column(Text)
    accepted: Mapped[bool] = mapped_column(Boolean, default=False)


class TokenArrival(Base):
    """A message carrying a token that reached the collector, and the IP that delivered it.

    Kept apart from `test_tokens` (joined on the token text) so the collector can record an
    arrival before, or without, the test having written its tokens.
    """

    __tablename__ = "token_arrivals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), index=True)
    delivered_by: Mapped[str] = mapped_column(String(45))
    mail_from: Mapped[str | None] = mapped_column(Text)
    rcpt_tos: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    headers: Mapped[str | None] = mapped_column(Text)


class RelayTestListing(Base):
    """A listing a relay test made (the tested host, or a multi-stage relay's output)."""

    __tablename__ = "relay_test_listings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("relay_tests.id"), index=True)
    listing_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("listings.id"), index=True
    )


class Nomination(Base):
    """Someone's request that a host be tested; `status` is queued, testing, done or refused.

    `kind` (a NominationKind): a nomination, or a self-test or dry run, which list nothing.
    `grace_job_id`: the test a self-test that found the host open scheduled for later.
    """

    __tablename__ = "nominations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(45), index=True)
    submitter: Mapped[str] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=NominationStatus.QUEUED.value)
    refusal_reason: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    test_id: Mapped[int | None] = mapped_column(ForeignKey("relay_tests.id"))
    verdict: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    kind: Mapped[str] = mapped_column(
        String(16),
        default=NominationKind.NOMINATION.value,
        server_default=text(f"'{NominationKind.NOMINATION.value}'"),
    )
    grace_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", name="fk_nominations_grace_job")
    )

    __table_args__ = (
        Index("ix_nominations_submitter", "submitter", "created_at"),
        Index("ix_nominations_kind_address", "kind", "address", "created_at"),
    )


class DelistRequest(Base):
    """A listed host's operator asking out: answered by a forced retest.

    `status` is pending, retesting, delisted, still-listed or untestable.
    """

    __tablename__ = "delist_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(45), index=True)
    requester: Mapped[str] = mapped_column(String(128), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DelistStatus.PENDING.value)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    test_id: Mapped[int | None] = mapped_column(ForeignKey("relay_tests.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()


class PolicyNetwork(Base):
    """A network the tester must never test (`never-test`) or the list never list (`never-list`).

    Removal stamps `removed_at` instead of deleting, so the policy's history stays readable.
    """

    __tablename__ = "policy_networks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    network: Mapped[str] = mapped_column(String(49))
    family: Mapped[int] = mapped_column(SmallInteger)
    first_key: Mapped[str] = mapped_column(String(32))  # fixed-width hex, as listings
    last_key: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128))
    removed_at: Mapped[datetime | None] = mapped_column()
    removed_by: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_policy_networks_range", "family", "first_key", "last_key"),)
