"""Hand-built stored transactions for warehouse tests (imported by the tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from flowbureau.schema import STORED_TRANSACTION_SCHEMA
from flowbureau.storage.warehouse import TablePart, WarehouseWriter, new_batch_id


def transaction(tx_id: str, **overrides: Any) -> dict[str, Any]:
    """One stored-transaction row with harmless defaults."""
    row: dict[str, Any] = {
        "tx_id": tx_id,
        "bank_id": "bank-a",
        "account_id": "acct-1",
        "enterprise_id": None,
        "statement_id": "stmt-1",
        "booked_at": datetime(2024, 1, 15, 2, 0, tzinfo=UTC),
        "value_date": None,
        "amount_minor": 100,
        "currency": "CNY",
        "balance_after_minor": None,
        "counterparty_name": None,
        "counterparty_name_norm": None,
        "counterparty_account": None,
        "counterparty_bank": None,
        "tx_type": "other",
        "tx_code": None,
        "reference": None,
        "end_to_end_id": None,
        "description_raw": "x",
        "source_file": "f.csv",
        "source_location": "2",
        "file_sha256": "0" * 64,
        "ingest_id": "ing-test",
        "quality_flags": [],
    }
    row.update(overrides)
    return row


def transactions(*rows: dict[str, Any]) -> pa.Table:
    """An Arrow table of stored transactions."""
    return pa.Table.from_pylist(list(rows), schema=STORED_TRANSACTION_SCHEMA)


def stage_transactions(writer: WarehouseWriter, table: pa.Table, bank_id: str = "bank-a") -> str:
    """Stage ``table`` as one batch of ``bank_id``; return the batch id."""
    writer.engine.register("t_rows", table)
    batch_id = new_batch_id()
    writer.stage_batch(
        batch_id,
        [
            TablePart(
                "transactions",
                "SELECT *, strftime(booked_at, '%Y-%m') AS month FROM t_rows",
                bank_id,
            )
        ],
    )
    writer.engine.unregister("t_rows")
    return batch_id
