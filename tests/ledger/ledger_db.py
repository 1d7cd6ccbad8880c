"""Service databases with the ledger tables, for the ledger tests (SQLite file or PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa

import flowbureau.ledger.models  # noqa: F401  (registers the ledger tables)
from flowbureau.storage.database import Base, make_engine, upgrade_database


def migrated_engine(url: str) -> sa.Engine:
    """An engine on ``url`` migrated to the newest revision (which has the ledger tables)."""
    upgrade_database(url)
    engine = make_engine(url)
    # INTERIM until the 0004_ledger revision lands with MODEL_MODULES (storage/ is frozen now)
    Base.metadata.create_all(
        engine, tables=[t for t in Base.metadata.sorted_tables if t.name.startswith("ledger_")]
    )
    return engine
