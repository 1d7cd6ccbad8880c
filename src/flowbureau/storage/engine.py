"""The warehouse engine abstraction: a few hooks per SQL backend (splink style).

Rules:
- Algorithms (cleaning, features, reports) produce SQL text in DuckDB's dialect and Arrow
  tables; they never hold an engine. The pipeline or a service passes their SQL to an
  :class:`Engine`, which owns the connection. A backend whose dialect differs translates in
  its hooks (sqlglot does DuckDB -> Spark SQL, as splink does).
- An engine sees the warehouse only through views over committed Parquet files (see
  :mod:`flowbureau.storage.views`); it never decides what is committed.
- Backends are registered by dotted path in :data:`ENGINES` and imported lazily, so an optional
  backend (PySpark) costs nothing until it is asked for. DuckDB, embedded, is the default.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import pyarrow as pa

from flowbureau.errors import ConfigurationError

__all__ = ["ENGINES", "Engine", "WrittenFile", "create_engine"]


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """A Parquet file an engine wrote: its path, row count and partition value (if any)."""

    path: Path
    rows: int
    partition: str | None = None


class Engine(ABC):
    """Runs SQL over Arrow tables and Parquet files on one backend."""

    name: ClassVar[str]
    """Key of the backend in :data:`ENGINES`."""

    @abstractmethod
    def register(self, name: str, table: pa.Table) -> None:
        """Expose an Arrow table as relation ``name`` (replacing any relation of that name)."""

    @abstractmethod
    def unregister(self, name: str) -> None:
        """Drop relation ``name`` created by :meth:`register` (no error if absent)."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a statement for its effect (``CREATE TEMP TABLE ... AS``, ``DROP``)."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run a query and return its result as an Arrow table."""

    @abstractmethod
    def create_parquet_view(self, name: str, paths: Sequence[Path], schema: pa.Schema) -> None:
        """Create (or replace) view ``name`` over ``paths``, all with ``schema`` (may be empty)."""

    @abstractmethod
    def create_view(self, name: str, sql: str) -> None:
        """Create (or replace) view ``name`` as ``sql``."""

    @abstractmethod
    def write_parquet(
        self, sql: str, directory: Path, *, partition_by: str | None = None
    ) -> list[WrittenFile]:
        """Write the result of ``sql`` as Parquet files under ``directory``.

        With ``partition_by`` the rows are split by that column's value (which is not written
        into the files); each returned file carries its value. Empty results write nothing.
        """

    @abstractmethod
    def restrict_to(self, directories: Sequence[Path]) -> None:
        """Sandbox the connection for user SQL: reads only under ``directories``, no other
        file or network access, settings frozen. Irreversible for this engine."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


ENGINES: dict[str, str] = {
    "duckdb": "flowbureau.storage.duckdb_engine:DuckDBEngine",
    "spark": "flowbureau.storage.spark_engine:SparkEngine",
}
"""Backend name -> ``module:class``; a backend module is imported only when first used."""


def create_engine(name: str = "duckdb", **options: Any) -> Engine:
    """Instantiate backend ``name`` with ``options`` (see the backend's constructor)."""
    try:
        target = ENGINES[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown warehouse engine {name!r}; available: {', '.join(sorted(ENGINES))}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"warehouse engine {name!r} needs an optional dependency: {exc}"
        ) from None
    engine_class: type[Engine] = getattr(module, class_name)
    return engine_class(**options)
