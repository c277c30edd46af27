"""Access keys: issued once as a DNS label, stored hashed, revoked by name, use per day.

A key is 32 characters of lowercase base32 (160 random bits): a DNS label as it is, whatever
case a resolver sends it in. Only `key_digest(secret)` is stored; the plain key exists only
in the `IssuedAccessKey` that `create` returns. Every write commits with its audit entry.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dnsbl.db import write_session
from dnsbl.dns.access import KeyEntry, key_digest, utc_day
from dnsbl.errors import DnsblError
from dnsbl.models import AccessKey, AccessKeyUsage, AuditEntry, utcnow
from dnsbl.timestamps import aware, maybe_aware

_SECRET_BYTES = 20  # 160 bits: 32 base32 characters


class AccessKeyError(DnsblError, ValueError):
    """The access key cannot be issued or revoked."""


@dataclass(frozen=True, slots=True)
class AccessKeyInfo:
    """What may be shown about an access key: everything but its secret, and today's use."""

    id: int
    name: str
    daily_quota: int | None
    created_at: datetime
    revoked_at: datetime | None
    used_today: int = 0

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class IssuedAccessKey:
    """A new access key with its plain text, shown once and never again."""

    info: AccessKeyInfo
    key: str


def day_of(day: int) -> date:
    """A `utc_day` number as a date."""
    return datetime.fromtimestamp(day * 86400, UTC).date()


def _info(row: AccessKey, used: int = 0) -> AccessKeyInfo:
    created, revoked = aware(row.created_at), maybe_aware(row.revoked_at)
    return AccessKeyInfo(row.id, row.name, row.daily_quota, created, revoked, used)


def _audit(session: Session, actor: int | None, action: str, row: AccessKey) -> None:
    detail = {"name": row.name, "daily_quota": row.daily_quota}
    session.add(
        AuditEntry(
            at=utcnow(),
            actor_key_id=actor,
            action=action,
            target=f"access key {row.id}",
            detail=detail,
        )
    )


def _check_name(name: str) -> str:
    text = name.strip()
    if not 1 <= len(text) <= 64 or not text.isprintable():
        raise AccessKeyError(f"access key name {name!r}: give 1 to 64 printable characters")
    return text


def create(
    engine: Engine, name: str, daily_quota: int | None = None, *, actor: int | None = None
) -> IssuedAccessKey:
    """Issue a key called `name` (unique) with `daily_quota` queries a UTC day (None: no
    limit); audited as done by API key `actor` (None: the command line)."""
    name = _check_name(name)
    if daily_quota is not None and not 1 <= daily_quota < 2**62:
        raise AccessKeyError(f"daily quota {daily_quota}: give a positive number")
    secret = base64.b32encode(secrets.token_bytes(_SECRET_BYTES)).decode().lower()
    with write_session(engine) as session:
        if session.scalar(select(AccessKey.id).where(AccessKey.name == name)) is not None:
            raise AccessKeyError(f"an access key named {name!r} exists already")
        row = AccessKey(
            name=name, hash=key_digest(secret), daily_quota=daily_quota, created_at=utcnow()
        )
        session.add(row)
        session.flush()
        _audit(session, actor, "access-key.create", row)
        info = _info(row)
    return IssuedAccessKey(info, secret)


def revoke(engine: Engine, name: str, *, actor: int | None = None) -> AccessKeyInfo:
    """Revoke the key called `name`: DNS nodes refuse it from their next look (idempotent)."""
    with write_session(engine) as session:
        row = session.scalar(select(AccessKey).where(AccessKey.name == name.strip()))
        if row is None:
            raise AccessKeyError(f"no access key named {name!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            _audit(session, actor, "access-key.revoke", row)
        session.flush()
        return _info(row)


def _used_on(session: Session, day: int) -> dict[int, int]:
    """Queries answered per key id on `day`, summed over every DNS process."""
    query = (
        select(AccessKeyUsage.key_id, func.sum(AccessKeyUsage.queries))
        .where(AccessKeyUsage.day == day_of(day))
        .group_by(AccessKeyUsage.key_id)
    )
    return {key_id: int(total or 0) for key_id, total in session.execute(query)}


def list_all(engine: Engine) -> list[AccessKeyInfo]:
    """Every access key ever issued, oldest first, with its use today (UTC)."""
    with Session(engine) as session:
        used = _used_on(session, utc_day())
        rows = session.scalars(select(AccessKey).order_by(AccessKey.id))
        return [_info(row, used.get(row.id, 0)) for row in rows]


def active_keys(engine: Engine, day: int) -> dict[str, KeyEntry]:
    """What a DNS node answers from: each active key by digest, with its use on `day`."""
    with Session(engine) as session:
        used = _used_on(session, day)
        rows = session.scalars(select(AccessKey).where(AccessKey.revoked_at.is_(None)))
        return {row.hash: KeyEntry(row.name, row.daily_quota, used.get(row.id, 0)) for row in rows}


def record_use(engine: Engine, node: str, totals: Iterable[tuple[int, str, int]]) -> None:
    """Set `node`'s count of queries answered for each (day, key name, total) to `total`.

    Totals, not increments: a flush that fails is simply repeated with larger ones.
    """
    wanted = list(totals)
    if not wanted:
        return
    with write_session(engine) as session:
        ids = {
            name: key_id for name, key_id in session.execute(select(AccessKey.name, AccessKey.id))
        }
        for day, name, total in wanted:
            key_id = ids.get(name)
            if key_id is None:
                continue
            found = session.get(AccessKeyUsage, (key_id, day_of(day), node))
            if found is None:
                session.add(
                    AccessKeyUsage(key_id=key_id, day=day_of(day), node=node, queries=total)
                )
            else:
                found.queries = total
