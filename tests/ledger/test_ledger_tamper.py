"""Tampering with a real installation: every single-byte edit of a stored record or statement
(a Parquet cell), a log entry, a checkpoint or a batch's stored leaves is caught by
``ledger verify``, which names what was edited."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from ledger_world import small_world

from flowbureau.cli import main
from flowbureau.config import get_settings
from flowbureau.ledger.consortium import Ledger
from flowbureau.ledger.embedded import open_ledger, warehouse_rows
from flowbureau.ledger.log import VerifyReport
from flowbureau.ledger.models import (
    LedgerBatchChunk,
    LedgerCheckpoint,
    LedgerEntry,
    LedgerTxBucket,
)
from flowbureau.storage.warehouse import Warehouse

TRIALS = 200


def _verify(ledger: Ledger | None = None) -> VerifyReport:
    unreadable: list[tuple[str, str]] = []
    records, statements = warehouse_rows(unreadable=unreadable)
    ledger = ledger or open_ledger(replay=False)
    report = ledger.verify(records=records, statements=statements)
    for path, error in unreadable:
        report.add("file", path, error)
    return report


def _edit_value(value: Any, rng: random.Random) -> Any:
    """The value with one byte (or one bit of a number) changed."""
    if isinstance(value, str):
        i = rng.randrange(len(value))
        return value[:i] + ("x" if value[i] != "x" else "y") + value[i + 1 :]
    if isinstance(value, list):
        return [_edit_value(value[0], rng), *value[1:]]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value ^ (1 << (8 * rng.randrange(6)))
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1 << (8 * rng.randrange(3)))
    return value + timedelta(days=1)


def _edit_parquet(path: Path, key: str, rng: random.Random) -> str:
    """Change one byte of one cell of the file; return the row's key after the edit."""
    table = pq.read_table(path)
    while True:
        row = rng.randrange(table.num_rows)
        name = rng.choice(table.column_names)
        value = table[name][row].as_py()
        if value in (None, "", []) or (isinstance(value, list) and not value[0]):
            continue
        rows = table.to_pylist()
        rows[row][name] = _edit_value(value, rng)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
        return str(rows[row][key])


def _flip(engine: sa.Engine, column: Any, where: Any, rng: random.Random) -> Callable[[], None]:
    """Flip one byte of a stored blob; return the undo."""
    with engine.begin() as conn:
        original = bytes(conn.execute(sa.select(column).where(where)).scalar_one())
        offset = rng.randrange(len(original))
        edited = original[:offset] + bytes([original[offset] ^ rng.randrange(1, 256)])
        edited += original[offset + 1 :]
        conn.execute(sa.update(column.class_).where(where).values({column.key: edited}))

    def undo() -> None:
        with engine.begin() as conn:
            conn.execute(sa.update(column.class_).where(where).values({column.key: original}))

    return undo


@pytest.mark.slow
def test_random_single_byte_edits_of_the_installation_are_all_detected_and_named() -> None:
    small_world()
    assert _verify().ok
    settings = get_settings()
    warehouse = Warehouse(settings.warehouse_dir)
    manifest = warehouse.manifest()
    files = {
        t: [warehouse.root / f.path for f in manifest.files(t)]
        for t in ("transactions", "statements")
    }
    ledger = open_ledger(replay=False)
    engine = ledger.store.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        entries = conn.execute(sa.select(sa.func.count()).select_from(LedgerEntry)).scalar_one()
        sizes = list(conn.execute(sa.select(LedgerCheckpoint.size)).scalars())
        chunks = conn.execute(
            sa.select(LedgerBatchChunk.entry_idx, LedgerBatchChunk.chunk_no)
        ).all()
        buckets = conn.execute(sa.select(LedgerTxBucket.entry_idx, LedgerTxBucket.bucket)).all()
    rng = random.Random(20261123)
    detected: dict[str, int] = {}
    for trial in range(TRIALS):
        target = ("record", "statement", "entry", "checkpoint", "batch")[trial % 5]
        undo: Callable[[], None]
        if target in ("record", "statement"):
            path = rng.choice(files["transactions" if target == "record" else "statements"])
            key = "tx_id" if target == "record" else "statement_id"
            saved = path.read_bytes()
            expected = (target, f"{key}={_edit_parquet(path, key, rng)}")
            undo = lambda path=path, saved=saved: path.write_bytes(saved)  # noqa: E731
        elif target == "entry":
            index = rng.randrange(entries)
            undo = _flip(engine, LedgerEntry.data, LedgerEntry.idx == index, rng)
            expected = ("entry", str(index))
        elif target == "checkpoint":
            size = rng.choice(sizes)
            undo = _flip(engine, LedgerCheckpoint.note, LedgerCheckpoint.size == size, rng)
            expected = ("checkpoint", str(size))
        elif trial % 2:
            index, number = rng.choice(chunks)
            where = (LedgerBatchChunk.entry_idx == index) & (LedgerBatchChunk.chunk_no == number)
            undo = _flip(engine, LedgerBatchChunk.leaf_hashes, where, rng)
            expected = ("batch", str(index))
        else:
            index, bucket = rng.choice(buckets)
            where = (LedgerTxBucket.entry_idx == index) & (LedgerTxBucket.bucket == bucket)
            undo = _flip(engine, LedgerTxBucket.data, where, rng)
            expected = ("batch", str(index))
        report = _verify(ledger)
        named = {(p.kind, p.ref) for p in report.problems}
        if report.ok or expected not in named:
            pytest.fail(f"trial {trial}: edit of {expected} not detected/named: {report.problems}")
        detected[target] = detected.get(target, 0) + 1
        undo()
    total = sum(detected.values())
    print(
        f"single-byte edits detected and named: {total}/{TRIALS} = {total / TRIALS:.0%} {detected}"
    )
    assert total == TRIALS
    assert _verify().ok


def test_ledger_verify_exits_1_naming_an_edited_parquet_record(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    small_world()
    settings = get_settings()
    warehouse = Warehouse(settings.warehouse_dir)
    path = warehouse.root / warehouse.manifest().files("transactions")[0].path
    monkeypatch.setattr(sys, "argv", ["flowbureau", "ledger", "verify"])
    main()
    assert "ledger intact: 7 entries" in capsys.readouterr().out
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["amount_minor"] += 1
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    with pytest.raises(SystemExit) as broken:
        main()
    assert broken.value.code == 1
    err = capsys.readouterr().err
    assert f"record tx_id={rows[0]['tx_id']}" in err
    assert "differs from the committed leaf" in err
    path.write_bytes(b"PAR1 not a parquet file")
    with pytest.raises(SystemExit):
        main()
    assert "cannot be read" in capsys.readouterr().err
