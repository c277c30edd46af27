"""The words of the relay flow: verdicts, the states of jobs, nominations and delist requests,
and the categories relays are listed in.

Stored in the database as their text, shown as it is by the API and the pages; every other
module names them through these enums.
"""

from __future__ import annotations

import enum


class Verdict(enum.StrEnum):
    """What a relay test found.

    Confirmed: a test message arrived at the collector (listed). Suspicious: accepted, but
    nothing arrived (kept as evidence, never listed). Closed: refused for good. Untestable:
    no usable SMTP service, or only temporary answers.
    """

    CONFIRMED = "confirmed"
    SUSPICIOUS = "suspicious"
    CLOSED = "closed"
    UNTESTABLE = "untestable"


class JobKind(enum.StrEnum):
    """What a job does: test a nominated host, retest a listed one, or sweep expired listings.

    A self-test (asked for by the host itself) and an operator's dry run test as a test does
    but list nothing (`DRY_JOBS`); a grace test is the normal test a self-test that found the
    host open schedules `tester.self_test_grace_hours` later, and lists as any test.
    """

    TEST = "test"
    RETEST = "retest"
    EXPIRE = "expire"
    SELF_TEST = "self-test"
    DRY_RUN = "dry-run"
    GRACE_TEST = "grace-test"


DRY_JOBS = (JobKind.SELF_TEST, JobKind.DRY_RUN)
"""The kinds of job whose verdict changes nothing on the list."""


class JobStatus(enum.StrEnum):
    """Where a job stands: waiting and running are active; done and failed are final."""

    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


ACTIVE_JOB = (JobStatus.WAITING, JobStatus.RUNNING)
"""The statuses of a job still to finish: at most one such job per target."""


class NominationKind(enum.StrEnum):
    """Who asked for a test and what it may do: a nomination lists what it confirms; a
    self-test (the host asking about itself) and a dry run (an operator's) list nothing."""

    NOMINATION = "nomination"
    SELF_TEST = "self-test"
    DRY_RUN = "dry-run"


class NominationStatus(enum.StrEnum):
    """Where a nomination stands, as its submitter sees it."""

    QUEUED = "queued"
    TESTING = "testing"
    DONE = "done"
    REFUSED = "refused"


class DelistStatus(enum.StrEnum):
    """Where a delist request stands; the last three are final."""

    PENDING = "pending"
    RETESTING = "retesting"
    DELISTED = "delisted"
    STILL_LISTED = "still-listed"
    UNTESTABLE = "untestable"


DELIST_FINAL = (DelistStatus.DELISTED, DelistStatus.STILL_LISTED, DelistStatus.UNTESTABLE)


class JobOutcome(enum.StrEnum):
    """How a job ended in the worker that ran it (a label of the worker's metrics)."""

    DONE = "done"  # finished: a verdict, a refusal by policy, a sweep
    POSTPONED = "postponed"  # back in the queue for later: greylisted, or tested too lately
    ERROR = "error"  # raised: retried later, or failed after tester.max_attempts
    LEASE_LOST = "lease-lost"  # another worker took it over; its result was dropped
    RELEASED = "released"  # handed back to the queue when the worker stopped


class MessageOutcome(enum.StrEnum):
    """What the collector did with a message for the collector domain."""

    RECORDED = "recorded"  # a test token arrived, and is in the database
    NO_TOKEN = "no-token"  # accepted and dropped (a bounce, say): proves nothing
    FAILED = "failed"  # recording failed: answered 451, the relay will try again


class RelayCategory(enum.StrEnum):
    """The listing categories of the relay flow: the tested host, and a multi-stage relay's
    output (an IP that delivered a test message on the tested host's behalf)."""

    OPEN_RELAY = "open-relay"
    RELAY_OUTPUT = "relay-output"


SWEEP_TARGET = "expiry"
"""The target of expiry sweeps: one sweep waits or runs at a time, like one test per host."""
