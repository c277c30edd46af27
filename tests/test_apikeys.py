"""API keys: shown once, stored hashed, verified in constant time, revocable."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from dnsbl.apikeys import UnknownRoleError, create_key, get_key, list_keys, revoke_key, verify_key
from dnsbl.models import ApiKey


def test_a_key_verifies_and_only_its_hash_is_stored(engine: Engine) -> None:
    issued = create_key(engine, "operator", "monitoring")
    assert issued.key.startswith(f"dnsbl_{issued.info.id}_")
    secret = issued.key.split("_", 2)[2]
    assert len(secret) >= 40
    with engine.connect() as conn:
        stored = conn.execute(select(ApiKey.hash, ApiKey.name)).one()
    assert secret not in stored.hash and stored.hash != issued.key
    assert stored.name == "monitoring"
    info = verify_key(engine, issued.key)
    assert info is not None and info.role == "operator" and info.id == issued.info.id
    assert info.may("operator") and not info.may("admin")
    refreshed = get_key(engine, issued.info.id)
    assert refreshed is not None and refreshed.last_used_at is not None


def test_wrong_malformed_and_revoked_keys_fail(engine: Engine) -> None:
    issued = create_key(engine, "admin")
    other = create_key(engine, "admin")
    mixed = f"dnsbl_{issued.info.id}_{other.key.split('_', 2)[2]}"  # another key's secret
    for key in (
        mixed,
        "",
        "dnsbl__",
        "dnsbl_1_",
        "foo_1_bar",
        "dnsbl_99999999999999_x",
        "dnsbl_999999999999_x",
    ):
        assert verify_key(engine, key) is None
    assert revoke_key(engine, issued.info.id) is not None
    assert verify_key(engine, issued.key) is None
    assert verify_key(engine, other.key) is not None
    assert revoke_key(engine, 424242) is None
    assert [key.active for key in list_keys(engine)] == [False, True]


def test_unknown_role_is_refused(engine: Engine) -> None:
    with pytest.raises(UnknownRoleError, match="operator, admin"):
        create_key(engine, "root")
