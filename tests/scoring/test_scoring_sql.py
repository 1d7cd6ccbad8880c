"""``ScorecardModel.to_sql`` gives exactly ``credit_score`` on DuckDB, SQLite and PostgreSQL.

The test frame holds every awkward case: NULLs in numerical and categorical columns, the
special code, a category never seen in training, and every bin edge of every numerical item.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from flowbureau.errors import ModelInputError
from flowbureau.scoring import ScorecardModel


def awkward_rows(model: ScorecardModel, X: pd.DataFrame) -> pd.DataFrame:
    """Held-out-like rows plus edge values, NULLs, special codes and unknown categories."""
    base = X.iloc[:200].copy()
    extra = []
    template = X.iloc[0].to_dict()
    for name, item in model.bins_.items():
        if item.kind == "numerical":
            for edge in item.edges:
                extra.append({**template, name: edge})
                extra.append({**template, name: np.nextafter(edge, -np.inf)})
            extra.append({**template, name: np.nan})
            extra.append({**template, name: -999.0})
        else:
            extra.append({**template, name: None})
            extra.append({**template, name: "never-seen-category"})
    rows = pd.concat([base.astype(object), pd.DataFrame(extra).astype(object)], ignore_index=True)
    out = pd.DataFrame(index=rows.index)
    for name in X.columns:
        if name in model.bins_ and model.bins_[name].kind == "categorical":
            out[name] = rows[name].map(lambda v: None if pd.isna(v) else str(v)).astype(object)
        elif pd.api.types.is_numeric_dtype(X[name].dtype):
            out[name] = pd.to_numeric(rows[name]).astype(np.float64)
        else:
            out[name] = rows[name].map(lambda v: None if pd.isna(v) else str(v)).astype(object)
    return out


@pytest.fixture(scope="module")
def case(fitted_scorecard: ScorecardModel, synthetic: tuple[pd.DataFrame, np.ndarray]):
    X, _ = synthetic
    rows = awkward_rows(fitted_scorecard, X)
    return fitted_scorecard, rows, fitted_scorecard.credit_score(rows)


def test_awkward_rows_really_hit_every_special_slot(case) -> None:
    model, rows, _ = case
    points = model.points(rows)
    table = model.points_table_
    for name, item in model.bins_.items():
        kinds = {item.missing_slot}
        kinds |= {item.unknown_slot} if item.kind == "categorical" else set()
        kinds |= {item.special_slot} if item.kind == "numerical" else set()
        for slot in kinds:
            expected = table.loc[(table.feature == name) & (table.slot == slot), "points"]
            assert (points[name] == int(expected.iloc[0])).any(), (name, slot)


def test_duckdb_equals_credit_score(case) -> None:
    duckdb = pytest.importorskip("duckdb")
    model, rows, expected = case
    con = duckdb.connect()
    con.register("frame", rows)
    con.execute("CREATE TABLE applicants AS SELECT * FROM frame")
    result = con.execute(model.to_sql("applicants")).df()
    np.testing.assert_array_equal(result["credit_score"].to_numpy(), expected)
    assert list(result.columns) == [*rows.columns, "credit_score"]


def test_duckdb_enum_columns(case, synthetic) -> None:
    """A pandas category column becomes a DuckDB ENUM; the text cast keeps it working."""
    duckdb = pytest.importorskip("duckdb")
    model, _, _ = case
    X, _ = synthetic
    frame = X.iloc[:100]
    assert isinstance(frame["region"].dtype, pd.CategoricalDtype)
    con = duckdb.connect()
    con.register("frame", frame)
    con.execute("CREATE TABLE t AS SELECT * FROM frame")
    result = con.execute(model.to_sql("t")).df()
    np.testing.assert_array_equal(result["credit_score"].to_numpy(), model.credit_score(frame))


def test_sqlite_equals_credit_score(case) -> None:
    model, rows, expected = case
    con = sqlite3.connect(":memory:")
    rows.to_sql("applicants", con, index=False)
    result = pd.read_sql_query(model.to_sql("applicants"), con)
    np.testing.assert_array_equal(result["credit_score"].to_numpy(), expected)


@pytest.mark.postgres
def test_postgres_equals_credit_score(case, postgres_url: str) -> None:
    import sqlalchemy as sa

    model, rows, expected = case
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            rows.to_sql("applicants", conn, index=False)
            result = pd.read_sql_query(sa.text(model.to_sql("applicants")), conn)
    finally:
        engine.dispose()
    np.testing.assert_array_equal(result["credit_score"].to_numpy(), expected)


def test_german_credit_sql_on_every_row(german) -> None:
    """The benchmark's claim on the real data: SQL scores equal credit_score on every row."""
    X, y = german
    model = ScorecardModel().fit(X.iloc[:700], y[:700])
    test = X.iloc[700:]
    con = sqlite3.connect(":memory:")
    test.to_sql("loans", con, index=False)
    result = pd.read_sql_query(model.to_sql("loans"), con)
    np.testing.assert_array_equal(result["credit_score"].to_numpy(), model.credit_score(test))


def test_quotes_in_names_and_categories_are_escaped() -> None:
    rng = np.random.default_rng(0)
    n = 400
    risky = rng.random(n) < 0.5
    X = pd.DataFrame(
        {
            'odd "name"': np.where(risky, rng.normal(1, 1, n), rng.normal(-1, 1, n)),
            "kind": np.where(risky, "o'brien", "plain"),
        }
    )
    y = (rng.random(n) < np.where(risky, 0.7, 0.2)).astype(int)
    model = ScorecardModel().fit(X, y)
    con = sqlite3.connect(":memory:")
    X.to_sql("t", con, index=False)
    result = pd.read_sql_query(model.to_sql("t"), con)
    np.testing.assert_array_equal(result["credit_score"].to_numpy(), model.credit_score(X))


@pytest.mark.parametrize("bad", ["", "a..b", ".t"])
def test_rejects_bad_table_names(fitted_scorecard: ScorecardModel, bad: str) -> None:
    with pytest.raises(ModelInputError, match="table"):
        fitted_scorecard.to_sql(bad)
