"""``flowbureau ingest / sql / inspect``: JSON shapes, exit codes, messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli_runner import run_cli
from flowbureau.storage.warehouse import Warehouse
from statement_files import small_consortium, write_statement


def test_ingest_json_is_exactly_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "ingest", str(small_consortium(tmp_path)), "--json")
    assert code == 0
    data: dict[str, Any] = json.loads(out)
    assert list(data) == [
        "files",
        "records",
        "new_records",
        "duplicates",
        "quarantined",
        "payment_links",
        "totals",
        "problems",
        "ledger",
    ]
    assert data["new_records"] == 5
    assert data["ledger"]["final"] is True
    assert len(data["ledger"]["entries"]) == 2
    assert data["totals"] == {"CNY": {"inflow_minor": 150000, "outflow_minor": 132000}}
    assert data["problems"][0]["kind"] == "quarantine"


def test_ingest_prints_a_summary_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "ingest", str(small_consortium(tmp_path)))
    assert code == 0
    assert "new records" in out
    assert "1,500.00" in out or "1500.00" in out


def test_bad_input_exits_2_naming_file_line_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write_statement(
        tmp_path / "banks" / "b" / "x.csv",
        "1",
        "甲",
        [("2024-13-01", "09:00:00", "1.00", "", "", "", "", "x", "")],
    )
    code, out, err = run_cli(monkeypatch, capsys, "ingest", str(bad), "--json")
    assert code == 2
    assert out == ""
    assert f"{bad}, line 5, field '交易日期'" in err
    assert Warehouse.default().manifest().version == 0


def test_sql_json_and_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli(monkeypatch, capsys, "ingest", str(small_consortium(tmp_path)), "--json")
    query = "SELECT tx_type, count(*) AS n FROM transactions GROUP BY 1 ORDER BY 1"
    code, out, _ = run_cli(monkeypatch, capsys, "sql", query, "--json")
    assert code == 0
    assert json.loads(out) == [
        {"tx_type": "fees", "n": 1},
        {"tx_type": "payroll", "n": 1},
        {"tx_type": "sales_receipt", "n": 2},
        {"tx_type": "supplier_payment", "n": 1},
    ]
    code, _, err = run_cli(monkeypatch, capsys, "sql", "DELETE FROM transactions")
    assert code == 2
    assert "read-only" in err


def test_inspect_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli(monkeypatch, capsys, "ingest", str(small_consortium(tmp_path)), "--json")
    code, out, _ = run_cli(monkeypatch, capsys, "inspect", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["records"] == 5
    assert [b["bank_id"] for b in data["banks"]] == ["bank-a", "bank-b"]
    assert data["accounts"] == data["enterprises"] == 2
    assert data["payment_links"] == 1
    assert data["totals"] == [{"currency": "CNY", "inflow_minor": 150000, "outflow_minor": 132000}]
    assert data["duplicates"]["in_duplicate_files"] == 0
    assert data["quarantine"] == [
        {"reason": "empty amount (debit and credit both empty)", "field": "amount", "records": 1}
    ]
    assert {c["tx_type"] for c in data["categories"]} == {
        "fees",
        "payroll",
        "sales_receipt",
        "supplier_payment",
    }
    code, out, _ = run_cli(monkeypatch, capsys, "inspect")
    assert code == 0
    assert "records per bank and month" in out
