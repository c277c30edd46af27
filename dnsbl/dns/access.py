"""Who may query a zone: its allow list, access keys with daily quotas, and the verdict.

A zone's `[zones.access]` (`dnsbl.config.AccessSettings`) names the sources answered without
a key (`allow`), whether names under `KEY.<zone>` are answered for a valid access key
(`keys`), and what anyone else gets (`denied`: REFUSED, or the "code" answer below). The
decision is a function of the source address and the query name alone (`Access.decide`), so
any engine can take it; the general path (`answers.Responder`) calls it for every query to a
zone that is not open. The hot path answers such a zone only for sources in its allow list
(`Access.admitters`) and leaves everything else to the general path.

Access keys are plain data here: `KeyBook` holds the SHA-256 of each active key's secret with
its name, quota and the day's use on every node as last read from the database, and counts
this process's own use until the node's key follower (`dnsbl.node.access_keys`) takes it to
the database. A quota is therefore enforced against the shared count plus this process's
count since its last flush: a node can overshoot a quota by what the other nodes answered
since their last flush.

The apex (SOA, NS) of a zone is answered to everyone: it is what a resolver must reach before
it can ask anything, QNAME-minimising or not, and it says nothing about the listings.
"""

from __future__ import annotations

import collections
import hashlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from dnsbl.config import ZoneSettings
from dnsbl.dns.query import NIBBLES, OCTETS

DENIED_CODE = "127.255.255.254"  # Spamhaus's "query through an unauthorised path"
OVER_QUOTA_CODE = "127.255.255.255"  # Spamhaus's "over quota"; never a reason to reject mail
_CACHE_LIMIT = 65536  # sources remembered per zone before the cache starts afresh

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Verdict(StrEnum):
    """What became of a query, as the metrics name it."""

    ALLOWED = "allowed"  # a source in the allow list
    KEY = "key"  # a valid access key within its quota
    DENIED = "denied"  # anyone else, or a revoked or unknown key
    OVER_QUOTA = "over-quota"
    RATE_LIMITED = "rate-limited"  # dropped by response rate limiting (dnsbl.dns.ratelimit)
    SLIPPED = "slipped"  # sent truncated by response rate limiting


class Decision(NamedTuple):
    """A verdict and how many labels lie below the zone's apex once the key label is taken
    out (the name is then answered as if asked without it); `refuse`: answer REFUSED."""

    verdict: Verdict
    below: int
    refuse: bool = False


def source_address(peer: str) -> Address | None:
    """`peer` (a socket's address text) as an IP address; an IPv4-mapped one as IPv4."""
    try:
        address = ipaddress.ip_address(peer.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def key_digest(secret: str | bytes) -> str:
    """What is stored of an access key: the SHA-256 of its (lowercased) secret.

    DNS names are case-insensitive and resolvers randomise their case (0x20), so a key is
    lowercase letters and digits and is compared lowercased.
    """
    data = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(data.lower()).hexdigest()


def utc_day(now: float | None = None) -> int:
    """The UTC day of `now` (Unix time) as days since 1970-01-01: what a quota counts in."""
    return int((time.time() if now is None else now) // 86400)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """An active access key as a node knows it: no secret, only what a query needs."""

    name: str
    daily_quota: int | None  # None: no limit
    used: int = 0  # queries answered under it on `KeyBook.day`, on every node, as last read


class KeyBook:
    """The active access keys by digest, and the use this process has not yet flushed."""

    def __init__(self) -> None:
        self.by_digest: dict[str, KeyEntry] = {}
        self.day = utc_day()  # the day `KeyEntry.used` counts
        # Queries answered per (day, key name) since the last flush; the follower takes them.
        self.pending: collections.Counter[tuple[int, str]] = collections.Counter()
        self.answered: collections.Counter[str] = collections.Counter()  # since start

    def replace(self, keys: dict[str, KeyEntry], day: int) -> None:
        """Make `keys` (by digest, with their use on `day`) the keys in force."""
        self.by_digest, self.day = keys, day

    def take_pending(self) -> collections.Counter[tuple[int, str]]:
        """The unflushed use, handed over once (call it on the thread that answers)."""
        pending, self.pending = self.pending, collections.Counter()
        return pending

    def use(self, label: bytes) -> Verdict:
        """KEY when `label` is an active key within its quota (and count the query), else
        DENIED or OVER_QUOTA."""
        entry = self.by_digest.get(key_digest(label))
        if entry is None:
            return Verdict.DENIED
        today = utc_day()
        if entry.daily_quota is not None:
            shared = entry.used if self.day == today else 0
            if shared + self.pending[today, entry.name] >= entry.daily_quota:
                return Verdict.OVER_QUOTA
        self.pending[today, entry.name] += 1
        self.answered[entry.name] += 1
        return Verdict.KEY


class _ZoneGate:
    """One zone's allow list, with the answer for each source seen remembered."""

    def __init__(self, settings: ZoneSettings) -> None:
        self.keys = settings.access.keys
        self.code = settings.access.denied == "code"
        self.networks = [ipaddress.ip_network(text, strict=False) for text in settings.access.allow]
        self._seen: dict[str, bool] = {}

    def allows(self, peer: str) -> bool:
        allowed = self._seen.get(peer)
        if allowed is None:
            address = source_address(peer)
            allowed = address is not None and any(
                address.version == network.version and address in network
                for network in self.networks
            )
            if len(self._seen) >= _CACHE_LIMIT:
                self._seen.clear()
            self._seen[peer] = allowed
        return allowed


class Access:
    """The access rules of every zone that is not open, the access keys, and the count of
    verdicts by (zone, verdict)."""

    def __init__(self, zones: list[ZoneSettings], keys: KeyBook | None = None) -> None:
        self.gates = {zone.name: _ZoneGate(zone) for zone in zones if not zone.access.open}
        self.keys = keys if keys is not None else KeyBook()
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def guards(self, zone: str) -> bool:
        """Whether queries to `zone` must be decided here (it is not open to everyone)."""
        return zone in self.gates

    def admitters(self) -> dict[str, Callable[[str], bool]]:
        """Per guarded zone, the check for the hot path: whether a source is in the allow
        list (counted as allowed when it is). Key names never reach the hot path."""
        return {zone: self._admitter(zone, gate) for zone, gate in self.gates.items()}

    def _admitter(self, zone: str, gate: _ZoneGate) -> Callable[[str], bool]:
        counts, key = self.counts, (zone, Verdict.ALLOWED)

        def admit(peer: str) -> bool:
            if gate.allows(peer):
                counts[key] += 1
                return True
            return False

        return admit

    def decide(self, zone: str, labels: tuple[bytes, ...], below: int, peer: str) -> Decision:
        """The verdict on a query for `labels` (lowercase, `below` of them under the apex of
        `zone`) from `peer`, counted."""
        gate = self.gates.get(zone)
        if gate is None or below == 0:
            return Decision(Verdict.ALLOWED, below)
        label = labels[below - 1]
        if gate.keys and label not in OCTETS and label not in NIBBLES:
            verdict = self.keys.use(label)
            self.counts[zone, verdict] += 1
            # An unknown or revoked key is REFUSED whatever `denied` says: it is no name.
            return Decision(verdict, below - 1, refuse=verdict == Verdict.DENIED)
        if gate.allows(peer):
            self.counts[zone, Verdict.ALLOWED] += 1
            return Decision(Verdict.ALLOWED, below)
        self.counts[zone, Verdict.DENIED] += 1
        return Decision(Verdict.DENIED, below, refuse=not gate.code)

    def explain(self, zone: str, verdict: Verdict) -> str:
        """The TXT of a "code" answer: why the query got no listing data."""
        if verdict == Verdict.OVER_QUOTA:
            return f"{zone}: this access key's daily quota is used up until 00:00 UTC"
        return f"{zone}: this source may not query {zone}; ask its operator for an access key"
