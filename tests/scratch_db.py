"""A migrated, empty PostgreSQL schema for a test or a benchmark, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from dnsbl.db import make_engine, normalise_url, upgrade


@contextmanager
def migrated_schema(base: str, prefix: str) -> Iterator[str]:
    """A fresh schema named `prefix`_… in the database at `base`, migrated: the URL that
    searches it first. It is dropped with everything in it on leaving."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = normalise_url(base)
    joiner = "&" if "?" in url else "?"
    url = f"{url}{joiner}options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
