"""Hand-built transactions and a small consortium with a planted risk signal (test helpers)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from stdnum.cn import uscc

from flowbureau.schema import STORED_TRANSACTION_SCHEMA, TRANSACTION_SCHEMA
from flowbureau.storage.warehouse import TablePart, Warehouse, new_batch_id


def code(i: int, region: str = "110000") -> str:
    """A valid unified social credit code for test enterprise ``i``."""
    partial = f"91{region}{i:09d}"
    return partial + uscc.calc_check_digit(partial)


def tx(
    tx_id: str,
    enterprise: str | None,
    booked_at: datetime,
    amount: int,
    **overrides: Any,
) -> dict[str, Any]:
    """One row of the ``transactions`` view with harmless defaults."""
    row: dict[str, Any] = {
        "tx_id": tx_id,
        "bank_id": "bank-a",
        "account_id": f"acct-{enterprise}",
        "enterprise_id": enterprise,
        "statement_id": "stmt-1",
        "booked_at": booked_at,
        "value_date": None,
        "amount_minor": amount,
        "currency": "CNY",
        "balance_after_minor": None,
        "counterparty_name": "对手方",
        "counterparty_name_norm": "cp",
        "counterparty_account": None,
        "counterparty_bank": None,
        "tx_type": "sales_receipt" if amount > 0 else "supplier_payment",
        "tx_code": None,
        "reference": None,
        "end_to_end_id": None,
        "description_raw": "x",
        "source_file": "f.csv",
        "source_location": "2",
        "file_sha256": "0" * 64,
        "ingest_id": "ing-test",
        "quality_flags": [],
        "counterparty_id": None,
        "payment_link_id": None,
        "anomaly_score": None,
        "corrected_amount_minor": None,
        "correction_id": None,
    }
    row.update(overrides)
    return row


def view_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows as the ``transactions`` view's schema."""
    return pa.Table.from_pylist(rows, schema=TRANSACTION_SCHEMA)


def contribute(warehouse: Warehouse, rows: list[dict[str, Any]]) -> None:
    """Store ``rows`` (view rows; annotation columns ignored) as one committed run per bank."""
    stored = [{k: r[k] for k in STORED_TRANSACTION_SCHEMA.names} for r in rows]
    with warehouse.writer() as writer:
        for bank in sorted({r["bank_id"] for r in stored}):
            part = [r for r in stored if r["bank_id"] == bank]
            writer.engine.register(
                "t_rows", pa.Table.from_pylist(part, schema=STORED_TRANSACTION_SCHEMA)
            )
            writer.stage_batch(
                new_batch_id(),
                [
                    TablePart(
                        "transactions",
                        "SELECT *, strftime(booked_at, '%Y-%m') AS month FROM t_rows",
                        bank,
                    )
                ],
            )
            writer.engine.unregister("t_rows")
        corrections = [
            {
                "tx_id": r["tx_id"],
                "corrected_amount_minor": r["corrected_amount_minor"],
                "correction_id": r["correction_id"],
            }
            for r in rows
            if r.get("correction_id")
        ]
        if corrections:
            writer.replace_annotation(
                "corrections", new_batch_id(), pa.Table.from_pylist(corrections)
            )
        writer.publish()


@dataclass
class Consortium:
    """Rows of a planted consortium and its true first default day per defaulting enterprise."""

    rows: list[dict[str, Any]]
    defaults: dict[str, date]
    enterprises: list[str]


def planted_consortium(
    n: int = 60, *, months: int = 24, start: date = date(2023, 1, 1), seed: int = 1
) -> Consortium:
    """``n`` enterprises over ``months`` months; about a quarter default in the last ten months,
    and in the nine months before defaulting their sales fall, online borrowing starts and
    payments come back returned (the signal a model should find)."""
    rng = np.random.default_rng(seed)
    codes = [code(1000 + i) for i in range(n)]
    bad = rng.random(n) < 0.3
    defaults: dict[str, date] = {}
    rows: list[dict[str, Any]] = []
    for i, enterprise in enumerate(codes):
        base = int(rng.integers(200_000, 2_000_000)) * 100
        default_month = int(rng.integers(months - 10, months)) if bad[i] else None
        if default_month is not None:
            defaults[enterprise] = _month(start, default_month) + timedelta(days=14)
        balance = base * 2
        bank = "bank-a" if i % 3 else "bank-b"
        customers = [f"cust-{i}-{k}" for k in range(int(rng.integers(2, 6)))]
        for m in range(months):
            first = _month(start, m)
            if default_month is not None and m >= default_month:
                break
            distress = 0.0
            if default_month is not None and m >= default_month - 9:
                distress = (m - (default_month - 9) + 1) / 9
            entries: list[tuple[int, str, str, str]] = []
            for k in range(int(rng.integers(3, 7))):
                amount = int(base / 5 * (1 - 0.7 * distress) * rng.lognormal(0, 0.2))
                entries.append((amount, "sales_receipt", customers[k % len(customers)], ""))
            for k in range(int(rng.integers(2, 5))):
                amount = -int(base / 5 * rng.lognormal(0, 0.2))
                entries.append((amount, "supplier_payment", f"supp-{i}-{k % 3}", ""))
            entries.append((-int(base * 0.15), "payroll", "staff", ""))
            if m % 3 == 2:
                entries.append((-int(base * 0.05), "tax", "tax-bureau", ""))
            if distress > 0.3 and rng.random() < 0.8:
                entries.append((int(base * 0.2), "online_lending", "小额贷款", ""))
            if distress > 0.5 and rng.random() < 0.7:
                entries.append(
                    (int(base * 0.1), "supplier_payment", "supp-back", "returned_payment")
                )
            for k, (amount, kind, counterparty, flag) in enumerate(entries):
                balance += amount
                day = int(rng.integers(0, 27))
                booked = datetime.combine(first, datetime.min.time(), UTC) + timedelta(
                    days=day, hours=int(rng.integers(1, 9))
                )
                rows.append(
                    tx(
                        f"{enterprise}-{m:02d}-{k:02d}",
                        enterprise,
                        booked,
                        amount,
                        bank_id=bank,
                        account_id=f"acct-{i}",
                        tx_type=kind,
                        counterparty_name=counterparty,
                        counterparty_name_norm=counterparty,
                        balance_after_minor=balance,
                        quality_flags=[flag] if flag else [],
                    )
                )
    return Consortium(rows, defaults, codes)


def _month(start: date, k: int) -> date:
    index = start.year * 12 + start.month - 1 + k
    return date(index // 12, index % 12 + 1, 1)
