"""The ingest pipeline on small hand-written files: counts, idempotency, atomicity, crashes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flowbureau.cleaning.identifiers import account_pseudonym, pseudonym_key
from flowbureau.config import get_settings
from flowbureau.errors import InputError
from flowbureau.ingestion import infer_bank_id, ingest
from flowbureau.storage import vault
from flowbureau.storage.faults import STAGES
from flowbureau.storage.query import sql
from flowbureau.storage.warehouse import Warehouse
from statement_files import (
    ACME,
    ACME_ACCOUNT,
    BETA,
    BETA_ACCOUNT,
    small_consortium,
    write_statement,
)


def rows(query: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = sql(query).to_pylist()
    return result


def scalar(query: str) -> Any:
    return sql(query).column(0)[0].as_py()


def test_a_small_consortium_is_read_cleaned_and_stored(tmp_path: Path) -> None:
    report = ingest([small_consortium(tmp_path)])
    data = report.to_json()
    assert {
        k: data[k] for k in ("files", "records", "new_records", "duplicates", "quarantined")
    } == {
        "files": 4,
        "records": 6,
        "new_records": 5,
        "duplicates": 0,
        "quarantined": 1,
    }
    assert data["payment_links"] == 1
    assert data["totals"] == {"CNY": {"inflow_minor": 150000, "outflow_minor": 132000}}
    stored = {
        r["description_raw"]: r for r in rows("SELECT * FROM transactions ORDER BY booked_at")
    }
    assert set(stored) == {"支付货款", "销售回款", "手续费", "货款", "代发工资"}
    payment, receipt = stored["支付货款"], stored["货款"]
    # both sides of the payment are kept and linked
    assert payment["payment_link_id"] == receipt["payment_link_id"] is not None
    assert payment["counterparty_account"] == receipt["account_id"]
    assert (payment["enterprise_id"], receipt["enterprise_id"]) == (ACME, BETA)
    assert {r["tx_type"] for r in stored.values()} == {
        "supplier_payment",
        "sales_receipt",
        "fees",
        "payroll",
    }
    # no offset in the CSV: read in Asia/Shanghai (UTC+8), flagged
    assert payment["booked_at"].isoformat() == "2024-01-02T02:00:00+00:00"
    assert "timezone_assumed" in payment["quality_flags"]
    assert payment["counterparty_name_norm"] == "北京乙科技有限公司"
    # lineage
    assert payment["source_file"].endswith("bank-a/2024-01.csv")
    assert payment["source_location"] == "5"
    quarantined = rows("SELECT * FROM quarantine")
    assert len(quarantined) == 1
    assert quarantined[0]["source_location"] == "8"
    assert quarantined[0]["field"] == "amount"
    assert "待核实" in quarantined[0]["raw_text"]
    assert scalar("SELECT count(*) FROM statements") == 2
    assert scalar("SELECT count(*) FROM accounts WHERE source = 'register'") == 2


def test_the_same_files_twice_store_nothing_new(tmp_path: Path) -> None:
    banks = small_consortium(tmp_path)
    first = ingest([banks])
    second = ingest([banks])
    assert second.new_records == 0
    assert second.duplicates == second.records == first.records
    assert second.payment_links == 0
    assert scalar("SELECT count(*) FROM transactions") == first.new_records
    assert scalar("SELECT count(*) FROM quarantine") == 1
    assert scalar("SELECT count(*) FROM sources WHERE status = 'duplicate_file'") == 4
    assert {p.kind for p in second.problems} == {"duplicate_file"}


def _parsed_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the path of every file a reader parses from now on (in-process reading)."""
    from flowbureau.formats import detection

    parsed: list[str] = []
    read_chosen, read_bulk = detection._read_chosen, detection._read_bulk

    def chosen(path: Path, *args: Any) -> Any:
        parsed.append(Path(path).name)
        return read_chosen(path, *args)

    def bulk(pending: Any, profiles: Any) -> Any:
        parsed.extend(Path(item[0]).name for item in pending)
        return read_bulk(pending, profiles)

    monkeypatch.setattr(detection, "_read_chosen", chosen)
    monkeypatch.setattr(detection, "_read_bulk", bulk)
    return parsed


def test_a_rerun_counts_stored_files_without_parsing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    banks = small_consortium(tmp_path)
    first = ingest([banks])
    parsed = _parsed_paths(monkeypatch)
    second = ingest([banks])
    assert parsed == []  # neither the registers nor the statements were read again
    assert (second.files, second.records, second.duplicates, second.new_records) == (
        4,
        first.records,
        first.records,
        0,
    )
    assert sorted(p.message for p in second.problems) == sorted(
        f"this file (SHA-256 {r['file_sha256'][:12]}...) was already ingested; "
        + (
            "its accounts were not recorded again"
            if r["format"] == "register"
            else f"its {r['records']} records were not stored again"
        )
        for r in rows("SELECT * FROM sources WHERE status = 'ingested'")
    )
    columns = "file_sha256, bank_id, source_file, format, profile, statements, records"
    assert rows(
        f"SELECT {columns} FROM sources WHERE status = 'duplicate_file' ORDER BY source_file"
    ) == rows(f"SELECT {columns} FROM sources WHERE status = 'ingested' ORDER BY source_file")
    assert scalar("SELECT sum(statements) FROM sources WHERE status = 'duplicate_file'") > 0


def test_a_rerun_reports_what_reading_every_file_again_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Skipping stored files changes nothing in the report, also with new files and copies
    (of a stored file, of a new file: the new file's copy is still read and counted)."""
    from flowbureau.ingestion import _Run

    banks = small_consortium(tmp_path / "in")
    bank_a = banks / "bank-a"
    row = ("2024-02-01", "09:00:00", "5.00", "", "8995.00", "", "", "手续费", "A9")
    write_statement(bank_a / "2024-02.csv", ACME_ACCOUNT, "上海甲贸易有限公司", [row])

    def rerun(data_dir: Path, *, skip: bool) -> tuple[dict[str, Any], list[str]]:
        monkeypatch.setenv("FLOWBUREAU_DATA_DIR", str(data_dir))
        get_settings.cache_clear()
        for copy in ("copy-2024-01.csv", "copy-2024-02.csv"):
            (bank_a / copy).unlink(missing_ok=True)
        (bank_a / "2024-02.csv").rename(tmp_path / "aside.csv")
        ingest([banks])
        (tmp_path / "aside.csv").rename(bank_a / "2024-02.csv")
        for name in ("2024-01.csv", "2024-02.csv"):
            (bank_a / f"copy-{name}").write_bytes((bank_a / name).read_bytes())
        with monkeypatch.context() as patch:
            parsed = _parsed_paths(patch)
            if not skip:
                patch.setattr(_Run, "was_stored", lambda self, found: False)
            data = ingest([banks]).to_json()
        data.pop("ledger")
        return data, sorted(parsed)

    skipped, parsed = rerun(tmp_path / "skip", skip=True)
    read, parsed_all = rerun(tmp_path / "read", skip=False)
    assert parsed == ["2024-02.csv", "copy-2024-02.csv"]
    assert len(parsed_all) == 7
    assert skipped == read
    assert (skipped["files"], skipped["new_records"], skipped["duplicates"]) == (7, 1, 11)
    assert [p["kind"] for p in skipped["problems"]].count("duplicate_file") == 6


def test_overlapping_periods_store_each_entry_once(tmp_path: Path) -> None:
    def row(day: int, amount: str, ref: str) -> tuple[str, ...]:
        return (f"2024-01-{day:02d}", "10:00:00", amount, "", "", "某供应商", "", "支付货款", ref)

    january = [row(d, "10.00", f"R{d}") for d in (5, 20, 25)]
    # a later export covering 20 Jan .. 10 Feb repeats two January entries
    late = [row(20, "10.00", "R20"), row(25, "10.00", "R25"), row(2, "7.00", "F2")]
    late[-1] = ("2024-02-02", *late[-1][1:])
    bank = tmp_path / "banks" / "bank-a"
    write_statement(bank / "jan.csv", ACME_ACCOUNT, "上海甲贸易有限公司", january)
    ingest([bank / "jan.csv"])
    write_statement(bank / "late.csv", ACME_ACCOUNT, "上海甲贸易有限公司", late)
    report = ingest([bank / "late.csv"])
    assert (report.records, report.new_records, report.duplicates) == (3, 1, 2)
    assert scalar("SELECT count(*) FROM transactions") == 4
    assert scalar("SELECT count(*) FROM duplicates WHERE kind = 'existing'") == 2


def test_equal_payments_on_one_day_are_both_kept(tmp_path: Path) -> None:
    same = ("2024-01-05", "10:00:00", "10.00", "", "", "某供应商", "", "支付货款", "")
    path = write_statement(
        tmp_path / "banks" / "bank-a" / "jan.csv",
        ACME_ACCOUNT,
        "甲",
        [same, same],
    )
    report = ingest([path])
    assert report.new_records == 2
    assert scalar("SELECT count(DISTINCT tx_id) FROM transactions") == 2


def test_results_do_not_depend_on_the_batch_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    banks = small_consortium(tmp_path)
    ingest([banks])
    whole = rows(
        "SELECT tx_id, tx_type, quality_flags, payment_link_id FROM transactions ORDER BY 1"
    )
    monkeypatch.setenv("FLOWBUREAU_DATA_DIR", str(tmp_path / "second"))
    monkeypatch.setenv("FLOWBUREAU_INGEST__CHUNK_ROWS", "1")
    get_settings.cache_clear()
    ingest([banks])
    assert len(Warehouse.default().manifest().files("statements")) == 2  # one batch per file
    again = rows(
        "SELECT tx_id, tx_type, quality_flags, payment_link_id FROM transactions ORDER BY 1"
    )
    assert again == whole


def test_a_malformed_file_writes_nothing_at_all(tmp_path: Path) -> None:
    banks = small_consortium(tmp_path)
    bad = write_statement(
        banks / "bank-b" / "2024-02.csv",
        BETA_ACCOUNT,
        "乙",
        [("2024-02-31", "09:00:00", "1.00", "", "", "", "", "x", "")],  # no such day
    )
    with pytest.raises(InputError) as caught:
        ingest([banks])
    assert caught.value.file == str(bad)
    assert caught.value.line == 5
    assert caught.value.field == "交易日期"
    warehouse = Warehouse.default()
    assert warehouse.manifest().version == 0
    assert not list(warehouse.root.rglob("*.parquet"))  # no records, statements, vault rows


def test_bank_must_be_known(tmp_path: Path) -> None:
    path = write_statement(tmp_path / "loose.csv", ACME_ACCOUNT, "甲", [])
    with pytest.raises(InputError, match="--bank") as caught:
        ingest([path])
    assert caught.value.field == "bank_id"
    assert infer_bank_id(tmp_path / "x" / "banks" / "icbc" / "2024" / "a.csv") == "icbc"
    assert infer_bank_id(tmp_path / "banks" / "a.csv") is None
    with pytest.raises(InputError, match="bank id"):
        ingest([path], bank_id="../etc")


def test_clear_account_numbers_are_only_in_the_vault(tmp_path: Path) -> None:
    ingest([small_consortium(tmp_path)])
    root = Warehouse.default().root
    stored = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    for number in ("6222000011112222", BETA_ACCOUNT, "6217000099998888"):
        assert number.encode() not in stored
        pseudonym = account_pseudonym(number, pseudonym_key())
        assert pseudonym is not None
        assert vault.get(pseudonym) == number


def test_quality_flags_and_outliers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUREAU_INGEST__OUTLIER_MIN_HISTORY", "5")
    get_settings.cache_clear()
    ordinary = [
        (
            f"2024-01-{d:02d}",
            "10:00:00",
            f"{100 + d}.00",
            "",
            "",
            "某供应商",
            "",
            "支付货款",
            f"R{d}",
        )
        for d in range(1, 11)
    ]
    unusual = [
        ("2024-01-20", "10:00:00", "900000.00", "", "", "某供应商", "", "支付货款", "BIG"),
        ("2024-01-21", "10:00:00", "", "50.00", "", "某客户", "", "退汇", "RET"),
    ]
    path = write_statement(
        tmp_path / "banks" / "bank-a" / "jan.csv", "1", "无登记公司", ordinary + unusual
    )
    ingest([path])
    flags = {r["reference"]: r["quality_flags"] for r in rows("SELECT * FROM transactions")}
    assert "outlier" in flags["BIG"]
    assert "returned_payment" in flags["RET"]
    assert all("enterprise_unknown" in f for f in flags.values())
    assert all("outlier" not in f for ref, f in flags.items() if ref != "BIG")
    assert scalar("SELECT count(*) FROM outliers") == 1


CLI = "from flowbureau.cli import main; main()"


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_an_ingest_killed_at_any_stage_then_rerun_stores_everything_once(
    tmp_path: Path, stage: str
) -> None:
    banks = small_consortium(tmp_path)
    marker = tmp_path / "paused"
    env = {
        **os.environ,
        "FLOWBUREAU_FAULT_PAUSE": stage,
        "FLOWBUREAU_FAULT_MARKER": str(marker),
        "FLOWBUREAU_INGEST__CHUNK_ROWS": "2",  # several batches per bank
    }
    code = (
        "from pathlib import Path; from flowbureau.ingestion import ingest; "
        f"ingest([Path({str(banks)!r})])"
    )
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, "ingest exited before the pause point"
            assert time.monotonic() < deadline, "ingest never reached the pause point"
            time.sleep(0.05)
        # another process can query meanwhile, and sees no half-written run
        reader = subprocess.run(
            [sys.executable, "-c", CLI, "sql", "SELECT count(*) AS n FROM transactions", "--json"],
            env={k: v for k, v in env.items() if k != "FLOWBUREAU_FAULT_PAUSE"},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert json.loads(reader.stdout) == [{"n": 5 if stage == "published" else 0}]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    report = ingest([banks])
    assert report.new_records == (0 if stage == "published" else 5)
    assert scalar("SELECT count(*) FROM transactions") == 5
    assert scalar("SELECT count(DISTINCT tx_id) FROM transactions") == 5
    assert scalar("SELECT count(*) FROM quarantine") == 1
    assert scalar("SELECT count(*) FROM statements") == 2
    assert scalar("SELECT count(*) FROM payment_links") == 2
    assert scalar("SELECT count(DISTINCT file_sha256) FROM sources WHERE status = 'ingested'") == 4


def _many_files(root: Path, count: int) -> Path:
    bank = root / "banks" / "bank-a"
    for index in range(count):
        day = 1 + index % 28
        write_statement(
            bank / f"f{index:03d}.csv",
            ACME_ACCOUNT,
            "上海甲贸易有限公司",
            [
                (
                    f"2024-01-{day:02d}",
                    "10:00:00",
                    f"{index + 1}.00",
                    "",
                    "",
                    "某供应商",
                    "",
                    "货款",
                    f"R{index}",
                )
            ],
        )
    return bank


@pytest.mark.slow
def test_parallel_reading_gives_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = _many_files(tmp_path, 40)
    monkeypatch.setenv("FLOWBUREAU_INGEST__READ_WORKERS", "1")
    get_settings.cache_clear()
    ingest([bank])
    serial = rows("SELECT tx_id, source_file, source_location FROM transactions ORDER BY 1")
    monkeypatch.setenv("FLOWBUREAU_DATA_DIR", str(tmp_path / "second"))
    monkeypatch.setenv("FLOWBUREAU_INGEST__READ_WORKERS", "2")
    get_settings.cache_clear()
    report = ingest([bank])
    assert report.new_records == 40
    assert rows("SELECT tx_id, source_file, source_location FROM transactions ORDER BY 1") == serial


@pytest.mark.slow
def test_a_reader_error_in_a_worker_keeps_its_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = _many_files(tmp_path, 40)
    bad = write_statement(
        bank / "f020.csv", ACME_ACCOUNT, "甲", [("2024-01-32", "", "1", "", "", "", "", "", "")]
    )
    monkeypatch.setenv("FLOWBUREAU_INGEST__READ_WORKERS", "2")
    get_settings.cache_clear()
    with pytest.raises(InputError) as caught:
        ingest([bank])
    assert (caught.value.file, caught.value.line, caught.value.field) == (str(bad), 5, "交易日期")
    assert str(caught.value).startswith(f"{bad}, line 5, field '交易日期'")
    assert Warehouse.default().manifest().version == 0
