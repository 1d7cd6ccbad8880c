"""The embedded DuckDB backend of :class:`~flowbureau.storage.engine.Engine` (the default).

Rules:
- Each engine is its own in-memory DuckDB database: nothing is shared between processes but
  the Parquet files, so any number of readers can work beside one writer.
- Each engine spills to its own temporary directory (created by DuckDB only when needed,
  removed on close), so concurrent processes never share spill files.
- Sessions run in UTC (``TimeZone='UTC'``): ``TIMESTAMPTZ`` values come back as UTC.
- :meth:`DuckDBEngine.restrict_to` turns the connection into a sandbox for user SQL: only files
  under the given directories can be read, external access is disabled, and the configuration
  is locked so a query cannot undo it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from flowbureau.storage.engine import Engine, WrittenFile

__all__ = ["DuckDBEngine", "sql_string"]

_PARQUET = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"
"""zstd level 1: about as fast to write as snappy, a few per cent larger than level 3."""


def sql_string(value: str) -> str:
    """Quote ``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


class DuckDBEngine(Engine):
    """An in-memory DuckDB connection with the warehouse hooks."""

    name: ClassVar[str] = "duckdb"

    def __init__(
        self,
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        temp_directory: Path | None = None,
    ) -> None:
        self.connection = duckdb.connect(":memory:")
        self.connection.execute("SET TimeZone = 'UTC'")
        if memory_limit:
            self.connection.execute(f"SET memory_limit = {sql_string(memory_limit)}")
        if threads:
            self.connection.execute(f"SET threads = {int(threads)}")
        if temp_directory is None:
            temp_directory = Path(tempfile.gettempdir()) / (
                f"flowbureau-duckdb-{os.getpid()}-{secrets.token_hex(4)}"
            )
        self._temp_directory = temp_directory
        self.connection.execute(f"SET temp_directory = {sql_string(str(temp_directory))}")

    def restrict_to(self, directories: Sequence[Path]) -> None:
        """Allow file reads only under ``directories``; disable external access; lock settings."""
        allowed = ", ".join(sql_string(str(d.resolve()) + "/") for d in directories)
        self.connection.execute(f"SET allowed_directories = [{allowed}]")
        self.connection.execute("SET enable_external_access = false")
        self.connection.execute("SET lock_configuration = true")

    def register(self, name: str, table: pa.Table) -> None:
        """Expose ``table`` as relation ``name`` without copying it."""
        self.connection.register(name, table)

    def unregister(self, name: str) -> None:
        """Drop a registered Arrow relation."""
        self.connection.unregister(name)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run ``sql`` for its effect."""
        self.connection.execute(sql, list(params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run ``sql`` and return an Arrow table."""
        relation = self.connection.sql(sql, params=list(params) or None)
        return pa.table({}) if relation is None else relation.to_arrow_table()

    def create_parquet_view(self, name: str, paths: Sequence[Path], schema: pa.Schema) -> None:
        """View ``name`` over ``paths`` (or over an empty table of ``schema`` if none)."""
        if paths:
            listed = ", ".join(sql_string(str(p)) for p in paths)
            source = f"read_parquet([{listed}])"
        else:
            empty = f"__empty_{name}"
            self.connection.register(empty, schema.empty_table())
            source = empty
        columns = ", ".join(f'"{f.name}"' for f in schema)
        self.connection.execute(
            f'CREATE OR REPLACE VIEW "{name}" AS SELECT {columns} FROM {source}'
        )

    def create_view(self, name: str, sql: str) -> None:
        """View ``name`` as ``sql``."""
        self.connection.execute(f'CREATE OR REPLACE VIEW "{name}" AS {sql}')

    def write_parquet(
        self, sql: str, directory: Path, *, partition_by: str | None = None
    ) -> list[WrittenFile]:
        """``COPY (sql) TO directory`` as zstd (level 1) Parquet, optionally hive-partitioned."""
        directory.mkdir(parents=True, exist_ok=True)
        if partition_by is None:
            target = directory / "part-0.parquet"
            self.connection.execute(f"COPY ({sql}) TO {sql_string(str(target))} ({_PARQUET})")
            rows = pq.read_metadata(target).num_rows
            if rows == 0:
                target.unlink()
                return []
            return [WrittenFile(target, rows)]
        # One plain COPY per partition value: faster than COPY ... PARTITION_BY for the few
        # (tens of) values a batch has, and the file names are ours.
        values = self.connection.execute(
            f'SELECT DISTINCT "{partition_by}" FROM ({sql}) ORDER BY 1'
        ).fetchall()
        written: list[WrittenFile] = []
        for (value,) in values:
            target = directory / f"{partition_by}={value}" / "part-0.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            self.connection.execute(
                f'COPY (SELECT * EXCLUDE ("{partition_by}") FROM ({sql}) '
                f'WHERE "{partition_by}" = {sql_string(str(value))}) '
                f"TO {sql_string(str(target))} ({_PARQUET})"
            )
            written.append(WrittenFile(target, pq.read_metadata(target).num_rows, str(value)))
        return written

    def close(self) -> None:
        """Close the DuckDB connection and remove its spill directory."""
        self.connection.close()
        shutil.rmtree(self._temp_directory, ignore_errors=True)
