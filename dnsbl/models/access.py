"""The access keys of the DNS zones (`[zones.access] keys = true`) and their daily use.

A key's secret is never stored: only its SHA-256 (the secret is 160 random bits). Revoking
stamps `revoked_at`; rows stay, so the audit log's targets always resolve. Use is counted by
each DNS process on its own row (`node`), per UTC day: a process only ever writes its own
rows, so nodes never contend, and the day's use of a key is the sum over its rows.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dnsbl.models.base import Base, utcnow


class AccessKey(Base):
    """An access key: a unique name, the hash of its secret, and an optional daily quota."""

    __tablename__ = "access_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    daily_quota: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class AccessKeyUsage(Base):
    """How many queries one DNS process answered under one key on one UTC day."""

    __tablename__ = "access_key_usage"

    key_id: Mapped[int] = mapped_column(ForeignKey("access_keys.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    node: Mapped[str] = mapped_column(String(128), primary_key=True)
    queries: Mapped[int] = mapped_column(BigInteger, default=0)
