"""The listing store's tables: zones, listing values, listings and the append-only change log.

A listing is never deleted: ending it sets `ended_at`, `ended_by` and `end_reason`, and the
change log records the removal under a new zone serial. The serial of a zone is bumped once per
writing transaction, inside that transaction and under a lock on the zone row, so serials are
gap-free and commit in order (followers never miss a change that committed late).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dnsbl.addresses import Network
from dnsbl.listings.rows import Source
from dnsbl.models.base import Base, utcnow

# A reference kept as a foreign key on SQLite only. On PostgreSQL a foreign key is a trigger
# call per inserted row (two per listing, two per change: most of a bulk import's time); the
# store, the only writer of these tables, takes every id it writes from rows it holds under
# the zone lock, and nothing deletes a zone, value, listing or change (migration 0010).
SQLITE_ONLY = {"dialects": ("sqlite",)}


class Zone(Base):
    """A blocklist zone; `serial` is its SOA serial, the number of its last change."""

    __tablename__ = "zones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    serial: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ListingValue(Base):
    """What a listing answers: its category, whether it is an exclusion, its A code and TXT.

    Values are shared: a million imported addresses usually have one value between them, and
    keeping it out of the listing row lets a zone load by scanning one index.
    """

    __tablename__ = "listing_values"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(String(64))
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    code: Mapped[str | None] = mapped_column(String(15))  # None: the zone's code for the category
    txt: Mapped[str | None] = mapped_column(Text)  # None: the zone's template; "": no TXT

    __table_args__ = (Index("ix_listing_values_all", "category", "excluded", "code", "txt"),)


class Listing(Base):
    """One network listed (or excluded, `!` in rbldnsd terms) in one category of a zone.

    At most one listing per zone, category and network is active (`ended_at` NULL); the
    store keeps that true under the zone lock.
    """

    __tablename__ = "listings"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id", info=SQLITE_ONLY))
    value_id: Mapped[int] = mapped_column(ForeignKey("listing_values.id", info=SQLITE_ONLY))
    family: Mapped[int] = mapped_column(SmallInteger)
    start_key: Mapped[str] = mapped_column(String(32))  # first address, fixed-width hex
    prefixlen: Mapped[int] = mapped_column(SmallInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), default=Source.MANUAL.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime | None] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column()
    ended_by: Mapped[str | None] = mapped_column(String(128))
    end_reason: Mapped[str | None] = mapped_column(Text)

    zone: Mapped[Zone] = relationship(lazy="joined")
    value: Mapped[ListingValue] = relationship(lazy="joined")

    @property
    def net(self) -> Network:
        return Network(self.family, int(self.start_key, 16), self.prefixlen)

    @property
    def network(self) -> str:
        """The network in CIDR notation."""
        return str(self.net)

    @property
    def category(self) -> str:
        return self.value.category

    @property
    def excluded(self) -> bool:
        return self.value.excluded

    @property
    def code(self) -> str | None:
        return self.value.code

    @property
    def txt(self) -> str | None:
        return self.value.txt

    @property
    def active(self) -> bool:
        return self.ended_at is None

    __table_args__ = (
        # Loading a zone is one scan of this index: the active entries grouped by family,
        # prefix length and value, starts in order, with no visit to the table.
        Index(
            "ix_listings_load",
            "zone_id",
            "family",
            "prefixlen",
            "value_id",
            "start_key",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        # Finding the listings (active or ended) that cover an address: one probe per length.
        Index("ix_listings_start", "family", "start_key"),
        Index(
            "ix_listings_expiry",
            "expires_at",
            sqlite_where=text("ended_at IS NULL AND expires_at IS NOT NULL"),
            postgresql_where=text("ended_at IS NULL AND expires_at IS NOT NULL"),
        ),
    )


class Change(Base):
    """One entry of the append-only change log: a listing added to or removed from a zone.

    When and by whom are the listing's: `created_at`/`created_by` for an add,
    `ended_at`/`ended_by` for a removal (no copy here: migration 0009)."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id", info=SQLITE_ONLY))
    serial: Mapped[int] = mapped_column(BigInteger)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id", info=SQLITE_ONLY))
    action: Mapped[str] = mapped_column(String(8))  # a ChangeAction

    __table_args__ = (Index("ix_changes_zone_serial", "zone_id", "serial"),)
