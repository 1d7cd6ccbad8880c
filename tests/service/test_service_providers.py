"""The warehouse-backed provider: transaction summaries of what the banks contributed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
from service_helpers import CODE_A, CODE_B, Api

from flowbureau.schema import STORED_TRANSACTION_SCHEMA
from flowbureau.storage.warehouse import TablePart, Warehouse, new_batch_id

FEBRUARY = datetime(2026, 2, 10, 2, 0, tzinfo=UTC)
MONTHLY = "SELECT *, strftime(booked_at, '%Y-%m') AS month FROM rows"


def _row(
    tx_id: str,
    code: str,
    amount: int,
    *,
    bank: str = "bank-a",
    account: str = "acct-1",
    at: datetime = FEBRUARY,
    currency: str = "CNY",
) -> dict[str, Any]:
    return {
        "tx_id": tx_id,
        "bank_id": bank,
        "account_id": account,
        "enterprise_id": code,
        "statement_id": f"{bank}-stmt",
        "booked_at": at,
        "value_date": None,
        "amount_minor": amount,
        "currency": currency,
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


def _contribute(warehouse: Warehouse, bank: str, rows: list[dict[str, Any]]) -> None:
    with warehouse.writer() as writer:
        writer.engine.register("rows", pa.Table.from_pylist(rows, schema=STORED_TRANSACTION_SCHEMA))
        writer.stage_batch(
            new_batch_id(),
            [
                TablePart(
                    "transactions",
                    "SELECT *, strftime(booked_at, '%Y-%m') AS month FROM rows",
                    bank,
                )
            ],
        )
        writer.engine.unregister("rows")
        writer.publish()


def test_summary_totals_per_currency_up_to_the_local_day(api: Api) -> None:
    settings = api.context.settings
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    late = datetime(2026, 2, 28, 16, 30, tzinfo=UTC)  # 2026-03-01 00:30 in Shanghai
    _contribute(
        warehouse,
        "bank-a",
        [
            _row("t1", CODE_A, 500_000),
            _row("t2", CODE_A, -120_050),
            _row("t3", CODE_A, 9_900, account="acct-2", currency="USD"),
            _row("t4", CODE_B, 1, account="acct-9"),  # someone else's
            _row("t5", CODE_A, 7, at=late),  # after an as_of of 02-28, local time
        ],
    )
    _contribute(warehouse, "bank-b", [_row("t6", CODE_A, 30_000, bank="bank-b", account="acct-7")])
    owner = api.enterprise("13800138000", CODE_A)
    url = f"/v1/enterprises/{CODE_A}/transactions/summary?as_of=2026-02-28"
    summary = api.client.get(url, headers=owner).json()
    assert summary["transactions"] == 4
    assert summary["banks"] == 2
    assert summary["accounts"] == 3
    assert summary["totals"] == [
        {
            "currency": "CNY",
            "transactions": 3,
            "inflow_minor": 530_000,
            "outflow_minor": 120_050,
            "net_minor": 409_950,
        },
        {
            "currency": "USD",
            "transactions": 1,
            "inflow_minor": 9_900,
            "outflow_minor": 0,
            "net_minor": 9_900,
        },
    ]
    later = api.client.get(url.replace("2026-02-28", "2026-03-01"), headers=owner).json()
    assert later["transactions"] == 5
    report = api.client.get(f"/v1/enterprises/{CODE_A}/report", headers=owner).json()
    assert report["transactions"]["transactions"] == 5
    assert report["score"] is None
    assert date.fromisoformat(report["as_of"]) == api.clock().date()


def test_no_contributions_is_not_yet_available(api: Api) -> None:
    owner = api.enterprise("13800138000", CODE_A)
    response = api.client.get(f"/v1/enterprises/{CODE_A}/transactions/summary", headers=owner)
    assert response.status_code == 404
    assert response.json()["type"] == "urn:flowbureau:problem:not-yet-available"


def test_monthly_flows_and_carried_balances(api: Api) -> None:
    settings = api.context.settings
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)

    def at(month: int, day: int, hour: int = 2) -> datetime:
        return datetime(2025, month, day, hour, 0, tzinfo=UTC)

    rows = [
        _row("m1", CODE_A, 100_000, at=at(11, 3)) | {"balance_after_minor": 600_000},
        _row("m2", CODE_A, -40_000, at=at(11, 20)) | {"balance_after_minor": 560_000},
        _row("m3", CODE_A, 5_000, account="acct-2", at=at(11, 5)) | {"balance_after_minor": 5_000},
        # 2025-11-30 17:00 UTC is 12-01 01:00 in Shanghai: December's
        _row("m4", CODE_A, -10_000, at=datetime(2025, 11, 30, 17, 0, tzinfo=UTC))
        | {"balance_after_minor": 550_000},
        _row("m5", CODE_A, 2_500, currency="USD", account="acct-3", at=at(12, 9)),
    ]
    _contribute(warehouse, "bank-a", rows)
    owner = api.enterprise("13800138000", CODE_A)
    url = f"/v1/enterprises/{CODE_A}/transactions/summary?as_of=2026-01-31"
    monthly = api.client.get(url, headers=owner).json()["monthly"]
    assert monthly == [
        {
            "month": "2025-11-01",
            "currency": "CNY",
            "inflow_minor": 105_000,
            "outflow_minor": 40_000,
            "net_minor": 65_000,
            "closing_balance_minor": 565_000,
        },
        # acct-2 reported nothing in December: its November balance is carried
        {
            "month": "2025-12-01",
            "currency": "CNY",
            "inflow_minor": 0,
            "outflow_minor": 10_000,
            "net_minor": -10_000,
            "closing_balance_minor": 555_000,
        },
        {
            "month": "2025-12-01",
            "currency": "USD",
            "inflow_minor": 2_500,
            "outflow_minor": 0,
            "net_minor": 2_500,
            "closing_balance_minor": None,
        },
    ]
