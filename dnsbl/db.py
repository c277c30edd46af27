"""Database engines and migrations: SQLite (WAL, single writer) or PostgreSQL (psycopg 3).

Write transactions on SQLite start with `BEGIN IMMEDIATE` so that two writers queue on the
database lock instead of failing half-way with "database is locked" when one upgrades its read
lock. Readers use plain `BEGIN` and, under WAL, never block writers.

Every engine is time-bounded (`database_connect_timeout`, `database_statement_timeout`): a
connection that cannot be made in the connect bound, or a statement (or commit) that gets no
answer in the statement bound, fails with `DatabaseUnavailable` instead of hanging the thread
that waits for it. On PostgreSQL the server cancels a slow statement itself
(`statement_timeout`); a server or network that stops answering altogether is caught on the
client side, where psycopg waits on the socket, and that connection is closed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from dnsbl.config import Settings, check_database_url
from dnsbl.errors import ConfigError

# Package data (pyproject's package-data), so an installed wheel migrates as a checkout does.
# Alembic wants a directory: a wheel installs unzipped, so the resource is one.
MIGRATIONS = Path(str(files("dnsbl") / "migrations"))
_IMMEDIATE = "dnsbl_immediate"
_BIG_CACHE = "dnsbl_big_cache"
_WRITER_CACHE = -32768  # KiB: 32 MB (imports write in key order: more buys little, costs RSS)
_DEADLINE = "dnsbl_deadline"
# The client waits this much longer than the server's statement_timeout, so that a server
# that is alive cancels the statement itself (and the connection stays usable).
_CLIENT_GRACE = 2.0
CONNECT_TIMEOUT = 5.0
STATEMENT_TIMEOUT = 10.0


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database is down, slow or cannot write (not a bad request)."""
    if isinstance(exc, PoolTimeout | OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain `postgresql://` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(
    url: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    statement_timeout: float = STATEMENT_TIMEOUT,
    **kwargs: Any,
) -> Engine:
    """An engine for `url`, with SQLite set up for WAL, foreign keys and immediate writes.

    `connect_timeout` bounds making a connection (and waiting for one from the pool);
    `statement_timeout` bounds each statement and commit; 0 means no bound (migrations).
    """
    try:
        url = normalise_url(check_database_url(url))
    except ValueError as exc:
        raise ConfigError(f"database_url: {exc}") from None
    if connect_timeout > 0:
        kwargs.setdefault("pool_timeout", connect_timeout)
    if url.startswith("sqlite"):
        # SQLite's own timeout is how long a statement waits for another writer's lock.
        wait = statement_timeout if statement_timeout > 0 else 30.0
        kwargs.setdefault("connect_args", {"timeout": wait, "check_same_thread": False})
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine, wait, statement_timeout)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = kwargs.setdefault("connect_args", {})
    if connect_timeout > 0:
        connect_args.setdefault("connect_timeout", max(1, round(connect_timeout)))
    engine = create_engine(url, **kwargs)
    if statement_timeout > 0:
        _bound_postgresql(engine, connect_timeout, statement_timeout)
    return engine


def engine_for(settings: Settings) -> Engine:
    """The engine of `settings.database_url`, bounded by the settings' database timeouts."""
    return make_engine(
        settings.database_url,
        connect_timeout=settings.database_connect_timeout,
        statement_timeout=settings.database_statement_timeout,
    )


def _bound_postgresql(engine: Engine, connect_timeout: float, statement_timeout: float) -> None:
    import psycopg
    from psycopg.errors import _WaitTimeout

    client_bound = statement_timeout + _CLIENT_GRACE
    # The pool's ping of a connection it hands out is part of getting a connection.
    ping_bound = connect_timeout if connect_timeout > 0 else client_bound

    class BoundedConnection(psycopg.Connection[Any]):
        """A psycopg connection whose every wait on the server ends within the bound."""

        bound = client_bound

        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            try:
                return super().wait(gen, interval, timeout if timeout is not None else self.bound)
            except _WaitTimeout:
                # Half a conversation is lost: this connection can never be trusted again.
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"no answer from the database in {self.bound:g} s"
                ) from None

    ping = engine.dialect.do_ping

    def _bounded_ping(dbapi_connection: Any) -> bool:
        dbapi_connection.bound = ping_bound
        try:
            return ping(dbapi_connection)
        finally:
            dbapi_connection.bound = client_bound

    setattr(engine.dialect, "do_ping", _bounded_ping)  # noqa: B010 -- this engine's only

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return BoundedConnection.connect(*cargs, **cparams)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: object) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {int(statement_timeout * 1000)}")
        dbapi_connection.commit()


def _configure_sqlite(engine: Engine, wait: float, statement_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Take transaction control away from pysqlite so that BEGIN is ours to issue.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
        cursor.close()
        if statement_timeout > 0:
            info = _record.info  # type: ignore[attr-defined]

            def _interrupt() -> int:
                deadline = info.get(_DEADLINE)
                return int(deadline is not None and time.monotonic() > deadline)

            # Asked every 10,000 virtual machine steps: a statement past its bound stops.
            dbapi_connection.set_progress_handler(_interrupt, 10_000)

    if statement_timeout > 0:

        @event.listens_for(engine, "before_cursor_execute")
        def _arm(connection: Connection, *_args: Any) -> None:
            connection.connection.info[_DEADLINE] = time.monotonic() + statement_timeout

        @event.listens_for(engine, "after_cursor_execute")
        def _disarm(connection: Connection, *_args: Any) -> None:
            connection.connection.info[_DEADLINE] = None

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


# The transaction `one_transaction` opened in this context (thread, task): the pool of its
# engine, and its connection.
_ONE_TRANSACTION: ContextVar[tuple[object, Connection] | None] = ContextVar(
    "dnsbl_one_transaction", default=None
)


@contextmanager
def one_transaction(engine: Engine) -> Iterator[Connection]:
    """Make every write on `engine` inside this block one transaction: all commit at the exit,
    or, on any error, none (an admin write, its change-log rows and its audit entry). Inside
    another one on the same engine, it is part of that one."""
    joined = _ONE_TRANSACTION.get()
    if joined is not None and joined[0] is engine.pool:
        yield joined[1]
        return
    with writer(engine).begin() as conn:
        token = _ONE_TRANSACTION.set((engine.pool, conn))
        try:
            yield conn
        finally:
            _ONE_TRANSACTION.reset(token)


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A write transaction on `engine`: the `one_transaction` of this context if there is one
    (it commits with the rest), else one of its own that commits at the exit."""
    joined = _ONE_TRANSACTION.get()
    if joined is not None and joined[0] is engine.pool:
        yield joined[1]
        return
    with writer(engine).begin() as conn:
        yield conn


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose one transaction commits on success and rolls back on any error (inside
    a `one_transaction`, it is part of that one)."""
    joined = _ONE_TRANSACTION.get()
    if joined is not None and joined[0] is engine.pool:
        with (
            Session(
                bind=joined[1], expire_on_commit=False, join_transaction_mode="create_savepoint"
            ) as session,
            session.begin(),
        ):
            yield session
        return
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
