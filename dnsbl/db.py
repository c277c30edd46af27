"""Database engines and migrations: SQLite (WAL, single writer) or PostgreSQL (psycopg 3).

Write transactions on SQLite start with `BEGIN IMMEDIATE` so that two writers queue on the
database lock instead of failing half-way with "database is locked" when one upgrades its read
lock. Readers use plain `BEGIN` and, under WAL, never block writers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# Package data (pyproject's package-data), so an installed wheel migrates as a checkout does.
# Alembic wants a directory: a wheel installs unzipped, so the resource is one.
MIGRATIONS = Path(str(files("dnsbl") / "migrations"))
_IMMEDIATE = "dnsbl_immediate"
_BIG_CACHE = "dnsbl_big_cache"
_WRITER_CACHE = -32768  # KiB: 32 MB (imports write in key order: more buys little, costs RSS)


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain `postgresql://` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`, with SQLite set up for WAL, foreign keys and immediate writes."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Take transaction control away from pysqlite so that BEGIN is ours to issue.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = bool(connection.get_execution_options().get(_IMMEDIATE, False))
        # Writers get a large page cache: a million-row import's indexes outgrow the 2 MB
        # default and the import crawls. Readers (a DNS node loading a zone) get the default
        # back, or a pooled connection that once wrote keeps ~100 MB of pages in the process.
        info = connection.connection.info
        if info.get(_BIG_CACHE, False) != immediate:
            connection.exec_driver_sql(f"PRAGMA cache_size={_WRITER_CACHE if immediate else -2000}")
            info[_BIG_CACHE] = immediate
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer(engine: Engine) -> Engine:
    """The same engine, but its transactions take SQLite's write lock at BEGIN."""
    return engine.execution_options(**{_IMMEDIATE: True})


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose one transaction commits on success and rolls back on any error."""
    with Session(bind=writer(engine), expire_on_commit=False) as session, session.begin():
        yield session


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` with Alembic (the only way the schema is made)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)
