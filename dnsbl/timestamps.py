"""Timestamps read back from either database as UTC-aware datetimes.

SQLite stores `DateTime(timezone=True)` columns as naive text; PostgreSQL returns them aware.
Everything the relay loop hands out is aware, in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def aware(value: datetime) -> datetime:
    """`value` in UTC with its zone attached (SQLite hands timestamps back naive)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def maybe_aware(value: datetime | None) -> datetime | None:
    """`aware(value)`, letting None through."""
    return None if value is None else aware(value)
