"""The hash-chained audit log: appends chain, verification names the first broken row
(edited, deleted, re-linked, cut off), ``flowbureau audit verify`` exits 1 naming it."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from flowbureau.cli import main
from flowbureau.config import get_settings
from flowbureau.service import audit
from flowbureau.service.models import AuditEntry
from flowbureau.storage.database import (
    make_engine,
    session_factory,
    session_scope,
    upgrade_database,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade_database(url)
    return session_factory(make_engine(url))


def _fill(sessions: sessionmaker[Session], rows: int) -> None:
    with session_scope(sessions) as db:
        for i in range(rows):
            audit.append(
                db,
                audit.AuditRecord(
                    at=T0 + timedelta(seconds=i),
                    actor_kind="user",
                    actor_id=f"u{i}",
                    role="analyst",
                    operation="view_score",
                    resource=f"/v1/enterprises/X/score?i={i}",
                    outcome="allowed",
                    purpose="pre_loan_review",
                    consent_id="c1",
                ),
            )


def _verify(sessions: sessionmaker[Session]) -> audit.AuditVerification:
    with session_scope(sessions) as db:
        return audit.verify(db)


def _sql(sessions: sessionmaker[Session], statement: str) -> None:
    with session_scope(sessions) as db:
        db.execute(sa.text(statement))


def test_appends_form_a_chain(sessions: sessionmaker[Session]) -> None:
    _fill(sessions, 3)
    with session_scope(sessions) as db:
        entries = audit.list_entries(db, limit=10)
    assert [e.seq for e in entries] == [3, 2, 1]
    assert entries[-1].prev_hash == audit.GENESIS_HASH
    assert entries[1].prev_hash == entries[2].hash
    assert entries[0].at == T0 + timedelta(seconds=2)  # aware UTC after the round trip
    assert _verify(sessions) == audit.AuditVerification(rows=3, head_seq=3)


def test_an_edited_row_is_named(sessions: sessionmaker[Session]) -> None:
    _fill(sessions, 5)
    _sql(sessions, "UPDATE audit_log SET outcome = 'denied' WHERE seq = 3")
    result = _verify(sessions)
    assert not result.ok
    assert result.broken_seq == 3
    assert "edited" in str(result.problem)


def test_an_edited_timestamp_is_named(sessions: sessionmaker[Session]) -> None:
    _fill(sessions, 3)
    with session_scope(sessions) as db:
        db.execute(
            sa.update(AuditEntry).where(AuditEntry.seq == 2).values(at=T0 + timedelta(days=1))
        )
    assert _verify(sessions).broken_seq == 2


def test_a_deleted_row_is_named(sessions: sessionmaker[Session]) -> None:
    _fill(sessions, 5)
    _sql(sessions, "DELETE FROM audit_log WHERE seq = 2")
    result = _verify(sessions)
    assert result.broken_seq == 2
    assert "missing" in str(result.problem)


def test_rows_cut_off_the_end_are_detected(sessions: sessionmaker[Session]) -> None:
    _fill(sessions, 5)
    _sql(sessions, "DELETE FROM audit_log WHERE seq >= 4")
    result = _verify(sessions)
    assert result.broken_seq == 4
    assert "head says 5 rows" in str(result.problem)


def test_a_rehashed_row_breaks_the_next_link(sessions: sessionmaker[Session]) -> None:
    """An editor who also recomputes the edited row's hash is caught by the next row."""
    _fill(sessions, 4)
    with session_scope(sessions) as db:
        entry = db.get_one(AuditEntry, 2)
        entry.outcome = "denied"
        fields = {name: getattr(entry, name) for name in audit._HASHED_FIELDS}
        entry.hash = audit.entry_hash(fields)
    result = _verify(sessions)
    assert result.broken_seq == 3
    assert "does not link" in str(result.problem)


def test_cli_verify_exits_1_naming_the_row(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = get_settings()
    url = settings.resolved_database_url
    upgrade_database(url)
    sessions = session_factory(make_engine(url))
    _fill(sessions, 4)
    monkeypatch.setattr(sys, "argv", ["flowbureau", "audit", "verify"])
    main()  # success returns normally
    assert "intact: 4 rows" in capsys.readouterr().out
    _sql(sessions, "UPDATE audit_log SET resource = '/v1/elsewhere' WHERE seq = 3")
    with pytest.raises(SystemExit) as broken:
        main()
    assert broken.value.code == 1
    assert "audit log broken at row 3" in capsys.readouterr().err
