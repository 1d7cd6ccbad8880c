"""Robust per-account outliers (median / MAD of log-amounts, per direction)."""

from __future__ import annotations

import pyarrow as pa

from flowbureau.cleaning.outliers import outliers_sql
from flowbureau.storage.duckdb_engine import DuckDBEngine


def flagged(
    rows: list[tuple[str, str, int]], *, min_history: int = 20, tx_type: str = "rent"
) -> dict[str, float]:
    table = pa.table(
        {
            "tx_id": [r[0] for r in rows],
            "bank_id": ["b"] * len(rows),
            "account_id": [r[1] for r in rows],
            "tx_type": [tx_type] * len(rows),
            "amount_minor": pa.array([r[2] for r in rows], pa.int64()),
        }
    )
    with DuckDBEngine() as engine:
        engine.register("t", table)
        out = engine.query(outliers_sql("t", bank_id="b", min_history=min_history, threshold=3.5))
    assert out.column("quality_flags").to_pylist() == [["outlier"]] * out.num_rows
    return dict(
        zip(out.column("tx_id").to_pylist(), out.column("robust_z").to_pylist(), strict=True)
    )


def history(account: str, n: int, sign: int = -1) -> list[tuple[str, str, int]]:
    # amounts spread between 1,000.00 and 3,000.00
    return [(f"{account}-{i}", account, sign * (100_000 + 20_000 * (i % 11))) for i in range(n)]


def test_a_huge_payment_is_flagged_and_ordinary_ones_are_not() -> None:
    rows = [*history("a", 40), ("a-huge", "a", -500_000_000)]
    result = flagged(rows)
    assert list(result) == ["a-huge"]
    assert result["a-huge"] > 3.5


def test_too_little_history_judges_nothing() -> None:
    rows = [*history("a", 10), ("a-huge", "a", -500_000_000)]
    assert flagged(rows) == {}


def test_directions_are_judged_separately() -> None:
    # a large credit among small debits is not an outlier: credits have their own history
    rows = [*history("a", 40), *history("a-in", 25, sign=1), ("a-big-credit", "a", 300_000)]
    assert flagged([(t, "a", amt) for t, _, amt in rows]) == {}


def test_only_unusually_large_amounts_are_flagged() -> None:
    rows = [*history("a", 40), ("a-tiny", "a", -1)]
    assert flagged(rows) == {}


def test_categories_are_judged_separately() -> None:
    rent = [(f"r{i}", "a", -1_000_000) for i in range(10)] + [("r-x", "a", -1_100_000)]
    fees = [(f"f{i}", "a", -(100 + i % 3)) for i in range(30)]
    mixed = pa.table(
        {
            "tx_id": [r[0] for r in rent + fees],
            "bank_id": ["b"] * 41,
            "account_id": ["a"] * 41,
            "tx_type": ["rent"] * 11 + ["fees"] * 30,
            "amount_minor": pa.array([r[2] for r in rent + fees], pa.int64()),
        }
    )
    with DuckDBEngine() as engine:
        engine.register("t", mixed)
        out = engine.query(outliers_sql("t", min_history=10, threshold=3.5))
    # mixed into one group, every rent payment would tower over the fees
    assert out.num_rows == 0


def test_constant_amounts_have_no_outliers() -> None:
    rows = [(f"r{i}", "a", -100_000) for i in range(30)]
    assert flagged(rows) == {}
