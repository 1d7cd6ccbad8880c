"""Service databases with the ledger tables, for the ledger tests (SQLite file or PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa

from flowbureau.storage.database import make_engine, upgrade_database


def migrated_engine(url: str) -> sa.Engine:
    """An engine on ``url`` migrated to the newest revision (which has the ledger tables)."""
    upgrade_database(url)
    return make_engine(url)
