"""One path in: plain ``flowbureau ingest`` puts every stored record on the consortium log.

A small synthetic consortium (three banks in their native formats) is ingested with the CLI;
then the records in the warehouse are exactly the records on the log (quarantined rows are
not), ``ledger keys / checkpoint / prove / consistency / verify`` work on that installation,
a proof checks out against the record itself, a second run of the same files adds nothing,
and a one-byte edit of a stored Parquet record makes ``ledger verify`` fail naming it. An ingest
killed at the ledger's own pause points leaves warehouse and log in agreement after a re-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cli_runner import run_cli
from flowbureau.config import get_settings
from flowbureau.ingestion import ingest
from flowbureau.ledger.checkpoint import TrustPolicy, open_checkpoint
from flowbureau.ledger.embedded import open_ledger
from flowbureau.ledger.entry import BatchEntry, parse_entry
from flowbureau.ledger.merkle import verify_consistency
from flowbureau.ledger.receipts import RecordProof
from flowbureau.schema import STORED_TRANSACTION_SCHEMA
from flowbureau.storage.warehouse import Warehouse
from flowbureau.synth import generate
from statement_files import small_consortium

pytestmark = pytest.mark.slow


def _stored() -> tuple[Warehouse, pa.Table]:
    settings = get_settings()
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    files = warehouse.manifest().files("transactions")
    tables = [
        pq.read_table(warehouse.root / f.path).select(STORED_TRANSACTION_SCHEMA.names)
        for f in files
    ]
    return warehouse, pa.concat_tables(tables)


def _batch_entries() -> list[BatchEntry]:
    store = open_ledger(replay=False).store
    entries = [parse_entry(store.entry(i)) for i in store.batch_indices()]
    return [e for e in entries if isinstance(e, BatchEntry)]


def test_plain_ingest_puts_exactly_the_stored_records_on_the_log_and_proofs_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = generate(tmp_path / "consortium", enterprises=6, banks=3, months=2, seed=5)
    code, out, err = run_cli(monkeypatch, capsys, "ingest", str(summary.banks_dir), "--json")
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    assert report["new_records"] > 0
    assert report["quarantined"] > 0  # the synthetic files carry rows the pipeline refuses
    ledger_summary = report["ledger"]
    assert ledger_summary["final"] is True
    assert ledger_summary["problem"] is None
    assert ledger_summary["entries"]

    # records stored = records on the log (quarantined rows never reach it)
    warehouse, stored = _stored()
    batches = _batch_entries()
    assert stored.num_rows == report["new_records"]
    assert sum(e.manifest.record_count for e in batches) == stored.num_rows
    assert {e.manifest.bank_id for e in batches} == set(
        stored.column("bank_id").unique().to_pylist()
    )

    code, out, err = run_cli(monkeypatch, capsys, "ledger", "keys", "--json")
    assert code == 0, err
    policy = TrustPolicy.from_json(json.loads(out))
    assert policy.quorum == 2
    assert len(policy.witnesses) == 3

    code, out, err = run_cli(monkeypatch, capsys, "ledger", "checkpoint")
    assert code == 0, err
    latest = open_checkpoint(out.encode(), policy)
    assert latest.checkpoint.size == max(ledger_summary["entries"]) + 1

    # a proof for a stored record checks out against the record's own bytes
    row = stored.slice(stored.num_rows // 2, 1)
    tx_id = row.column("tx_id")[0].as_py()
    bank_id = row.column("bank_id")[0].as_py()
    code, out, err = run_cli(
        monkeypatch, capsys, "ledger", "prove", tx_id, "--bank", bank_id, "--json"
    )
    assert code == 0, err
    proven = json.loads(out)
    assert proven["log"]["root"] == latest.checkpoint.root_hash.hex()
    entry = RecordProof.from_json(proven).verify(policy, record=row)
    assert entry.manifest.bank_id == bank_id
    other = stored.filter(pc.not_equal(stored.column("tx_id"), tx_id)).slice(0, 1)
    with pytest.raises(Exception, match="leaf hash differs"):
        RecordProof.from_json(proven).verify(policy, record=other)

    code, out, err = run_cli(
        monkeypatch, capsys, "ledger", "consistency", "1", str(latest.checkpoint.size), "--json"
    )
    assert code == 0, err
    consistency = json.loads(out)
    assert consistency["new_root"] == latest.checkpoint.root_hash.hex()
    verify_consistency(
        1,
        latest.checkpoint.size,
        bytes.fromhex(consistency["old_root"]),
        bytes.fromhex(consistency["new_root"]),
        [bytes.fromhex(p) for p in consistency["proof"]],
    )

    code, out, err = run_cli(monkeypatch, capsys, "ledger", "verify", "--json")
    assert code == 0, err
    verified = json.loads(out)
    assert verified["ok"] is True
    assert verified["records"] == stored.num_rows

    # the same files again: nothing new stored, nothing appended
    code, out, err = run_cli(monkeypatch, capsys, "ingest", str(summary.banks_dir), "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["new_records"] == 0
    assert again["ledger"]["entries"] == []
    assert len(_batch_entries()) == len(batches)

    # one byte of one stored Parquet record changed: verify fails and names the record
    path = warehouse.root / warehouse.manifest().files("transactions")[0].path
    table = pq.read_table(path)
    rows = table.to_pylist()
    victim = next(r for r in rows if r["description_raw"])
    text = victim["description_raw"]
    victim["description_raw"] = ("x" if text[0] != "x" else "y") + text[1:]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    code, out, err = run_cli(monkeypatch, capsys, "ledger", "verify")
    assert code == 1
    assert f"record tx_id={victim['tx_id']}" in err


@pytest.mark.parametrize("stage", ["ledger_pending", "ledger_committed"])
def test_an_ingest_killed_at_a_ledger_pause_point_then_rerun_agrees_with_the_log(
    tmp_path: Path,
    stage: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    banks = small_consortium(tmp_path)
    marker = tmp_path / "paused"
    env = {
        **os.environ,
        "FLOWBUREAU_FAULT_PAUSE": stage,
        "FLOWBUREAU_FAULT_MARKER": str(marker),
        "FLOWBUREAU_INGEST__CHUNK_ROWS": "2",  # several batches, so several entries per run
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
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # pending entries were discarded with the unpublished warehouse batches (ledger_pending),
    # or the committed run gets the checkpoint the crash skipped (ledger_committed)
    report = ingest([banks])
    assert report.new_records == (5 if stage == "ledger_pending" else 0)
    _, stored = _stored()
    assert stored.num_rows == 5
    assert sum(e.manifest.record_count for e in _batch_entries()) == 5
    code_, out, err = run_cli(monkeypatch, capsys, "ledger", "verify", "--json")
    assert code_ == 0, err
    verified = json.loads(out)
    assert verified["ok"] is True
    assert verified["records"] == 5
    log = open_ledger(replay=False)
    assert log.store.checkpoint_sizes()[-1] == log.store.size()
