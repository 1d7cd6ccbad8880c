"""The same feature definitions on DuckDB and on Spark (local mode) give the same numbers."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from scoring_data import contribute, planted_consortium

from flowbureau.errors import ConfigurationError
from flowbureau.scoring.assembly import CashflowSource, PublicRecordsSource, assemble_features
from flowbureau.scoring.external import ExternalData
from flowbureau.storage.spark_engine import to_spark_sql
from flowbureau.storage.warehouse import Warehouse


def test_translation_drops_duckdb_only_hints() -> None:
    sql = to_spark_sql("WITH a AS MATERIALIZED (SELECT 1 AS x) SELECT * FROM a")
    assert "MATERIALIZED" not in sql.upper()


@pytest.mark.spark
@pytest.mark.slow
def test_duckdb_and_spark_compute_the_same_features(tmp_path: Path) -> None:
    consortium = planted_consortium(8, months=15, seed=5)
    warehouse = Warehouse.default()
    contribute(warehouse, consortium.rows)
    first = consortium.enterprises[0]
    external = ExternalData(
        records={
            "penalties": pa.table(
                {
                    "record_id": ["p1", "p2"],
                    "credit_code": [first, first],
                    "date": [date(2023, 11, 1), date(2024, 2, 1)],
                    "authority": ["x", "x"],
                    "severity": ["fine", "suspension"],
                    "fine_minor": [5000, None],
                },
                schema=pa.schema(
                    [
                        ("record_id", pa.string()),
                        ("credit_code", pa.string()),
                        ("date", pa.date32()),
                        ("authority", pa.string()),
                        ("severity", pa.string()),
                        ("fine_minor", pa.int64()),
                    ]
                ),
            )
        }
    )
    sources = [CashflowSource(), PublicRecordsSource(external)]
    as_of = date(2024, 3, 15)
    with warehouse.connect() as duck:
        expected = assemble_features(duck, as_of, sources)
    with warehouse.connect(engine="spark") as spark:
        actual = assemble_features(spark, as_of, sources)
        written = spark.write_parquet(
            "SELECT bank_id, count(*) AS n FROM transactions GROUP BY bank_id",
            tmp_path / "by-bank",
            partition_by="bank_id",
        )
        single = spark.write_parquet("SELECT 1 AS x", tmp_path / "one")
        with pytest.raises(ConfigurationError):
            spark.restrict_to([tmp_path])
    banks = sorted({r["bank_id"] for r in consortium.rows})
    assert sorted(f.partition for f in written) == banks
    assert all(f.rows == 1 and f.path.is_file() for f in written)
    assert [f.rows for f in single] == [1]
    assert len(expected.features) == 8
    assert expected.features.loc[first, "penalties_12m"] == 2
    pd.testing.assert_frame_equal(
        expected.features.sort_index(),
        actual.features.sort_index(),
        check_dtype=False,
        rtol=1e-9,
    )
    pd.testing.assert_frame_equal(
        expected.summary.sort_index().astype(str), actual.summary.sort_index().astype(str)
    )
