"""The public resources: nominations, delist requests, and the relay tests that are evidence."""

from __future__ import annotations

from pydantic import Field

from api.schemas.common import AddressText, Email, Input, Note, Public, UtcDatetime


class NominationCreate(Input):
    """A host to test for open relaying."""

    address: AddressText
    email: Email | None = None
    note: Note | None = Field(None, description="Why this host (e.g. a spam sample's headers)")
    dry_run: bool = Field(
        False,
        description="Test and keep the evidence, list nothing, schedule no grace test "
        "(needs an operator or admin key)",
    )


class NominationPublic(Public):
    """A nomination: where it is in the queue, and the verdict of its test once done."""

    id: int
    address: str
    status: str = Field(description="queued, testing, done or refused")
    queue_position: int | None = Field(description="1 = next to run; null unless waiting")
    verdict: str | None
    test_id: int | None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    refusal_reason: str | None
    test_url: str | None = None
    kind: str = Field("nomination", description="nomination, dry-run or self-test")


class DelistRequestCreate(Input):
    """A request to remove a listed host, by a retest the requester accepts."""

    address: AddressText
    confirmed_fixed: bool = Field(
        description="I confirm the relay has been fixed and accept a retest (must be true)",
        json_schema_extra={"const": True},
    )
    email: Email | None = None
    note: Note | None = None


class DelistRequestPublic(Public):
    """A delist request and the outcome of its retest."""

    id: int
    address: str
    status: str = Field(description="pending, retesting, delisted, still-listed or untestable")
    test_id: int | None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    queue_position: int | None = None
    test_url: str | None = None
    page_url: str | None = None


class ArrivalPublic(Public):
    """A test message that reached the collector: the envelope form, its token, the IP that
    delivered it (another IP than the tested host's: a multi-stage relay's output), and when."""

    form: str
    token: str
    delivered_by: str
    received_at: UtcDatetime


class RelayTestPublic(Public):
    """A relay test: what the host said, what was tried, and what arrived at the collector."""

    id: int
    address: str
    verdict: str | None = Field(description="confirmed, suspicious, closed or untestable")
    reason: str | None
    forced: bool
    started_at: UtcDatetime
    finished_at: UtcDatetime | None
    banner: str | None
    ehlo_reply: str | None
    reverse_name: str | None
    forward_matches: bool | None
    transcript: str | None = Field(description="Every session of the test, one after another")
    client_address: str | None = Field(None, description="The address the tester sent from")
    tls_version: str | None = Field(None, description="Set when the test ran under STARTTLS")
    tls_cipher: str | None = None
    retries: int = Field(
        0, description="Greylisting retries: sessions that sent held envelopes again"
    )
    retry_at: UtcDatetime | None = Field(
        None, description="When the next retry is due, while waiting"
    )
    dry_run: bool = Field(
        False,
        description="A self-test's or an operator's dry run: lists nothing, whatever it found",
    )
    accepted_forms: list[str] = Field(description="The envelope forms the host accepted")
    arrivals: list[ArrivalPublic] = Field(description="Test messages that arrived")
    listed_as: list[str] = Field(description="Listings in force that this test made")


class SelfTestCreate(Input):
    """A self-test: the address must be the one the request comes from (or be left out)."""

    address: AddressText | None = None


class FormResultPublic(Public):
    """One envelope form a test tried: the envelope, the host's answers, and the outcome
    (relayed: its message arrived; accepted: taken, nothing arrived; refused; deferred: only
    temporary answers; not tried)."""

    form: str
    mail_from: str | None
    rcpt_to: str | None
    mail_reply: str | None
    rcpt_reply: str | None
    data_reply: str | None
    outcome: str


class GraceTestPublic(Public):
    """The normal test scheduled after a self-test found the host open: it lists the host if
    it is still open when it runs."""

    job_id: int
    due_at: UtcDatetime = Field(description="When it is due (once run: when it was due last)")
    ran_at: UtcDatetime | None = Field(None, description="When it ran")
    status: str = Field(description="waiting, running, done or failed")
    verdict: str | None
    test_id: int | None
    test_url: str | None = None


class SelfTestPublic(Public):
    """A self-test: where it stands, every form with its outcome, the transcript, and the
    grace test. A self-test itself never lists."""

    id: int
    address: str
    status: str = Field(description="queued, testing, done or refused")
    queue_position: int | None
    verdict: str | None
    summary: str = Field(description="What the result means for the host, in a sentence or two")
    reason: str | None
    test_id: int | None
    test_url: str | None
    page_url: str
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    forms: list[FormResultPublic]
    transcript: str | None
    grace_test: GraceTestPublic | None
