"""Append-only event logs and immutable run snapshots of the anomaly stage.

Layout under ``settings.anomaly.store_dir`` (default ``data_dir/anomaly``)::

    logs/corrections/<seq>.parquet   correction events: apply, accept, revert
    logs/labels/<seq>.parquet        analyst labels: confirm, reject, label
    runs/<run_id>/                   one detection run: run.json, scores, flags, fills

Rules (beancount style: the log is the truth, everything else is derived from it):
- **Append-only.** A segment is written to a temporary file, fsynced, and hard-linked to the
  next free sequence number (``link`` fails if the name exists, so two writers never share a
  number), then the directory is fsynced. Segments are never modified or deleted; the state of
  a correction or a label is the fold of its events in sequence order.
- **Runs are immutable**: written under a staging name and renamed into place whole.
- The warehouse annotations (``corrections``, ``anomaly_flags``, ``anomaly_scores``) are a
  projection of the log and the latest run (:func:`flowbureau.anomaly.correction.project`):
  an event is committed to the log first, then the whole projection is re-published, so a
  crash in between leaves the view one step behind until the next write.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flowbureau.errors import NotFoundError, StorageError

__all__ = [
    "CORRECTION_EVENT_SCHEMA",
    "LABEL_EVENT_SCHEMA",
    "AnomalyStore",
    "new_run_id",
]

_TS = pa.timestamp("us", tz="UTC")

CORRECTION_EVENT_SCHEMA = pa.schema(
    [
        pa.field("event", pa.string(), nullable=False),
        pa.field("correction_id", pa.string(), nullable=False),
        pa.field("tx_id", pa.string(), nullable=False),
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("field", pa.string(), nullable=False),
        pa.field("original_minor", pa.int64(), nullable=False),
        pa.field("corrected_minor", pa.int64(), nullable=False),
        pa.field("anomaly_type", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("model_version", pa.string()),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("run_id", pa.string()),
        pa.field("actor", pa.string(), nullable=False),
        pa.field("note", pa.string()),
        pa.field("at", _TS, nullable=False),
    ]
)
"""One correction event. ``event`` is ``apply`` (the correction takes effect), ``accept`` (an
analyst confirms it) or ``revert`` (it stops taking effect; ``note`` says why). Every event
repeats the correction's facts, so each segment reads on its own."""

LABEL_EVENT_SCHEMA = pa.schema(
    [
        pa.field("label_id", pa.string(), nullable=False),
        pa.field("tx_id", pa.string(), nullable=False),
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),
        pa.field("flagged_type", pa.string()),
        pa.field("analyst", pa.string(), nullable=False),
        pa.field("note", pa.string()),
        pa.field("at", _TS, nullable=False),
    ]
)
"""One analyst label: ``label`` is an anomaly type or ``normal``; ``verdict`` is ``confirm``
(the flag was right), ``reject`` (the entry is normal) or ``label`` (set directly);
``flagged_type`` is what the detector had said."""

_LOGS = {"corrections": CORRECTION_EVENT_SCHEMA, "labels": LABEL_EVENT_SCHEMA}
_SEGMENT = re.compile(r"^(\d{10})\.parquet$")
_RUN_ID = re.compile(r"^\d{8}T\d{12}-[0-9a-f]{8}$")


def new_run_id() -> str:
    """A unique, time-ordered run identifier."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:8]


class AnomalyStore:
    """The anomaly stage's log and run store rooted at one directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def default(cls) -> AnomalyStore:
        """The store of the current settings."""
        from flowbureau.config import get_settings

        settings = get_settings()
        return cls(settings.anomaly.store_dir or settings.data_dir / "anomaly")

    # -- logs ---------------------------------------------------------------------------------

    def _log_dir(self, log: str) -> Path:
        _schema(log)
        return self.root / "logs" / log

    def segments(self, log: str) -> list[tuple[int, Path]]:
        """``(sequence number, path)`` of every segment of ``log``, ascending."""
        directory = self._log_dir(log)
        if not directory.is_dir():
            return []
        found = ((_SEGMENT.match(p.name), p) for p in directory.iterdir())
        return sorted((int(m.group(1)), p) for m, p in found if m)

    def last_sequence(self, log: str) -> int:
        """Sequence number of the last segment of ``log`` (0 when empty)."""
        segments = self.segments(log)
        return segments[-1][0] if segments else 0

    def append(self, log: str, rows: pa.Table) -> int:
        """Append ``rows`` (the log's schema) as one new segment; return its sequence number."""
        schema = _schema(log)
        table = rows.select(schema.names).cast(schema)
        directory = self._log_dir(log)
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f".tmp-{uuid.uuid4().hex}"
        try:
            pq.write_table(table, temporary, compression="zstd")
            with temporary.open("rb") as handle:
                os.fsync(handle.fileno())
            for _attempt in range(1000):
                sequence = self.last_sequence(log) + 1
                try:
                    os.link(temporary, directory / f"{sequence:010d}.parquet")
                except FileExistsError:
                    continue  # another writer took this number
                _fsync_directory(directory)
                return sequence
            raise StorageError(f"could not append to the {log} log: too many writers")
        finally:
            temporary.unlink(missing_ok=True)

    def read(self, log: str) -> pa.Table:
        """Every event of ``log`` in sequence order, with a ``sequence`` column."""
        schema = _schema(log)
        parts = []
        for sequence, path in self.segments(log):
            table = pq.read_table(path).select(schema.names).cast(schema)
            parts.append(table.append_column("sequence", pa.array([sequence] * len(table))))
        if not parts:
            return schema.empty_table().append_column("sequence", pa.array([], pa.int64()))
        return pa.concat_tables(parts)

    # -- runs ---------------------------------------------------------------------------------

    def write_run(
        self, run_id: str, tables: Mapping[str, pa.Table], info: Mapping[str, Any]
    ) -> Path:
        """Write one run's tables and ``run.json`` as the immutable directory ``runs/<run_id>``."""
        if not _RUN_ID.match(run_id):
            raise StorageError(f"malformed run id {run_id!r}")
        runs = self.root / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        staging = runs / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for name, table in tables.items():
                pq.write_table(table, staging / f"{name}.parquet", compression="zstd")
            (staging / "run.json").write_text(
                json.dumps(dict(info), indent=2, sort_keys=True, default=str), encoding="utf-8"
            )
            for path in staging.iterdir():
                with path.open("rb") as handle:
                    os.fsync(handle.fileno())
            staging.rename(runs / run_id)
            _fsync_directory(runs)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return runs / run_id

    def runs(self) -> list[str]:
        """Run ids, oldest first."""
        runs = self.root / "runs"
        if not runs.is_dir():
            return []
        return sorted(p.name for p in runs.iterdir() if p.is_dir() and _RUN_ID.match(p.name))

    def latest_run(self) -> str | None:
        """The newest run id, or None before the first run."""
        runs = self.runs()
        return runs[-1] if runs else None

    def run_info(self, run_id: str) -> dict[str, Any]:
        """The ``run.json`` of a run."""
        path = self.root / "runs" / run_id / "run.json"
        if not path.is_file():
            raise NotFoundError(f"anomaly run {run_id!r} not found under {self.root / 'runs'}")
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        return data

    def read_run(self, run_id: str, name: str) -> pa.Table:
        """One table of a run (``scores``, ``flags`` or ``fills``)."""
        path = self.root / "runs" / run_id / f"{name}.parquet"
        if not path.is_file():
            raise NotFoundError(f"anomaly run {run_id!r} has no table {name!r}")
        return pq.read_table(path)


def _schema(log: str) -> pa.Schema:
    if log not in _LOGS:
        raise StorageError(f"unknown anomaly log {log!r}")
    return _LOGS[log]


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
