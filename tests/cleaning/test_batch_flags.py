"""The quality-flag expression of the batch cleaning SQL (flowbureau.cleaning.batch)."""

from __future__ import annotations

from itertools import product

import duckdb

from flowbureau.cleaning.batch import _flags_sql
from flowbureau.cleaning.flags import QualityFlag

FLAGS = (
    (QualityFlag.ENTERPRISE_UNKNOWN, "o.a"),
    (QualityFlag.TIMEZONE_ASSUMED, "o.b"),
    (QualityFlag.RETURNED_PAYMENT, "o.c"),
    (QualityFlag.BALANCE_BREAK, "o.d"),
    (QualityFlag.STATEMENT_UNRECONCILED, "o.e"),
)


def test_flags_are_the_true_conditions_in_order_and_null_counts_as_false() -> None:
    combos = list(product((True, False, None), repeat=len(FLAGS)))
    values = ", ".join(
        "(" + ", ".join("NULL" if v is None else str(v).upper() for v in combo) + ")"
        for combo in combos
    )
    got = duckdb.sql(
        f"SELECT {_flags_sql(FLAGS)} AS f FROM (VALUES {values}) o(a, b, c, d, e)"
    ).fetchall()
    expected = [
        [flag.value for (flag, _), v in zip(FLAGS, combo, strict=True) if v] for combo in combos
    ]
    assert [row[0] for row in got] == expected
    assert got[0][0] == [flag.value for flag, _ in FLAGS]  # all five, in the given order
