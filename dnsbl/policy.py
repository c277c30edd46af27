"""The admin's policy networks: never tested and never listed, stored in the database.

Two lists of networks an admin takes out of the list's reach. A *never-list* network is never
listed, by anyone or anything: a manual listing, an import, a relay test or a report that would
cover any part of it is refused, naming the entry (`NeverList`). A *never-test* network is never
probed by the relay tester; a never-list network is never tested either, since a test whose
result could not be published has no reason to run (RFC 6471 §3.6). The tester's own rule on
what it may reach at all lives with the tester (`dnsbl.relay.tester.reach`).
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from dnsbl.addresses import Network, hex_key, parse_address, parse_network
from dnsbl.db import begin_write
from dnsbl.errors import DnsblError
from dnsbl.models import utcnow
from dnsbl.models.relay import PolicyNetwork
from dnsbl.timestamps import aware


class PolicyKind(enum.StrEnum):
    """Which list a policy network is on."""

    NEVER_TEST = "never-test"
    NEVER_LIST = "never-list"


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

    @property
    def describe(self) -> str:
        """How a refusal names this entry: `on the never-list list (NET: reason)`."""
        why = f": {self.reason}" if self.reason else ""
        return f"on the {self.kind} list ({self.network}{why})"


def _kind(kind: str) -> PolicyKind:
    try:
        return PolicyKind(kind)
    except ValueError:
        choices = ", ".join(PolicyKind)
        raise PolicyKindError(f"policy kind {kind!r} is not one of {choices}") from None


def add_policy_network(
    engine: Engine, network: str, kind: str, reason: str | None, actor: str
) -> PolicyNetworkView:
    """Put `network` on the never-test or never-list list (an existing entry is returned)."""
    chosen = _kind(kind)
    net = parse_network(network)
    text = str(net)
    current = select(PolicyNetwork).where(
        PolicyNetwork.network == text,
        PolicyNetwork.kind == chosen,
        PolicyNetwork.removed_at.is_(None),
    )
    with begin_write(engine) as conn:
        if conn.execute(current).first() is None:
            conn.execute(
                insert(PolicyNetwork).values(
                    kind=chosen.value,
                    network=text,
                    family=net.family,
                    first_key=net.start_key,
                    last_key=net.end_key,
                    reason=reason,
                    created_at=utcnow(),
                    created_by=actor,
                )
            )
        # read in the write's own transaction: it may be part of a larger one, not yet committed
        row = conn.execute(current).first()
    assert row is not None
    return _view(row)


def remove_policy_network(engine: Engine, network: str, kind: str, actor: str) -> bool:
    """Take `network` off the list; False when it was not on it."""
    chosen = _kind(kind)
    text = str(parse_network(network))
    with begin_write(engine) as conn:
        done = conn.execute(
            update(PolicyNetwork)
            .where(
                PolicyNetwork.network == text,
                PolicyNetwork.kind == chosen,
                PolicyNetwork.removed_at.is_(None),
            )
            .values(removed_at=utcnow(), removed_by=actor)
        )
    return bool(done.rowcount)


def list_policy_networks(engine: Engine, kind: str | None = None) -> list[PolicyNetworkView]:
    """The networks now on the lists (of one kind, or both), in network order."""
    query = select(PolicyNetwork).where(PolicyNetwork.removed_at.is_(None))
    if kind is not None:
        query = query.where(PolicyNetwork.kind == _kind(kind))
    query = query.order_by(PolicyNetwork.family, PolicyNetwork.first_key, PolicyNetwork.id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [_view(row) for row in rows]


def _view(row: Any) -> PolicyNetworkView:
    return PolicyNetworkView(
        row.id, row.network, row.kind, row.reason, aware(row.created_at), row.created_by
    )


def policy_entry(engine: Engine, address: str, kinds: tuple[PolicyKind, ...]) -> str | None:
    """How the first entry of `kinds` containing `address` is named in a refusal, or None."""
    ip = parse_address(address)
    key = hex_key(ip.version, int(ip))
    query = (
        select(PolicyNetwork)
        .where(
            PolicyNetwork.removed_at.is_(None),
            PolicyNetwork.kind.in_([kind.value for kind in kinds]),
            PolicyNetwork.family == ip.version,
            PolicyNetwork.first_key <= key,
            PolicyNetwork.last_key >= key,
        )
        .order_by(PolicyNetwork.id)
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return _view(row).describe if row is not None else None


class NeverList:
    """The never-list networks at one moment, asked whether a network meets any of them.

    Loaded once per write (a few rows), then asked per entry: one bisection, so that a
    10-million-line import pays microseconds per line for it.
    """

    def __init__(self, views: list[PolicyNetworkView]) -> None:
        self._by_family: dict[int, tuple[list[int], list[int], list[PolicyNetworkView]]] = {}
        for family in (4, 6):
            spans = sorted(
                (
                    (net.first, net.last, view)
                    for view in views
                    for net in (parse_network(view.network),)
                    if net.family == family
                ),
                key=lambda span: (span[0], span[1], span[2].id),
            )
            # reach[i]: the furthest last address of spans[0..i], so one bisection finds
            # whether any span starting at or before an entry's end reaches its start.
            reach: list[int] = []
            for _, last, _ in spans:
                reach.append(max(last, reach[-1]) if reach else last)
            self._by_family[family] = ([s[0] for s in spans], reach, [s[2] for s in spans])

    @classmethod
    def load(cls, engine: Engine) -> NeverList:
        return cls(list_policy_networks(engine, PolicyKind.NEVER_LIST))

    def __bool__(self) -> bool:
        return any(firsts for firsts, _, _ in self._by_family.values())

    def refusal(self, family: int, first: int, last: int) -> str | None:
        """None when [first, last] meets no never-list network, else how the entry it meets
        is named (`on the never-list list (198.51.100.0/24: a customer)`)."""
        firsts, reach, views = self._by_family[family]
        i = bisect_right(firsts, last)
        if i == 0 or reach[i - 1] < first:
            return None
        while i > 0:
            i -= 1
            if parse_network(views[i].network).last >= first:
                return views[i].describe
        raise AssertionError("unreachable: reach said a span meets the entry")

    def refusal_of(self, network: Network) -> str | None:
        """`refusal` for a network."""
        return self.refusal(network.family, network.first, network.last)
