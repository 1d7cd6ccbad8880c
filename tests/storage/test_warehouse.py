"""The warehouse commit protocol: atomic publish, rollback, crash recovery, locking, views."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from warehouse_rows import stage_transactions, transaction, transactions

from flowbureau.errors import ConflictError, StorageError
from flowbureau.schema import TRANSACTION_SCHEMA
from flowbureau.storage.annotations import ANNOTATIONS, view_column_sources
from flowbureau.storage.faults import STAGES
from flowbureau.storage.manifest import Manifest, read_manifest
from flowbureau.storage.settings import WarehouseSettings
from flowbureau.storage.warehouse import TablePart, Warehouse, new_batch_id


def count(warehouse: Warehouse, relation: str = "transactions") -> int:
    with warehouse.connect() as engine:
        return int(engine.query(f"SELECT count(*) FROM {relation}").column(0)[0].as_py())


def data_files(warehouse: Warehouse) -> set[str]:
    root = warehouse.root
    return {str(p.relative_to(root)) for p in (root / "data").rglob("*.parquet")}


def test_empty_warehouse_has_every_view_with_the_canonical_schema(warehouse: Warehouse) -> None:
    with warehouse.connect() as engine:
        table = engine.query("SELECT * FROM transactions")
        assert table.num_rows == 0
        assert table.schema.names == TRANSACTION_SCHEMA.names
        for name in ("statements", "quarantine", "accounts", "sources", "duplicates", *ANNOTATIONS):
            assert engine.query(f"SELECT count(*) FROM {name}").column(0)[0].as_py() == 0


def test_staged_rows_are_invisible_until_published(warehouse: Warehouse) -> None:
    with warehouse.writer() as writer:
        stage_transactions(
            writer,
            transactions(
                transaction("t1"),
                transaction("t2", booked_at=datetime(2024, 2, 1, tzinfo=UTC)),
            ),
        )
        # the writer sees its own staged rows; a reader does not
        assert writer.engine.query("SELECT count(*) FROM transactions").column(0)[0].as_py() == 2
        assert count(warehouse) == 0
        manifest = writer.publish()
    assert manifest.version == 1
    assert count(warehouse) == 2
    months = sorted(f.month or "" for f in manifest.files("transactions"))
    assert months == ["2024-01", "2024-02"]
    assert all("bank=bank-a/month=" in f.path for f in manifest.files("transactions"))


def test_unpublished_batches_are_rolled_back(warehouse: Warehouse) -> None:
    with warehouse.writer() as writer:
        stage_transactions(writer, transactions(transaction("t1")))
        writer.publish()

    def failing_run() -> None:
        with warehouse.writer() as writer:
            stage_transactions(writer, transactions(transaction("t2")))
            raise RuntimeError("fail mid-run")

    with pytest.raises(RuntimeError):
        failing_run()
    assert count(warehouse) == 1
    assert len(data_files(warehouse)) == 1
    assert not list((warehouse.root / "journal").glob("*.json"))


def test_rows_in_the_wrong_schema_are_refused(warehouse: Warehouse) -> None:
    with warehouse.writer() as writer:
        writer.engine.register("t_rows", transactions(transaction("t1")))
        with pytest.raises(StorageError, match="expected"):
            writer.stage_batch(
                new_batch_id(),
                [TablePart("statements", "SELECT tx_id FROM t_rows", "bank-a")],
            )


def test_a_second_writer_waits_then_gives_up(warehouse: Warehouse) -> None:
    with (
        warehouse.writer(),
        pytest.raises(StorageError, match="another writer"),
        warehouse.writer(timeout=0.2),
    ):
        pass


def test_annotation_scopes_replace_atomically_and_join_the_view(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path / "wh", WarehouseSettings(retire_grace_seconds=0))
    with warehouse.writer() as writer:
        stage_transactions(writer, transactions(transaction("t1"), transaction("t2")))
        writer.replace_annotation(
            "outliers",
            "bank-a",
            pa.table({"tx_id": ["t1"], "robust_z": [4.2], "quality_flags": [["outlier"]]}),
        )
        writer.publish()
    with warehouse.connect() as engine:
        rows = engine.query("SELECT tx_id, quality_flags FROM transactions").to_pylist()
    flags = {r["tx_id"]: r["quality_flags"] for r in rows}
    assert flags == {"t1": ["outlier"], "t2": []}
    first = read_manifest(warehouse.root).annotation_files("outliers")
    with warehouse.writer() as writer:
        writer.replace_annotation(
            "outliers",
            "bank-a",
            pa.table({"tx_id": ["t2"], "robust_z": [-5.0], "quality_flags": [["outlier"]]}),
        )
        writer.publish()
        # the replaced file is retired, then deleted by the next commit (grace 0)
        writer.publish()
    assert not (warehouse.root / first[0].path).exists()
    with warehouse.connect() as engine:
        outliers = engine.query("SELECT tx_id FROM outliers").column(0).to_pylist()
    assert outliers == ["t2"]


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        ({"tx_id": ["t1", "t1"], "anomaly_score": [0.1, 0.2]}, "repeats"),
        ({"tx_id": ["nope"], "anomaly_score": [0.1]}, "names no stored transaction"),
    ],
)
def test_annotation_conflicts_are_refused(
    warehouse: Warehouse, rows: dict[str, list[object]], why: str
) -> None:
    with warehouse.writer() as writer:
        stage_transactions(writer, transactions(transaction("t1")))
        with pytest.raises(ConflictError, match=why):
            writer.replace_annotation("anomaly_scores", "model-1", pa.table(rows))


def test_an_annotation_row_belongs_to_one_scope(warehouse: Warehouse) -> None:
    with warehouse.writer() as writer:
        stage_transactions(writer, transactions(transaction("t1")))
        writer.replace_annotation(
            "anomaly_scores", "a", pa.table({"tx_id": ["t1"], "anomaly_score": [0.5]})
        )
        with pytest.raises(ConflictError, match="another scope"):
            writer.replace_annotation(
                "anomaly_scores", "b", pa.table({"tx_id": ["t1"], "anomaly_score": [0.7]})
            )


def test_every_annotated_view_column_has_one_supplier() -> None:
    sources = view_column_sources()
    assert sources["payment_link_id"] == "payment_links"
    assert set(sources) == {
        "counterparty_id",
        "payment_link_id",
        "anomaly_score",
        "corrected_amount_minor",
        "correction_id",
    }


def test_manifest_round_trips_and_refuses_unknown_formats(warehouse: Warehouse) -> None:
    with warehouse.writer() as writer:
        stage_transactions(writer, transactions(transaction("t1")))
        manifest = writer.publish()
    assert Manifest.from_json(manifest.to_json()) == manifest
    data = json.loads((warehouse.root / "manifest.json").read_text("utf-8"))
    data["format"] = 99
    (warehouse.root / "manifest.json").write_text(json.dumps(data), "utf-8")
    with pytest.raises(StorageError, match="format 99"):
        warehouse.manifest()


_CRASHING_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from warehouse_rows import stage_transactions, transaction, transactions
    from flowbureau.storage.warehouse import Warehouse
    import pyarrow as pa
    warehouse = Warehouse.default()
    with warehouse.writer() as writer:
        stage_transactions(writer, transactions(transaction("t2"), transaction("t3")))
        stage_transactions(writer, transactions(transaction("t4")), bank_id="bank-b")
        writer.replace_annotation(
            "anomaly_scores", "m1", pa.table({"tx_id": ["t2"], "anomaly_score": [0.9]})
        )
        writer.publish()
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_a_writer_killed_at_any_stage_leaves_all_or_nothing(
    warehouse: Warehouse, data_dir: Path, stage: str
) -> None:
    with warehouse.writer() as writer:
        stage_transactions(writer, transactions(transaction("t1")))
        writer.publish()
    before = data_files(warehouse)
    committed = stage == "published"
    marker = data_dir / "paused"
    env = {
        **os.environ,
        "FLOWBUREAU_FAULT_PAUSE": stage,
        "FLOWBUREAU_FAULT_MARKER": str(marker),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_WRITER, str(Path(__file__).parent)], env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, "writer exited before reaching the pause point"
            assert time.monotonic() < deadline, "writer never reached the pause point"
            time.sleep(0.05)
        # while the writer is stopped, readers see one whole version: old, or new once published
        assert count(warehouse) == (4 if committed else 1)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    with warehouse.writer() as writer:
        recovery = writer.recovery
    assert count(warehouse) == (4 if committed else 1)
    assert count(warehouse, "anomaly_scores") == (1 if committed else 0)
    manifest = warehouse.manifest()
    assert data_files(warehouse) == {
        p for p in manifest.referenced_paths() if p.startswith("data/")
    }
    if not committed:
        assert data_files(warehouse) == before
        if stage != "batch_staged":
            assert recovery.rolled_back_batches
    assert not list((warehouse.root / "journal").glob("*.json"))
    assert not any((warehouse.root / "staging").glob("*"))


def test_a_reader_keeps_its_snapshot_across_commits(warehouse: Warehouse) -> None:
    with warehouse.writer() as writer:
        stage_transactions(writer, transactions(transaction("t1")))
        writer.replace_annotation(
            "anomaly_scores", "m", pa.table({"tx_id": ["t1"], "anomaly_score": [0.1]})
        )
        writer.publish()
    with warehouse.connect() as old:
        with warehouse.writer() as writer:
            stage_transactions(writer, transactions(transaction("t2")))
            writer.replace_annotation(
                "anomaly_scores", "m", pa.table({"tx_id": ["t2"], "anomaly_score": [0.9]})
            )
            writer.publish()
        # the old connection still reads its version, replaced annotation file included
        rows = old.query("SELECT tx_id, anomaly_score FROM transactions ORDER BY 1").to_pylist()
        assert rows == [{"tx_id": "t1", "anomaly_score": 0.1}]
    assert count(warehouse) == 2
    assert count(warehouse, "anomaly_scores") == 1
