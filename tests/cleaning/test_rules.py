"""Categorisation rules: data files compiled to one SQL CASE, user rules first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from flowbureau.cleaning.normalise import fold_width, normalise_name
from flowbureau.cleaning.rules import categorise_sql, load_rules, returned_sql, rule_files
from flowbureau.errors import InputError
from flowbureau.storage.duckdb_engine import DuckDBEngine


def categorise(
    rows: Sequence[tuple[str, int, str | None, bool]], user: list[Path] | None = None
) -> list[tuple[str, bool]]:
    """``(description, amount, counterparty, own account)`` -> ``(tx_type, returned)``."""
    rules = load_rules(user or [])
    table = pa.table(
        {
            "desc_fold": [fold_width(d).lower() for d, _, _, _ in rows],
            "amount_minor": pa.array([a for _, a, _, _ in rows], pa.int64()),
            "counterparty_name_norm": [normalise_name(c) for _, _, c, _ in rows],
            "tx_code": pa.array([None] * len(rows), pa.string()),
            "cp_is_own": [o for _, _, _, o in rows],
        }
    )
    with DuckDBEngine() as engine:
        engine.register("r", table)
        out = engine.query(
            f"SELECT {categorise_sql(rules)} AS t, {returned_sql(rules)} AS r FROM r"
        ).to_pylist()
    return [(row["t"], row["r"]) for row in out]


@pytest.mark.parametrize(
    ("description", "amount", "counterparty", "own", "expected"),
    [
        ("支付货款", -100, "上海某某有限公司", False, "supplier_payment"),
        ("货款", 100, "上海某某有限公司", False, "sales_receipt"),
        ("ＰＡＹＭＥＮＴ　ＦＯＲ　ＧＯＯＤＳ", 100, None, False, "sales_receipt"),
        ("代发工资", -100, None, False, "payroll"),
        ("增值税", -100, "国家税务总局上海市税务局", False, "tax"),
        ("技术服务费", -100, None, False, "supplier_payment"),
        ("短信服务费", -100, None, False, "fees"),
        ("电费", -100, None, False, "utilities"),
        ("往来款", -100, "国网上海市电力公司", False, "utilities"),
        ("厂房租金", -100, None, False, "rent"),
        ("借款", 100, "重庆市某某网络小额贷款有限公司", False, "online_lending"),
        ("借款", 100, "张三", False, "other"),
        ("贷款发放", 100, None, False, "loan_disbursement"),
        ("归还贷款本金", -100, None, False, "loan_repayment"),
        ("结息", 100, None, False, "interest"),
        ("现金支取", -100, None, False, "cash"),
        ("往来款", -100, "某某有限公司", True, "internal_transfer"),
        ("资金归集", 100, None, False, "internal_transfer"),
        ("退汇 账户已销户", 100, None, False, "supplier_payment"),
        ("something else", -5, None, False, "other"),
    ],
)
def test_builtin_rules(
    description: str, amount: int, counterparty: str | None, own: bool, expected: str
) -> None:
    assert categorise([(description, amount, counterparty, own)])[0][0] == expected


@pytest.mark.parametrize(
    ("description", "returned"),
    [
        ("退汇 收款账户户名不符", True),
        ("还款冲正", True),
        ("RETURNED PAYMENT", True),
        ("ACH R01 insufficient funds", True),
        ("退回", True),
        ("支付货款", False),
        ("RETURNS DEPARTMENT SUPPLIES", False),
    ],
)
def test_returned_payments_are_detected(description: str, returned: bool) -> None:
    assert categorise([(description, 100, None, False)])[0][1] is returned


def test_user_rules_come_first(tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text(
        '[[rules]]\nname = "platform fees"\ntx_type = "fees"\ndirection = "out"\n'
        'counterparty = ["某某支付网络"]\n',
        "utf-8",
    )
    rows = [("支付货款", -100, "某某支付网络服务股份有限公司", False)]
    assert categorise(rows)[0][0] == "supplier_payment"
    assert categorise(rows, [user])[0][0] == "fees"


def test_rule_files_order(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    for name in ("b.toml", "a.toml"):
        (tmp_path / "rules" / name).write_text("", "utf-8")
    given = tmp_path / "given.toml"
    assert rule_files(given, tmp_path) == [
        given,
        tmp_path / "rules" / "a.toml",
        tmp_path / "rules" / "b.toml",
    ]


RULE = "rules[0]"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('[[rules]]\ntx_type = "nope"\n', "rules[0].tx_type"),
        ('[[rules]]\ntx_type = "tax"\nkeywords = ["x"]\n', "rules[0]"),
        ('[[rules]]\ntx_type = "tax"\ndirection = "up"\n', "rules[0].direction"),
        (
            '[[rules]]\ntx_type = "tax"\ndescription_regex = ["(unclosed"]\n',
            "rules[0].description_regex",
        ),
        (
            '[[rules]]\ntx_type = "tax"\ndescription_regex = ["a(?=b)"]\n',
            "rules[0].description_regex",
        ),
        ('[returned]\nwords = ["x"]\n', "returned"),
    ],
)
def test_bad_rules_name_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(InputError) as caught:
        load_rules([path])
    assert caught.value.file == str(path)
    assert caught.value.field == field


def test_invalid_toml_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[rules]\n", "utf-8")
    with pytest.raises(InputError, match="not valid TOML"):
        load_rules([path])
