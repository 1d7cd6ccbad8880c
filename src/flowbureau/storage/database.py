"""The service database: SQLAlchemy 2 engine, sessions, the shared declarative ``Base``, migrations.

Rules:
- One declarative :class:`Base` for every domain that stores in the service database (service,
  ledger, scoring, ...). Constraint names follow :data:`NAMING_CONVENTION` so that Alembic
  migrations name them identically on SQLite and PostgreSQL.
- A domain's models live in its own module, listed in :data:`MODEL_MODULES`, so that
  :func:`load_models` (used by the migration environment) sees the whole schema.
- The schema changes only through Alembic revisions in ``flowbureau/migrations/versions``;
  :func:`upgrade_database` applies them (``flowbureau db upgrade``). Nothing calls
  ``create_all`` outside tests of the migrations themselves.
- Timestamps are stored with :class:`UTCDateTime`: aware datetimes in, aware UTC datetimes out,
  on every backend (SQLite keeps no offset, so values are normalised to UTC before storing).
- SQLite runs with foreign keys enforced, WAL journaling (file databases) and a busy timeout,
  so that a web server's threads and a CLI can share one file; under WAL with
  ``synchronous=NORMAL`` (no fsync per commit: durable across application crashes, not
  necessarily across power loss; PostgreSQL is the production database).
- SQLite writers of every process queue on an OS file lock (``<database>.writer``) taken before
  a connection's first write and dropped right after its commit or rollback; SQLite's own busy
  handler (sleeps of 1 to 100 ms) is then only the fallback (see :class:`QueuedWriterConnection`).
"""

from __future__ import annotations

import fcntl
import importlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from flowbureau.errors import StorageError

__all__ = [
    "MODEL_MODULES",
    "NAMING_CONVENTION",
    "Base",
    "QueuedWriterConnection",
    "UTCDateTime",
    "current_revision",
    "head_revision",
    "load_models",
    "make_engine",
    "migration_config",
    "session_factory",
    "session_scope",
    "upgrade_database",
]

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so migrations can refer to them on every backend."""

MODEL_MODULES: tuple[str, ...] = (
    "flowbureau.service.models",
    "flowbureau.scoring.history",
    "flowbureau.identity.models",
    "flowbureau.ledger.models",
)
"""Modules that define tables on :class:`Base`; a domain adding tables appends its module here."""


class Base(DeclarativeBase):
    """Declarative base shared by every table of the service database."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware timestamp stored in UTC; naive datetimes are refused when binding."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise an aware datetime to UTC (dropping the offset on SQLite, which keeps none)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise StorageError(f"refusing to store a naive datetime {value.isoformat()}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime whatever the backend gave back."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()[0]
        if mode not in {"memory", "wal"}:
            cursor.execute("PRAGMA journal_mode=WAL")
            mode = cursor.fetchone()[0]
        if mode == "wal":
            # In WAL mode NORMAL never corrupts the file and survives an application crash; it
            # skips the fsync per commit (about 7 ms here, held under the write lock), so the
            # last commits before an OS crash or power loss may roll back. See docs/service.md.
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_WRITER_WAIT_S = 10.0  # as long as the busy timeout; past it SQLite's own handler takes over


class QueuedWriterConnection(sqlite3.Connection):
    """A SQLite connection whose writes queue on an exclusive ``flock`` of ``<database>.writer``.

    Why: when two processes (two web workers, a worker and the CLI) write one SQLite file, the
    loser of the race sleeps in SQLite's busy handler in steps of 1, 2, 5, 10 ... 100 ms, which
    shows as a tail of tens of milliseconds on every audited read. Here a connection takes the
    lock before its first write and drops it right after commit or rollback, so the next writer
    starts within a fraction of a millisecond. Waiting is bounded (:data:`_WRITER_WAIT_S`), so a
    writer blocked by a connection of its own thread falls back to SQLite's handler instead of
    waiting forever.
    """

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        name = os.fspath(database)
        file_backed = name not in ("", ":memory:") and not name.startswith("file:")
        self.writer_lock_path = name + ".writer" if file_backed else None
        self.writer_lock_fd: int | None = None

    def take_writer_lock(self) -> None:
        """Hold the writer lock until the transaction ends (no-op if held or in memory)."""
        if self.writer_lock_fd is not None or self.writer_lock_path is None:
            return
        fd = os.open(self.writer_lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + _WRITER_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    return
                time.sleep(0.0002)
                continue
            self.writer_lock_fd = fd
            return

    def release_writer_lock(self) -> None:
        """Drop the writer lock if this connection holds it."""
        fd, self.writer_lock_fd = self.writer_lock_fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_writer_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_writer_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_writer_lock()


def _queue_writer(conn: sa.Connection, _cursor: Any, statement: str, *_args: Any) -> None:
    dbapi = conn.connection.dbapi_connection
    if isinstance(dbapi, QueuedWriterConnection) and statement.lstrip()[:7].upper().startswith(
        _WRITES
    ):
        dbapi.take_writer_lock()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with flowbureau's per-backend settings.

    SQLite: the parent directory is created, connections may cross threads (a web server's
    worker threads share the pool) and every connection enforces foreign keys.
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("check_same_thread", False)
        connect_args.setdefault("factory", QueuedWriterConnection)
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "before_cursor_execute", _queue_writer)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to ``engine`` (objects stay readable after commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit when the block ends normally, roll back on any exception."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def load_models() -> sa.MetaData:
    """Import every module in :data:`MODEL_MODULES` and return the complete metadata."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return Base.metadata


def migration_config(url: str) -> Any:
    """An Alembic ``Config`` for ``url`` pointing at the migrations shipped in the package."""
    from alembic.config import Config

    config = Config()
    location = resources.files("flowbureau").joinpath("migrations")
    config.set_main_option("script_location", str(location))
    config.set_main_option("path_separator", "os")
    # ConfigParser interpolation would mangle '%' in URL-encoded passwords.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["flowbureau_url"] = url
    return config


def upgrade_database(url: str, revision: str = "head") -> str | None:
    """Apply the Alembic migrations to ``url`` up to ``revision``; return the new revision.

    Safe to run on an up-to-date database (it does nothing). Raises
    :class:`~flowbureau.errors.StorageError` when the database cannot be reached or migrated.
    """
    from alembic import command

    try:
        command.upgrade(migration_config(url), revision)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot migrate the service database: {exc}") from exc
    return current_revision(url)


def current_revision(url: str) -> str | None:
    """The Alembic revision the database at ``url`` is at (``None`` when never migrated)."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot read the service database revision: {exc}") from exc
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The newest revision shipped with this version of flowbureau."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(migration_config("sqlite://")).get_current_head()
