"""Small hand-written bank files for pipeline tests (generic CSV profile + account registers).

Imported by tests/test_ingestion.py and tests/cli/test_data_cli.py; kept tiny so that every
expected count in those tests can be checked by reading the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stdnum.cn import uscc


def credit_code(body: str) -> str:
    """A valid unified social credit code from its first 17 characters."""
    return body + uscc.calc_check_digit(body)


ACME = credit_code("91310000MA1FL8TB1")
BETA = credit_code("91110000600037341")

ACME_ACCOUNT = "6222 0000 1111 2222"
BETA_ACCOUNT = "6228000033334444"

HEADER = "交易日期,交易时间,借方发生额,贷方发生额,余额,对方户名,对方账号,摘要,流水号"

Row = tuple[str, ...]
"""Nine cells: date, time, debit, credit, balance, counterparty name and account, summary,
reference."""


def write_register(path: Path, accounts: list[tuple[str, str, str]]) -> Path:
    """An account register: ``(account number, owner, credit code)`` rows."""
    lines = ["账号,户名,统一社会信用代码,币种"]
    lines += [f"{number},{owner},{code},CNY" for number, owner, code in accounts]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def write_statement(path: Path, account: str, owner: str, rows: Sequence[Row]) -> Path:
    """A generic online-banking CSV export with a 账号/户名 preamble."""
    lines = [f"账号：{account}", f"户名：{owner}", "币种：CNY", HEADER]
    lines += [",".join(row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def small_consortium(root: Path) -> Path:
    """Two banks, one enterprise each, one payment between them, one invalid row.

    bank-a / ACME: 4 booked rows (one with an empty amount -> quarantined), a fee, a receipt
    and the payment to BETA. bank-b / BETA: the payment's credit and a payroll debit.
    """
    banks = root / "banks"
    write_register(banks / "bank-a" / "accounts.csv", [(ACME_ACCOUNT, "上海甲贸易有限公司", ACME)])
    write_register(
        banks / "bank-b" / "accounts.csv", [(BETA_ACCOUNT, "北京乙科技有限责任公司", BETA)]
    )
    write_statement(
        banks / "bank-a" / "2024-01.csv",
        ACME_ACCOUNT,
        "上海甲贸易有限公司",
        [
            (
                "2024-01-02",
                "10:00:00",
                "1000.00",
                "",
                "9000.00",
                "北京乙科技有限公司",
                BETA_ACCOUNT,
                "支付货款",
                "A1",
            ),
            (
                "2024-01-03",
                "11:00:00",
                "",
                "500.00",
                "9500.00",
                "丙商贸有限公司",
                "6200111122223333",
                "销售回款",
                "A2",
            ),
            ("2024-01-05", "11:00:00", "20.00", "", "9480.00", "", "", "手续费", "A3"),
            ("2024-01-06", "11:00:00", "", "", "9480.00", "", "", "待核实", "A4"),
        ],
    )
    write_statement(
        banks / "bank-b" / "2024-01.csv",
        BETA_ACCOUNT,
        "北京乙科技有限责任公司",
        [
            (
                "2024-01-03",
                "09:00:00",
                "",
                "1000.00",
                "1000.00",
                "上海甲贸易有限公司",
                ACME_ACCOUNT,
                "货款",
                "B1",
            ),
            (
                "2024-01-04",
                "09:00:00",
                "300.00",
                "",
                "700.00",
                "张三",
                "6217000099998888",
                "代发工资",
                "B2",
            ),
        ],
    )
    return banks
