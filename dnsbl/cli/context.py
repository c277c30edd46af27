"""What every sub-command gets: the settings, and the database engine and store on demand."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy import Engine

from dnsbl.config import Settings, load_settings
from dnsbl.listings.store import ListingStore


@dataclass
class Context:
    """The loaded configuration and lazily opened database of one `dnsbl` invocation."""

    settings: Settings
    args: argparse.Namespace = field(default_factory=argparse.Namespace)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        return cls(load_settings(args.config), args)

    @cached_property
    def engine(self) -> Engine:
        from dnsbl.db import engine_for

        return engine_for(self.settings)

    @cached_property
    def store(self) -> ListingStore:
        store = ListingStore(self.engine)
        store.ensure_zones(self.settings.zone_names)
        return store

    def migrate(self) -> None:
        """Bring the database schema to the newest version (Alembic)."""
        from dnsbl.db import upgrade

        upgrade(self.settings.database_url)
