"""Hand-made transaction frames in the shape :func:`flowbureau.anomaly.preprocessing.
load_transactions` returns, for rule and feature tests."""

from __future__ import annotations

from typing import Any

import pandas as pd

from flowbureau.anomaly.preprocessing import order_ledger

DAY_US = 86_400 * 1_000_000
START_US = 1_704_067_200 * 1_000_000  # 2024-01-01T00:00Z, 08:00 in Shanghai


def row(i: int, **overrides: Any) -> dict[str, Any]:
    """Entry ``i`` of account A: a 100.00 CNY supplier payment on day ``i`` at 10:00 local."""
    data: dict[str, Any] = {
        "tx_id": f"t{i:03d}",
        "bank_id": "bank",
        "account_id": "A",
        "enterprise_id": None,
        "statement_id": "s1",
        "booked_us": START_US + i * DAY_US + 2 * 3_600_000_000,
        "value_day": 19723 + i,
        "has_value_date": False,
        "amount_minor": -10_000,
        "currency": "CNY",
        "balance_after_minor": 0,
        "has_balance": False,
        "counterparty_name": "甲公司",
        "counterparty_name_norm": "甲公司",
        "counterparty_account": "cp-1",
        "tx_type": "supplier_payment",
        "reference": f"r{i:03d}",
        "description_raw": "货款",
        "source_location": str(i + 1),
        "quality_flags": [],
        "period_day": 19723,
        "statement_diff_minor": 0,
        "location_index": i + 1,
        "cp_member": False,
    }
    data.update(overrides)
    return data


def frame_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows in ledger order, with ``sequence_id`` and ``position``."""
    return order_ledger(pd.DataFrame(rows))


def with_balances(rows: list[dict[str, Any]], opening: int = 1_000_000) -> list[dict[str, Any]]:
    """Give every row the running balance its amount implies."""
    balance = opening
    for r in rows:
        balance += r["amount_minor"]
        r["balance_after_minor"] = balance
        r["has_balance"] = True
    return rows
