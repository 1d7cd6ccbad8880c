"""Standardisation of names, account numbers and text widths."""

from __future__ import annotations

import pyarrow as pa
import pytest

from flowbureau.cleaning.normalise import (
    fold_width,
    fold_width_sql,
    map_distinct,
    normalise_account_number,
    normalise_name,
)
from flowbureau.storage.duckdb_engine import DuckDBEngine


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("上海 某某 科技有限责任公司", "上海某某科技有限公司"),
        ("上海某某科技有限公司", "上海某某科技有限公司"),
        ("上海某某（集团）股份公司", "上海某某(集团)股份有限公司"),
        ("上海某某(集团)股份有限公司", "上海某某(集团)股份有限公司"),
        ("北京【测试】有限責任公司", "北京(测试)有限公司"),
        ("ＡＢＣ Trading Co., Ltd.", "abctradingcoltd"),
        ("abc trading co ltd", "abctradingcoltd"),
        ("张三·李", "张三李"),
        ("   ", None),
        (None, None),
    ],
)
def test_name_keys(name: str | None, key: str | None) -> None:
    assert normalise_name(name) == key


def test_legal_forms_stay_distinct() -> None:
    # a joint-stock company and a limited company of the same name are different companies
    assert normalise_name("某某股份有限公司") != normalise_name("某某有限公司")


def test_account_numbers() -> None:
    assert normalise_account_number("６２２２ ０２１-０００１") == "62220210001"
    assert normalise_account_number("de89 3704 0044 0532 0130 00") == "DE89370400440532013000"
    assert normalise_account_number(" - ") is None


def test_width_folding_only_touches_full_width_ascii() -> None:
    assert fold_width("ＲＥＴＵＲＮ　退票（１）") == "RETURN 退票(1)"
    assert fold_width("①㈱") == "①㈱"  # NFKC would change these; free text keeps them


def test_sql_width_folding_matches_python() -> None:
    samples = ["ＲＥＴＵＲＮ　退票（１）", "a'b＇ｃ", "plain", "全角：，。"]
    with DuckDBEngine() as engine:
        engine.register("s", pa.table({"t": samples}))
        got = engine.query(f"SELECT {fold_width_sql('t')} AS f FROM s").column("f").to_pylist()
    assert got == [fold_width(s) for s in samples]


def test_map_distinct_calls_once_per_value_and_keeps_nulls() -> None:
    calls: list[str] = []

    def upper(value: str) -> str:
        calls.append(value)
        return value.upper()

    column = pa.chunked_array([["a", None, "b"], ["a", "a"]])
    assert map_distinct(column, upper).to_pylist() == ["A", None, "B", "A", "A"]
    assert sorted(calls) == ["a", "b"]
