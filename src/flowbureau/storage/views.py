"""The warehouse's relations, as views over the Parquet files one manifest lists.

Rules:
- Every relation is a view, created per connection from a manifest snapshot: a reader sees
  exactly one committed version for the life of its connection, whatever a writer does.
- Tables (one Parquet file per batch, per bank, per month for transactions):
  ``stored_transactions``, ``statements``, ``quarantine``, ``account_records``, ``sources``,
  ``duplicates``; the vault is not a view (:mod:`flowbureau.storage.vault` reads it).
- Derived views: ``transactions`` (stored rows + annotations, :data:`TRANSACTION_SCHEMA`),
  ``accounts`` (latest row per account, register rows before statement facts), and one view
  per annotation (``payment_links``, ``outliers``, ...).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pyarrow as pa

from flowbureau.schema import (
    ACCOUNT_SCHEMA,
    DUPLICATE_SCHEMA,
    QUARANTINE_SCHEMA,
    SOURCE_FILE_SCHEMA,
    STATEMENT_SCHEMA,
    STORED_TRANSACTION_SCHEMA,
    TRANSACTION_SCHEMA,
)
from flowbureau.storage.annotations import ANNOTATIONS, view_column_sources
from flowbureau.storage.engine import Engine
from flowbureau.storage.manifest import Manifest

__all__ = ["TABLES", "VIEW_NAMES", "create_views"]

TABLES: dict[str, pa.Schema] = {
    "transactions": STORED_TRANSACTION_SCHEMA,
    "statements": STATEMENT_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    "accounts": ACCOUNT_SCHEMA,
    "sources": SOURCE_FILE_SCHEMA,
    "duplicates": DUPLICATE_SCHEMA,
}
"""Warehouse tables (manifest key -> schema). Their views are named by :data:`_TABLE_VIEWS`."""

_TABLE_VIEWS = {
    "transactions": "stored_transactions",
    "statements": "statements",
    "quarantine": "quarantine",
    "accounts": "account_records",
    "sources": "sources",
    "duplicates": "duplicates",
}

VIEW_NAMES: tuple[str, ...] = (
    *_TABLE_VIEWS.values(),
    "transactions",
    "accounts",
    *ANNOTATIONS,
)
"""Every relation a warehouse connection offers."""

_SQL_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
}


def create_views(
    engine: Engine, root: Path, manifest: Manifest, changed: Collection[str] | None = None
) -> None:
    """Create every view of :data:`VIEW_NAMES` on ``engine`` for ``manifest``'s files.

    With ``changed`` (table or annotation names whose files changed since the views were last
    created on this engine), only their views and the derived views over them are recreated:
    binding a view over many Parquet files is not free, and a writer refreshes after each batch.
    """
    for table, schema in TABLES.items():
        if changed is None or table in changed:
            paths = [root / f.path for f in manifest.files(table)]
            engine.create_parquet_view(_TABLE_VIEWS[table], paths, schema)
    for name, spec in ANNOTATIONS.items():
        if changed is None or name in changed:
            paths = [root / f.path for f in manifest.annotation_files(name)]
            engine.create_parquet_view(name, paths, spec.schema)
    if changed is None or "accounts" in changed:
        engine.create_view(
            "accounts",
            "SELECT * FROM account_records QUALIFY row_number() OVER (PARTITION BY account_id "
            "ORDER BY source = 'register' DESC, recorded_at DESC, ingest_id DESC) = 1",
        )
    if changed is None or "transactions" in changed or any(n in changed for n in ANNOTATIONS):
        engine.create_view("transactions", _transactions_sql(manifest))


def _transactions_sql(manifest: Manifest) -> str:
    sources = view_column_sources()
    present = {name for name in ANNOTATIONS if manifest.annotation_files(name)}
    joins: list[str] = []
    aliases: dict[str, str] = {}
    for index, name in enumerate(sorted(present)):
        alias = f"a{index}"
        aliases[name] = alias
        joins.append(f'LEFT JOIN "{name}" {alias} ON {alias}.tx_id = s.tx_id')
    flag_sources = [aliases[n] for n in sorted(present) if ANNOTATIONS[n].adds_flags]
    columns: list[str] = []
    for field in TRANSACTION_SCHEMA:
        if field.name == "quality_flags" and flag_sources:
            expression = "s.quality_flags"
            for alias in flag_sources:
                extra = f"coalesce({alias}.quality_flags, []::VARCHAR[])"
                expression = f"list_concat({expression}, {extra})"
            columns.append(f"{expression} AS quality_flags")
        elif field.name in STORED_TRANSACTION_SCHEMA.names:
            columns.append(f's."{field.name}"')
        elif sources[field.name] in aliases:
            columns.append(f'{aliases[sources[field.name]]}."{field.name}"')
        else:
            columns.append(f'CAST(NULL AS {_SQL_TYPES[field.type]}) AS "{field.name}"')
    return f"SELECT {', '.join(columns)} FROM stored_transactions s {' '.join(joins)}"
