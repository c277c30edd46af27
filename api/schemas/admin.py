"""The admin API's other resources: retests, the queue, policy networks, audit, zones, keys."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.common import AddressText, Input, NetworkText, Public, Reason, UtcDatetime
from dnsbl.policy import PolicyKind


class RetestAddressCreate(Input):
    """A retest of one address."""

    address: AddressText
    reason: str | None = Field(None, max_length=2000)


class RetestZoneCreate(Input):
    """A retest of every host listed in a zone, or in one category of it."""

    zone: str = Field(min_length=1, max_length=253)
    category: str | None = Field(None, min_length=1, max_length=64)
    reason: str | None = Field(None, max_length=2000)


RetestCreate = RetestAddressCreate | RetestZoneCreate


class RetestsScheduled(BaseModel):
    """What scheduling did: the addresses queued for a retest."""

    scheduled: int
    addresses: list[str]
    skipped: list[str] = Field(description="Hosts that policy forbids to test")


class JobPublic(Public):
    """A job of the queue: a test, retest or expiry sweep, and its state."""

    id: int
    kind: str
    target: str
    status: str
    forced: bool
    attempts: int
    run_after: UtcDatetime
    lease_owner: str | None
    lease_until: UtcDatetime | None
    last_error: str | None
    created_at: UtcDatetime
    created_by: str | None
    finished_at: UtcDatetime | None
    test_id: int | None


class QueuePublic(BaseModel):
    """How many jobs are in each state, and the jobs in the state asked for."""

    counts: dict[str, int]
    status: str
    items: list[JobPublic]
    limit: int
    offset: int


class PolicyNetworkCreate(Input):
    """A network never to test, or never to list."""

    network: NetworkText
    kind: PolicyKind
    reason: Reason


class PolicyNetworkPublic(Public):
    """A policy network."""

    id: int
    network: str
    kind: str
    reason: str | None = None
    created_at: UtcDatetime | None = None
    created_by: str | None = None


class AuditEntryPublic(Public):
    """One administrative change: who (API key id), when, what, on what, and why."""

    id: int
    at: UtcDatetime
    actor_key_id: int | None
    action: str
    target: str
    detail: dict[str, Any] | None
    reason: str | None


class ZonePublic(BaseModel):
    """A configured zone: its serial and how many listings each category has in force."""

    name: str
    serial: int | None = Field(description="The SOA serial (null: not yet in the database)")
    default_code: str
    categories: dict[str, str] = Field(description="The return code of each named category")
    listings: dict[str, int] = Field(description="Active listings by category")
    exclusions: int
    ttl: int
    negative_ttl: int


class KeyCreate(Input):
    """A new API key."""

    role: Literal["operator", "admin"]
    name: str | None = Field(None, min_length=1, max_length=128)


class KeyPublic(Public):
    """An API key without its secret."""

    id: int
    name: str
    role: str
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None
    last_used_at: UtcDatetime | None


class KeyIssued(KeyPublic):
    """A new key: `key` is shown this once and cannot be read again."""

    key: str


class AccessKeyCreate(Input):
    """A new access key for the DNS zones that take keys (`[zones.access] keys = true`)."""

    name: str = Field(min_length=1, max_length=64, description="Who the key is for (unique)")
    daily_quota: int | None = Field(
        None, ge=1, lt=2**62, description="Queries answered per UTC day; none: no limit"
    )


class AccessKeyPublic(Public):
    """An access key without its secret, with the queries answered under it today (UTC)."""

    id: int
    name: str
    daily_quota: int | None
    created_at: UtcDatetime
    revoked_at: UtcDatetime | None
    used_today: int


class AccessKeyIssued(AccessKeyPublic):
    """A new access key: `key` (the label to query under, d.c.b.a.KEY.<zone>) is shown this
    once and cannot be read again."""

    key: str
