"""Never-test and never-list networks: the admin-managed policy, stored in the database.

The tester's own rule (`dnsbl.relay.tester.reach.is_testable`: testable networks from the
configuration, minus its `never_test`) decides what may be probed at all; these rows add the
networks an admin has taken out since. A never-list network is also never tested: a test whose
result could not be published has no reason to run (RFC 6471 §3.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from dnsbl.addresses import hex_key, parse_address, parse_network
from dnsbl.config import TesterSettings
from dnsbl.db import writer
from dnsbl.errors import DnsblError
from dnsbl.models import utcnow
from dnsbl.models.relay import PolicyNetwork
from dnsbl.relay.tester.reach import is_testable
from dnsbl.timestamps import aware

KINDS = ("never-test", "never-list")


class PolicyKindError(DnsblError, ValueError):
    """The policy kind must be never-test or never-list."""


@dataclass(frozen=True, slots=True)
class PolicyNetworkView:
    """One network of the policy, as the API and CLI show it."""

    id: int
    network: str
    kind: str
    reason: str | None
    created_at: datetime
    created_by: str | None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise PolicyKindError(f"policy kind {kind!r} is not one of {', '.join(KINDS)}")


def add_policy_network(
    engine: Engine, network: str, kind: str, reason: str | None, actor: str
) -> PolicyNetworkView:
    """Put `network` on the never-test or never-list list (an existing entry is returned)."""
    _check_kind(kind)
    net = parse_network(network)
    text = str(net)
    with writer(engine).begin() as conn:
        existing = conn.execute(
            select(PolicyNetwork.id).where(
                PolicyNetwork.network == text,
                PolicyNetwork.kind == kind,
                PolicyNetwork.removed_at.is_(None),
            )
        ).first()
        if existing is None:
            conn.execute(
                insert(PolicyNetwork).values(
                    kind=kind,
                    network=text,
                    family=net.family,
                    first_key=net.start_key,
                    last_key=net.end_key,
                    reason=reason,
                    created_at=utcnow(),
                    created_by=actor,
                )
            )
    views = [view for view in list_policy_networks(engine, kind) if view.network == text]
    return views[0]


def remove_policy_network(engine: Engine, network: str, kind: str, actor: str) -> bool:
    """Take `network` off the list; False when it was not on it."""
    _check_kind(kind)
    text = str(parse_network(network))
    with writer(engine).begin() as conn:
        done = conn.execute(
            update(PolicyNetwork)
            .where(
                PolicyNetwork.network == text,
                PolicyNetwork.kind == kind,
                PolicyNetwork.removed_at.is_(None),
            )
            .values(removed_at=utcnow(), removed_by=actor)
        )
    return bool(done.rowcount)


def list_policy_networks(engine: Engine, kind: str | None = None) -> list[PolicyNetworkView]:
    """The networks now on the lists (of one kind, or both), in network order."""
    query = select(PolicyNetwork).where(PolicyNetwork.removed_at.is_(None))
    if kind is not None:
        _check_kind(kind)
        query = query.where(PolicyNetwork.kind == kind)
    query = query.order_by(PolicyNetwork.family, PolicyNetwork.first_key, PolicyNetwork.id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        PolicyNetworkView(r.id, r.network, r.kind, r.reason, aware(r.created_at), r.created_by)
        for r in rows
    ]


def _matching(engine: Engine, address: str, kinds: tuple[str, ...]) -> Any:
    ip = parse_address(address)
    key = hex_key(ip.version, int(ip))
    query = (
        select(PolicyNetwork.kind, PolicyNetwork.network, PolicyNetwork.reason)
        .where(
            PolicyNetwork.removed_at.is_(None),
            PolicyNetwork.kind.in_(kinds),
            PolicyNetwork.family == ip.version,
            PolicyNetwork.first_key <= key,
            PolicyNetwork.last_key >= key,
        )
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return row


def _describe(row: Any) -> str:
    why = f": {row.reason}" if row.reason else ""
    return f"on the {row.kind} list ({row.network}{why})"


def refusal_to_test(engine: Engine, settings: TesterSettings, address: str) -> str | None:
    """None when `address` may be tested, else why not (configuration or the stored lists)."""
    reason = is_testable(address, settings)
    if reason is not None:
        return reason
    row = _matching(engine, address, KINDS)
    return _describe(row) if row is not None else None


def refusal_to_list(engine: Engine, address: str) -> str | None:
    """None when `address` may be listed, else why not (it is on the never-list list)."""
    row = _matching(engine, address, ("never-list",))
    return _describe(row) if row is not None else None
