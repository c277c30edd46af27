"""The API's tables: the keys that admit operators, and the append-only audit log of their writes.

A key's secret is never stored: only its SHA-256 (the secret is 256 random bits, so a plain
hash is as strong as a slow one and lets a request be checked in microseconds). Revoking a key
stamps `revoked_at`; rows are never deleted, so the audit log's actor ids always resolve.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dnsbl.models.base import Base, utcnow

ROLES = ("reporter", "operator", "admin")  # in increasing order of power


class ApiKey(Base):
    """An API key: a name, a role (reporter, operator or admin) and the hash of its secret."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()


class AuditEntry(Base):
    """One administrative change: who (key id), when, what action on which target, and why.

    Append-only: nothing in dnsbl updates or deletes these rows.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_audit_log_at", "at"),)
