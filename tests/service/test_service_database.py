"""The service database: migrations match the models (SQLite and PostgreSQL), timestamps stay
aware UTC, SQLite enforces foreign keys and is checkpointed off the commit path; a whole
journey runs on PostgreSQL too."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from service_helpers import CODE_A, Api, Clock, StubScores, bearer, make_settings

from flowbureau.errors import StorageError
from flowbureau.service import accounts, apikeys, audit
from flowbureau.service.app import create_app
from flowbureau.service.context import build_context
from flowbureau.service.models import Institution
from flowbureau.storage import database
from flowbureau.storage.database import (
    WalCheckpointer,
    current_revision,
    head_revision,
    load_models,
    make_engine,
    session_factory,
    session_scope,
    upgrade_database,
)


def _diff(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, load_models()))
    finally:
        engine.dispose()


_UPGRADE = (
    "import sys; from flowbureau.storage.database import upgrade_database; "
    "print(upgrade_database(sys.argv[1]))"
)


def _upgrade_together(url: str, processes: int = 3) -> list[subprocess.CompletedProcess[str]]:
    """Upgrade ``url`` from several processes started at once (like service workers)."""
    started = [
        subprocess.Popen(
            [sys.executable, "-c", _UPGRADE, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    done = []
    for process in started:
        out, err = process.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def _assert_all_upgraded(done: list[subprocess.CompletedProcess[str]], url: str) -> None:
    for process in done:
        assert process.returncode == 0, process.stderr[-2000:]
        assert process.stdout.strip() == head_revision()
    assert _diff(url) == []


def test_concurrent_upgrades_of_a_fresh_sqlite_database_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    _assert_all_upgraded(_upgrade_together(url), url)


@pytest.mark.postgres
def test_concurrent_upgrades_of_a_fresh_postgres_schema_all_succeed(postgres_url: str) -> None:
    _assert_all_upgraded(_upgrade_together(postgres_url), postgres_url)


def test_migrations_build_exactly_the_models_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    assert current_revision(url) is None
    assert upgrade_database(url) == head_revision()
    assert upgrade_database(url) == head_revision()  # a second run changes nothing
    assert _diff(url) == []


@pytest.mark.postgres
def test_migrations_build_exactly_the_models_on_postgres(postgres_url: str) -> None:
    assert upgrade_database(postgres_url) == head_revision()
    assert _diff(postgres_url) == []


def test_timestamps_are_aware_utc_and_naive_ones_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    upgrade_database(url)
    sessions = session_factory(make_engine(url))
    shanghai = datetime(2026, 3, 2, 17, 30, 0, 123456, tzinfo=timezone(timedelta(hours=8)))
    with session_scope(sessions) as db:
        db.add(Institution(id="i1", name="Bank", created_at=shanghai))
    with session_scope(sessions) as db:
        stored = db.get_one(Institution, "i1").created_at
    assert stored == shanghai
    assert stored.tzinfo is UTC
    assert stored.hour == 9
    with sessions() as db:
        db.add(Institution(id="i2", name="Naive", created_at=datetime(2026, 3, 2)))
        with pytest.raises(sa.exc.StatementError, match="naive datetime") as caught:
            db.flush()
    assert isinstance(caught.value.orig, StorageError)


def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fk.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO api_keys (id, institution_id, key_id, key_hash, scopes, created_at)"
                " VALUES ('k', 'no-such-institution', 'x', 'h', '[]', '2026-01-01 00:00:00')"
            )
        )


def test_sqlite_files_run_wal_without_an_fsync_per_commit(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in (
                    "journal_mode",
                    "synchronous",
                    "foreign_keys",
                    "busy_timeout",
                    "wal_autocheckpoint",
                )
            }
    finally:
        engine.dispose()
    # synchronous: 1 = NORMAL (2 = FULL, the SQLite default, fsyncs the WAL on every commit)
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 10000,
        "wal_autocheckpoint": 10000,  # a safety net: WalCheckpointer checkpoints
    }


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _in_database_file(db: Path, copy: Path) -> list[int] | None:
    """The rows of ``t`` the database file holds by itself (without its write-ahead log);
    ``None`` while it has no table ``t`` (or the copy caught a checkpoint half-way)."""
    shutil.copyfile(db, copy)
    try:
        with closing(sqlite3.connect(copy)) as conn:
            return [row[0] for row in conn.execute("SELECT n FROM t ORDER BY n")]
    except sqlite3.DatabaseError:
        return None


def test_a_commit_does_not_checkpoint_the_log_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "_CHECKPOINT_INTERVAL_S", 3600.0)
    db = tmp_path / "quiet.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (n INTEGER, pad BLOB)")
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # the table, on disk
            for n in range(1200):  # > 1,000 pages: SQLite's default would checkpoint in a commit
                conn.exec_driver_sql(f"INSERT INTO t VALUES ({n}, zeroblob(3000))")
                conn.commit()
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 1200
        # the commits are in the log only; the checkpointer thread (asleep here) copies them
        assert _in_database_file(db, tmp_path / "copy.db") == []
        assert WalCheckpointer.running(str(db)) is not None
    finally:
        engine.dispose()


def test_the_checkpointer_copies_commits_into_the_database_file_then_rests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "_CHECKPOINT_INTERVAL_S", 0.02)
    monkeypatch.setattr(database, "_CHECKPOINTER_IDLE_ROUNDS", 5)
    db = tmp_path / "busy.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert _wait_for(lambda: _in_database_file(db, tmp_path / "copy.db") == [1])
        assert _wait_for(lambda: WalCheckpointer.running(str(db)) is None)  # idle: ended
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
        assert WalCheckpointer.running(str(db)) is not None  # the next write starts one
        assert _wait_for(lambda: _in_database_file(db, tmp_path / "copy.db") == [1, 2])
        with engine.connect() as conn:  # reads and rollbacks start nothing
            conn.exec_driver_sql("INSERT INTO t VALUES (3)")
            conn.rollback()
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
    finally:
        engine.dispose()


@pytest.fixture
def postgres_api(postgres_url: str, tmp_path: Path) -> Iterator[Api]:
    settings = make_settings(tmp_path).model_copy(update={"database_url": postgres_url})
    context = build_context(settings)
    clock = Clock()
    context.clock = clock
    context.provider_factory = lambda db: StubScores(db, {CODE_A})
    context.evaluator_factory = None
    with TestClient(create_app(settings, context=context)) as client:
        yield Api(client, context, clock, tmp_path / "sms.jsonl")


@pytest.mark.postgres
def test_a_journey_on_postgres(postgres_api: Api) -> None:
    api = postgres_api
    owner = api.enterprise("13800138000", CODE_A)
    application = api.client.post(
        "/v1/applications",
        json={"requested_amount": {"amount": "300000"}, "term_months": 12},
        headers=owner,
    ).json()
    assert application["status"] == "evaluated"
    with session_scope(api.context.sessions) as db:
        bank = accounts.create_institution(db, name="Bank", now=api.clock())
        _row, key = apikeys.create_api_key(
            db, institution_id=bank.id, scopes=["view_score"], now=api.clock()
        )
    url = f"/v1/enterprises/{CODE_A}/score?purpose=post_loan_monitoring"
    assert api.client.get(url, headers=bearer(key)).status_code == 403
    consent = api.client.post(
        "/v1/consents",
        json={
            "institution_id": bank.id,
            "purpose": "post_loan_monitoring",
            "scopes": ["view_score"],
            "expires_at": (api.clock() + timedelta(days=90)).isoformat(),
        },
        headers=owner | {"Idempotency-Key": "pg-1"},
    ).json()
    assert api.client.get(url, headers=bearer(key)).json()["grade"] == "BB"
    api.client.delete(f"/v1/consents/{consent['id']}", headers=owner)
    assert api.client.get(url, headers=bearer(key)).status_code == 403
    with session_scope(api.context.sessions) as db:
        result = audit.verify(db)
    assert result.ok
    assert result.rows == 8
