"""The service database: SQLAlchemy 2 engine, sessions, the shared declarative ``Base``, migrations.

Rules:
- One declarative :class:`Base` for every domain that stores in the service database (service,
  ledger, scoring, ...). Constraint names follow :data:`NAMING_CONVENTION` so that Alembic
  migrations name them identically on SQLite and PostgreSQL.
- A domain's models live in its own module, listed in :data:`MODEL_MODULES`, so that
  :func:`load_models` (used by the migration environment) sees the whole schema.
- The schema changes only through Alembic revisions in ``flowbureau/migrations/versions``;
  :func:`upgrade_database` applies them (``flowbureau db upgrade``), one upgrade of a database at
  a time (a file lock for SQLite, an advisory lock on PostgreSQL). Nothing calls
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
- WAL checkpoints (copying the log into the database file, with its two fsyncs) run on a
  background thread per process and database every 0.1 s after writes
  (:class:`WalCheckpointer`), not inside a writer's commit: there they held the writer lock for
  the fsyncs (up to ~25 ms here) and every other writer queued behind them. A commit is thus on
  disk within a fraction of a second; SQLite's own automatic checkpoint stays as a safety net at
  :data:`_WAL_AUTOCHECKPOINT_PAGES`.
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeGuard
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from flowbureau.errors import StorageError

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_MODULES",
    "NAMING_CONVENTION",
    "Base",
    "QueuedWriterConnection",
    "UTCDateTime",
    "WalCheckpointer",
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
            # last commits before an OS crash or power loss may roll back: those since the last
            # checkpoint, which WalCheckpointer runs every 0.1 s. See docs/service.md.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA wal_autocheckpoint={_WAL_AUTOCHECKPOINT_PAGES}")
    finally:
        cursor.close()


def _is_sqlite_file(database: str | None) -> TypeGuard[str]:
    """Whether a SQLite database name is a plain file path (not in-memory, not a URI)."""
    return bool(database) and database != ":memory:" and not str(database).startswith("file:")


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_WRITER_WAIT_S = 10.0  # as long as the busy timeout; past it SQLite's own handler takes over
_CHECKPOINT_INTERVAL_S = 0.1
"""How often :class:`WalCheckpointer` checkpoints a database that was written to. Small
checkpoints keep their fsyncs short: a commit's write can stall behind one (measured in-process,
6,000 audited commits: longest commit 47-75 ms at 1 s, 17-32 ms at 0.25 s, 12-15 ms at 0.1 s)."""
_CHECKPOINTER_IDLE_ROUNDS = 50
"""A checkpointer thread ends after this many intervals without a write (the next write
starts a new one)."""
_WAL_AUTOCHECKPOINT_PAGES = 10_000
"""SQLite's own checkpoint inside a commit (default 1000 pages), kept as a safety net for when
no checkpointer thread keeps up, e.g. one huge transaction (10,000 pages: 40 MiB)."""


class WalCheckpointer:
    """Checkpoints one SQLite database's write-ahead log from a daemon thread, every 0.1 s.

    Why: SQLite checkpoints inside the commit that makes the log pass ``wal_autocheckpoint``
    pages, with an fsync of the log and one of the database; the committing connection still
    holds the writer lock (:class:`QueuedWriterConnection`) then, so every other writer of every
    process waited for those fsyncs (2 % of commits took 2 to 25 ms here, the score route's
    p99). A PASSIVE checkpoint on its own connection runs beside readers and writers.

    One thread per process and database file, started by the first commit that wrote
    (:meth:`note_write`), checkpointing only when something was written since its last pass,
    and ending after :data:`_CHECKPOINTER_IDLE_ROUNDS` quiet intervals. It opens the file
    read-write without creating it, and errors (a busy or vanished file) only skip a round.
    """

    _guard: ClassVar[threading.Lock] = threading.Lock()
    _running: ClassVar[dict[str, WalCheckpointer]] = {}

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.dirty = True
        self.checkpoints = 0
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-checkpoint:{os.path.basename(path)}", daemon=True
        )

    @classmethod
    def note_write(cls, path: str) -> None:
        """A transaction that wrote to ``path`` committed: have it checkpointed soon."""
        with cls._guard:
            worker = cls._running.get(path)
            if worker is None or worker.pid != os.getpid():  # none yet, or not in this process
                worker = cls._running[path] = cls(path)
                worker._thread.start()
            worker.dirty = True

    @classmethod
    def running(cls, path: str) -> WalCheckpointer | None:
        """The checkpointer of ``path`` in this process, if one runs."""
        with cls._guard:
            worker = cls._running.get(path)
        return worker if worker is not None and worker.pid == os.getpid() else None

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        idle = 0
        try:
            while True:
                time.sleep(_CHECKPOINT_INTERVAL_S)
                with self._guard:
                    if not self.dirty:
                        idle += 1
                        if idle >= _CHECKPOINTER_IDLE_ROUNDS:
                            del self._running[self.path]
                            return
                        continue
                    self.dirty, idle = False, 0
                try:
                    if connection is None:
                        connection = sqlite3.connect(
                            f"file:{quote(self.path)}?mode=rw", uri=True, check_same_thread=False
                        )
                        connection.execute("PRAGMA synchronous=NORMAL")
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:
                    log.debug("WAL checkpoint of %s skipped: %s", self.path, exc)
                    if connection is not None:
                        connection.close()
                    connection = None
        finally:
            with self._guard:
                if self._running.get(self.path) is self:
                    del self._running[self.path]
            if connection is not None:
                connection.close()


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
        file_backed = _is_sqlite_file(name)
        self.database_path = os.path.abspath(name) if file_backed else None
        self.writer_lock_path = name + ".writer" if file_backed else None
        self.writer_lock_fd: int | None = None
        self.wrote = False

    def take_writer_lock(self) -> None:
        """Hold the writer lock until the transaction ends (no-op if held or in memory)."""
        self.wrote = True
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
        """Commit, drop the writer lock, and have what was written checkpointed soon."""
        wrote, self.wrote = self.wrote, False
        try:
            super().commit()
        finally:
            self.release_writer_lock()
        if wrote and self.database_path is not None:
            WalCheckpointer.note_write(self.database_path)

    def rollback(self) -> None:
        """Roll back and drop the writer lock."""
        self.wrote = False
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
        if _is_sqlite_file(database):
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
def session_scope(factory: Callable[[], Session]) -> Iterator[Session]:
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
        with _one_upgrade_at_a_time(url):
            command.upgrade(migration_config(url), revision)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot migrate the service database: {exc}") from exc
    return current_revision(url)


_POSTGRES_UPGRADE_LOCK = 0x666C6F77  # "flow": the advisory lock key every upgrade takes


@contextmanager
def _one_upgrade_at_a_time(url: str) -> Iterator[None]:
    """Hold the database's upgrade lock: ``flock`` of ``<database>.upgrade`` for a SQLite file,
    a session advisory lock on PostgreSQL (nothing for in-memory SQLite).

    Why: service workers starting together on a fresh database each migrate it, and two of them
    created the same tables ("table already exists"); Alembic reads the current revision after
    the lock is taken, so a waiting upgrade then finds the database at head and does nothing.
    """
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    database = parsed.database or ""
    if backend == "sqlite" and _is_sqlite_file(database):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(database + ".upgrade", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the only descriptor releases the flock
    elif backend == "postgresql":
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                lock = {"key": _POSTGRES_UPGRADE_LOCK}
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), lock)
                connection.commit()
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), lock)
                    connection.commit()
        finally:
            engine.dispose()
    else:
        yield


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
