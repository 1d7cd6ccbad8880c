"""User SQL is read-only and sandboxed to the warehouse's data files."""

from __future__ import annotations

from pathlib import Path

import pytest
from warehouse_rows import stage_transactions, transaction, transactions

from flowbureau.errors import InputError
from flowbureau.storage import vault
from flowbureau.storage.query import check_read_only, sql
from flowbureau.storage.warehouse import Warehouse


@pytest.fixture
def filled(warehouse: Warehouse) -> Warehouse:
    with warehouse.writer() as writer:
        stage_transactions(
            writer, transactions(transaction("t1"), transaction("t2", amount_minor=-50))
        )
        writer.publish()
    vault.put({"p" * 32: "6222000011112222"}, warehouse=warehouse)
    return warehouse


@pytest.mark.parametrize(
    "query",
    [
        "SELECT sum(amount_minor) AS s FROM transactions",
        "WITH t AS (SELECT * FROM transactions) SELECT count(*) FROM t",
        "FROM transactions SELECT tx_id",
        "DESCRIBE transactions",
        "SHOW TABLES",
        "SUMMARIZE transactions",
        "EXPLAIN SELECT * FROM transactions",
    ],
)
def test_read_only_statements_run(filled: Warehouse, query: str) -> None:
    assert sql(query, warehouse=filled).num_rows >= 1


@pytest.mark.parametrize(
    "query",
    [
        "COPY transactions TO '/tmp/out.csv'",
        "ATTACH '/tmp/x.duckdb'",
        "SET enable_external_access = true",
        "PRAGMA version",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO transactions SELECT * FROM transactions",
        "DROP VIEW transactions",
        "CALL pragma_version()",
        "SELECT 1; DROP VIEW transactions",
        "INSTALL httpfs",
    ],
)
def test_anything_else_is_refused_before_running(query: str) -> None:
    with pytest.raises(InputError, match="query"):
        check_read_only(query)


def test_files_outside_the_warehouse_data_cannot_be_read(filled: Warehouse, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n", "utf-8")
    with pytest.raises(InputError, match="Permission"):
        sql(f"SELECT * FROM read_csv('{secret}')", warehouse=filled)
    with pytest.raises(InputError, match="Permission"):
        sql(f"SELECT * FROM read_parquet('{filled.root}/vault/*.parquet')", warehouse=filled)


def test_a_bad_query_names_the_problem(filled: Warehouse) -> None:
    with pytest.raises(InputError, match="no_such_table"):
        sql("SELECT * FROM no_such_table", warehouse=filled)
