"""Read-only SQL over the warehouse views, for users (``flowbureau sql``).

Rules:
- Exactly one statement, and only a query: ``SELECT`` / ``WITH`` / ``FROM`` / ``DESCRIBE`` /
  ``SHOW`` / ``SUMMARIZE`` (DuckDB parses all of these as SELECT) or ``EXPLAIN``. Anything
  else (``COPY``, ``ATTACH``, ``SET``, ``PRAGMA``, ``INSERT``, ``CREATE``, ``CALL``, ...) is
  refused before it runs.
- The query runs on a fresh in-memory connection holding only views over one committed
  snapshot, sandboxed: it can read no file outside the warehouse's ``data/`` directory (so
  neither the vault nor the host's files), has no external access, and cannot change
  settings. Even a statement that slipped past the first check could write nothing.
- A bad query is an :class:`~flowbureau.errors.InputError` on field ``query``.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from flowbureau.errors import InputError
from flowbureau.storage.warehouse import Warehouse

__all__ = ["check_read_only", "sql"]

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def check_read_only(query: str) -> None:
    """Raise :class:`InputError` unless ``query`` is exactly one read-only statement."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise InputError(f"not valid SQL: {exc}", field="query") from None
    if len(statements) != 1:
        raise InputError(f"expected exactly one statement, got {len(statements)}", field="query")
    kind = statements[0].type
    if kind not in _ALLOWED:
        raise InputError(
            f"only read-only queries are allowed (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, "
            f"EXPLAIN); got {kind.name}",
            field="query",
        )


def sql(query: str, *, warehouse: Warehouse | None = None) -> pa.Table:
    """Run one read-only query over the warehouse views and return the rows as Arrow."""
    check_read_only(query)
    warehouse = warehouse or Warehouse.default()
    with warehouse.connect(sandbox=True) as engine:
        try:
            return engine.query(query)
        except duckdb.Error as exc:
            raise InputError(str(exc).splitlines()[0], field="query") from None
