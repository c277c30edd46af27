"""API keys: issued once, stored hashed, checked in constant time.

A key reads `dnsbl_<id>_<secret>`: the id finds the row, the secret (256 random bits) is what
proves possession. Only `sha256(secret)` is stored, and the comparison uses
`hmac.compare_digest`, so neither the database nor the timing of a refusal gives the secret
away. The plain key exists only in the `IssuedKey` returned by `create_key`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from dnsbl.db import write_session
from dnsbl.errors import DnsblError
from dnsbl.models import ApiKey, utcnow
from dnsbl.models.api import ROLES
from dnsbl.timestamps import aware

_PREFIX = "dnsbl"
_SECRET_BYTES = 32


class UnknownRoleError(DnsblError, ValueError):
    """Unknown role: choose operator or admin."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: everything but its secret."""

    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may(self, role: str) -> bool:
        """Whether this key's role is at least `role`."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly created key with its plain text, which is shown once and never again."""

    info: KeyInfo
    key: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.id, row.name, row.role, row.created_at, row.revoked_at, row.last_used_at)


def check_role(role: str) -> str:
    """`role` if it is one of the known roles, else `UnknownRoleError`."""
    if role not in ROLES:
        raise UnknownRoleError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def create_key(engine: Engine, role: str, name: str | None = None) -> IssuedKey:
    """Issue a key of `role`; the returned plain key is the only copy of its secret."""
    check_role(role)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    with write_session(engine) as session:
        row = ApiKey(
            name=name or f"{role} key", role=role, hash=_digest(secret), created_at=utcnow()
        )
        session.add(row)
        session.flush()
        info = _info(row)
    return IssuedKey(info, f"{_PREFIX}_{info.id}_{secret}")


def _split(key: str) -> tuple[int, str] | None:
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != _PREFIX or not key_id.isascii() or not key_id.isdigit() or not secret:
        return None
    number = int(key_id[:12])
    # Ids are 32-bit integers in the database; a larger one must not reach a query.
    return (number, secret) if len(key_id) <= 12 and number < 2**31 else None


def verify_key(engine: Engine, key: str, *, touch: bool = True) -> KeyInfo | None:
    """The key's info when `key` is a valid, unrevoked key; None otherwise.

    With `touch`, the key's `last_used_at` is brought up to date (at most once a minute, so a
    busy client does not turn every read into a write).
    """
    parts = _split(key.strip())
    # Hash even when the key is malformed, so a refusal takes the same time either way.
    presented = _digest(parts[1] if parts else key)
    if parts is None:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(ApiKey).where(ApiKey.id == parts[0])).first()
    if row is None or not hmac.compare_digest(row.hash, presented) or row.revoked_at is not None:
        return None
    now = utcnow()
    last = row.last_used_at
    if touch and (last is None or (now - aware(last)).total_seconds() > 60):
        with write_session(engine) as session:
            session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return KeyInfo(row.id, row.name, row.role, row.created_at, row.revoked_at, now)


def list_keys(engine: Engine) -> list[KeyInfo]:
    """Every key ever issued, revoked ones included, oldest first."""
    with Session(engine) as session:
        return [_info(row) for row in session.scalars(select(ApiKey).order_by(ApiKey.id))]


def get_key(engine: Engine, key_id: int) -> KeyInfo | None:
    with Session(engine) as session:
        row = session.get(ApiKey, key_id)
        return _info(row) if row is not None else None


def revoke_key(engine: Engine, key_id: int) -> KeyInfo | None:
    """Revoke the key (idempotent); None when there is no such key."""
    with write_session(engine) as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            return None
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        session.flush()
        return _info(row)
