"""The Apache Spark backend of :class:`~flowbureau.storage.engine.Engine` (the ``spark`` extra).

Rules:
- Algorithms write DuckDB's dialect; this backend translates every statement with sqlglot
  (``read="duckdb", write="spark"``) before Spark runs it, as splink does. SQL that sqlglot
  cannot translate faithfully is a bug of the algorithm's SQL, not something to patch here.
- One engine is one Spark session (``SparkSession.newSession()`` over the process's shared
  ``SparkContext``): relations registered by one engine are invisible to another. Closing an
  engine drops its relations; the ``SparkContext`` stays up for the next engine (a local
  context takes seconds to start).
- Sessions run in UTC (``spark.sql.session.timeZone``), like the DuckDB backend, so timestamps
  mean the same instants on both and literals are read as UTC.
- Sessions run without ANSI mode (``spark.sql.ansi.enabled=false``), like DuckDB: a statistic
  of constant data (``corr``) is NULL rather than a division-by-zero error, even where the SQL
  discards it with CASE (Spark evaluates the aggregate first).
- Without a cluster URL (``master``) Spark runs in local mode with ``threads`` cores and without
  adaptive query execution, whose re-planning of every shuffle stage costs more than it saves
  on one machine (the feature queries have dozens of small stages).
- :meth:`SparkEngine.restrict_to` is refused: user SQL is sandboxed on DuckDB only.
- pyspark is imported when an engine is created, never at module import time of the package.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from flowbureau.errors import ConfigurationError
from flowbureau.storage.engine import Engine, WrittenFile

__all__ = ["SparkEngine", "to_spark_sql"]

_LOCK = threading.Lock()


def to_spark_sql(sql: str) -> str:
    """Translate one DuckDB statement to Spark SQL (``AS MATERIALIZED`` CTE hints dropped)."""
    import sqlglot
    from sqlglot import expressions as exp

    tree = sqlglot.parse_one(sql, read="duckdb")
    for cte in tree.find_all(exp.CTE):
        cte.set("materialized", None)
    return tree.sql(dialect="spark")


class SparkEngine(Engine):
    """A Spark session with the warehouse hooks (local mode unless ``master`` is given)."""

    name: ClassVar[str] = "spark"

    def __init__(
        self,
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        master: str | None = None,
    ) -> None:
        from pyspark.sql import SparkSession

        session_conf = {
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.shuffle.partitions": str(threads or 4),
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.ansi.enabled": "false",
        }
        if master is None:
            session_conf["spark.sql.adaptive.enabled"] = "false"
        with _LOCK:
            builder = SparkSession.builder.appName("flowbureau").master(
                master or f"local[{threads or '*'}]"
            )
            builder = builder.config("spark.ui.enabled", "false")
            if memory_limit:
                builder = builder.config("spark.driver.memory", _jvm_memory(memory_limit))
            root = builder.getOrCreate()
            root.sparkContext.setLogLevel("ERROR")
        self.session = root.newSession()
        for key, value in session_conf.items():
            self.session.conf.set(key, value)
        self._views: set[str] = set()

    def register(self, name: str, table: pa.Table) -> None:
        """Expose ``table`` as temporary view ``name``."""
        frame = self.session.createDataFrame(table)
        frame.createOrReplaceTempView(name)
        self._views.add(name)

    def unregister(self, name: str) -> None:
        """Drop temporary view ``name`` (no error if absent)."""
        self.session.catalog.dropTempView(name)
        self._views.discard(name)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a translated statement for its effect."""
        self.session.sql(to_spark_sql(sql), args=list(params) or None).collect()

    def query(self, sql: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run a translated query and return an Arrow table."""
        frame = self.session.sql(to_spark_sql(sql), args=list(params) or None)
        return frame.toArrow()

    def create_parquet_view(self, name: str, paths: Sequence[Path], schema: pa.Schema) -> None:
        """View ``name`` over ``paths`` (or over an empty table of ``schema`` if none)."""
        if paths:
            frame = self.session.read.parquet(*(str(p) for p in paths))
            frame = frame.select(*(f"`{f.name}`" for f in schema))
        else:
            frame = self.session.createDataFrame(schema.empty_table())
        frame.createOrReplaceTempView(name)
        self._views.add(name)

    def create_view(self, name: str, sql: str) -> None:
        """View ``name`` as the translated ``sql``."""
        self.session.sql(to_spark_sql(sql)).createOrReplaceTempView(name)
        self._views.add(name)

    def write_parquet(
        self, sql: str, directory: Path, *, partition_by: str | None = None
    ) -> list[WrittenFile]:
        """Write the query's rows as Parquet under ``directory`` (one file per partition)."""
        frame = self.session.sql(to_spark_sql(sql))
        target = directory / ".spark-output"
        writer = (
            frame.repartition(partition_by) if partition_by else frame.coalesce(1)
        ).write.mode("overwrite")
        if partition_by:
            writer = writer.partitionBy(partition_by)
        writer.parquet(str(target))
        written: list[WrittenFile] = []
        pattern = f"{partition_by}=*/*.parquet" if partition_by else "*.parquet"
        for index, path in enumerate(sorted(target.glob(pattern))):
            rows = pq.read_metadata(path).num_rows
            if rows == 0:
                continue
            value = path.parent.name.split("=", 1)[1] if partition_by else None
            final_dir = directory / path.parent.name if partition_by else directory
            final_dir.mkdir(parents=True, exist_ok=True)
            final = final_dir / f"part-{index}.parquet"
            path.replace(final)
            written.append(WrittenFile(final, rows, value))
        shutil.rmtree(target, ignore_errors=True)
        return written

    def restrict_to(self, directories: Sequence[Path]) -> None:
        """Refused: sandboxed user SQL runs on the DuckDB backend only."""
        raise ConfigurationError("the spark engine cannot sandbox user SQL; use duckdb")

    def close(self) -> None:
        """Drop this engine's temporary views (the shared SparkContext stays up)."""
        for name in sorted(self._views):
            self.session.catalog.dropTempView(name)
        self._views.clear()


def _jvm_memory(limit: str) -> str:
    """``3GB`` / ``512MB`` / ``1.5GiB`` (DuckDB's spelling) -> megabytes for the JVM (``3072m``)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt])i?b?\s*", limit.lower())
    if match is None:
        raise ConfigurationError(f"memory limit {limit!r} is not like '3GB' or '512MB'")
    megabytes = float(match.group(1)) * 1024.0 ** ("kmgt".index(match.group(2)) - 1)
    return f"{max(1, int(megabytes))}m"
