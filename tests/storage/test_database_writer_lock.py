"""SQLite writers queue on the ``<database>.writer`` file lock (storage/database.py)."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowbureau.storage import database
from flowbureau.storage.database import QueuedWriterConnection, make_engine


def _lock_is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _engine(tmp_path: Path) -> tuple[sa.Engine, Path]:
    path = tmp_path / "service.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        conn.execute(sa.text("INSERT INTO counter VALUES (1, 0)"))
    return engine, Path(f"{path}.writer")


def test_the_lock_is_held_from_the_first_write_to_commit_or_rollback(tmp_path: Path) -> None:
    engine, lock = _engine(tmp_path)
    with engine.connect() as conn:
        assert isinstance(conn.connection.dbapi_connection, QueuedWriterConnection)
        conn.execute(sa.text("SELECT n FROM counter")).all()
        assert _lock_is_free(lock)  # reads take no lock
        conn.execute(sa.text("UPDATE counter SET n = n + 1"))
        assert not _lock_is_free(lock)
        conn.commit()
        assert _lock_is_free(lock)
        conn.execute(sa.text("UPDATE counter SET n = n + 1"))
        assert not _lock_is_free(lock)
        conn.rollback()
        assert _lock_is_free(lock)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT n FROM counter")).scalar_one() == 1
    engine.dispose()


def test_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    engine, lock = _engine(tmp_path)

    def work() -> None:
        for _ in range(40):
            with engine.begin() as conn:
                n = conn.execute(
                    sa.text("UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n")
                ).scalar_one()
                conn.execute(sa.text("INSERT INTO counter VALUES (:id, 0)"), {"id": 1000 + n})

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT n FROM counter WHERE id = 1")).scalar_one() == 160
        assert conn.execute(sa.text("SELECT count(*) FROM counter")).scalar_one() == 161
    assert _lock_is_free(lock)
    engine.dispose()


def test_a_writer_waits_a_bounded_time_then_leaves_it_to_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "_WRITER_WAIT_S", 0.05)
    path = tmp_path / "x.sqlite3"
    holder = os.open(f"{path}.writer", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    conn = QueuedWriterConnection(str(path))
    try:
        started = time.monotonic()
        conn.take_writer_lock()
        assert time.monotonic() - started >= 0.05
        assert conn.writer_lock_fd is None
    finally:
        conn.close()
        os.close(holder)
    memory = QueuedWriterConnection(":memory:")
    memory.take_writer_lock()  # in-memory databases have no lock file
    assert memory.writer_lock_fd is None
    memory.close()
