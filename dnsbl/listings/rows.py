"""What the listings wing hands on: the row types a DNS node builds its index from, and the
words for where a listing came from and what a change did.

Plain data, no database: the index imports these, and the DNS side must never load SQLAlchemy.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dnsbl.addresses import Network


class Source(enum.StrEnum):
    """Who put a listing in: an admin, a bulk import, a relay test, a spam trap or a report."""

    MANUAL = "manual"
    IMPORT = "import"
    RELAY_TEST = "relay-test"
    REPORT = "report"
    TRAP = "trap"


class ChangeAction(enum.StrEnum):
    """What one change log entry did to its listing."""

    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class ListingRow:
    """The columns of a listing that the zone index needs."""

    category: str
    family: int
    start: int
    prefixlen: int
    excluded: bool
    code: str | None
    txt: str | None

    @property
    def network(self) -> Network:
        return Network(self.family, self.start, self.prefixlen)


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One change log entry joined with the listing it concerns (and the listing's expiry)."""

    serial: int
    action: ChangeAction
    listing: ListingRow
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LoadGroup:
    """Active listings of one family, prefix length and value: their starts, in order."""

    family: int
    prefixlen: int
    category: str
    excluded: bool
    code: str | None
    txt: str | None
    starts: Sequence[int]  # array('I') for IPv4, list[int] for IPv6


@dataclass(frozen=True, slots=True)
class ZoneLoad:
    """A zone as a DNS node loads it: its serial, its active listings grouped by value, and
    those already past their expiry but not yet swept (which the index must leave out)."""

    serial: int
    groups: list[LoadGroup]
    expired: list[ListingRow]
