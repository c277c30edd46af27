"""The audit log: every administrative write, with who, when, what and why. Append-only.

A route records its entry in the transaction of the change it describes (`db.one_transaction`
around both), so the change and its entry commit together or not at all: an entry never
describes a change that did not happen, and no change goes live unrecorded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from api.schemas.admin import AuditEntryPublic
from dnsbl.apikeys import KeyInfo
from dnsbl.db import write_session
from dnsbl.models import AuditEntry, utcnow


def record(
    engine: Engine,
    key: KeyInfo | None,
    action: str,
    target: str,
    *,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one entry; returns its id."""
    with write_session(engine) as session:
        entry = AuditEntry(
            at=utcnow(),
            actor_key_id=key.id if key else None,
            action=action,
            target=target[:256],
            detail=detail,
            reason=reason,
        )
        session.add(entry)
        session.flush()
        return entry.id


def entries(
    engine: Engine,
    *,
    limit: int,
    offset: int,
    action: str | None = None,
    actor_key_id: int | None = None,
) -> tuple[int, list[AuditEntryPublic]]:
    """The total number of matching entries and one page of them, newest first."""
    query = select(AuditEntry)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if actor_key_id is not None:
        query = query.where(AuditEntry.actor_key_id == actor_key_id)
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = conn.execute(query.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)).all()
    return total, [AuditEntryPublic.model_validate(row) for row in rows]
