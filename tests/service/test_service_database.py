"""The service database: migrations match the models (SQLite and PostgreSQL), timestamps stay
aware UTC, SQLite enforces foreign keys; a whole journey runs on PostgreSQL too."""

from __future__ import annotations

from collections.abc import Iterator
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
from flowbureau.storage.database import (
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
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    # synchronous: 1 = NORMAL (2 = FULL, the SQLite default, fsyncs the WAL on every commit)
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 10000,
    }


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
