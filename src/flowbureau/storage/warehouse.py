"""The Parquet warehouse: atomic, idempotent, crash-safe commits and snapshot readers.

Layout under ``settings.warehouse_dir``::

    manifest.json                      what is committed (see :mod:`.manifest`)
    writer.lock                        held (flock) by the one writer at a time
    data/transactions/bank=B/month=YYYY-MM/<batch>.parquet
    data/<table>/bank=B/<batch>.parquet            statements, quarantine, accounts, ...
    data/annotations/<name>/<scope digest>/<batch>.parquet
    vault/<batch>.parquet              encrypted clear account numbers (not a view)
    staging/<batch>/...                a batch being written (never read)
    journal/<batch>.json               files a batch moved into data/, until published
    tmp/                               DuckDB spill space of the writer

Commit protocol (one writer at a time, any number of readers):

1. ``stage_batch`` writes a batch's Parquet files under ``staging/<batch>/`` (pause point
   ``batch_staged``), writes ``journal/<batch>.json`` listing their final paths and fsyncs it
   (``batch_journaled``), then renames them into ``data/`` and fsyncs (``batch_moved``). Files
   in ``data/`` that the manifest does not list are invisible to readers.
2. ``publish`` (``before_publish``) writes the new manifest listing every batch staged since
   the last publish and renames it over ``manifest.json``: that rename is the commit point
   (``published``). Then it deletes the journals and staging directories.
3. Opening a writer recovers first: every journal whose files the manifest does not list
   belongs to a run that died before its commit point, so those files are deleted; journals
   of committed batches are just removed; ``staging/`` is emptied.

A process killed anywhere therefore leaves either its whole run committed or none of it, and
re-running the same input adds exactly what is missing. Readers (:meth:`Warehouse.connect`)
read ``manifest.json`` once and build views over its files, so they never wait for a writer
and never see half a run. Files replaced by an annotation commit are retired and deleted by a
later commit once ``retire_grace_seconds`` have passed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flowbureau.config import get_settings
from flowbureau.errors import ConflictError, InputError, StorageError
from flowbureau.storage.annotations import ANNOTATIONS
from flowbureau.storage.engine import Engine, WrittenFile, create_engine
from flowbureau.storage.faults import pause_point
from flowbureau.storage.manifest import (
    DataFile,
    Manifest,
    fsync_directory,
    read_manifest,
    write_manifest,
)
from flowbureau.storage.settings import WarehouseSettings
from flowbureau.storage.views import TABLES, create_views

__all__ = [
    "VAULT_SCHEMA",
    "Recovery",
    "TablePart",
    "Warehouse",
    "WarehouseWriter",
    "new_batch_id",
    "validate_bank_id",
    "write_arrow_parquet",
]

VAULT_SCHEMA = pa.schema(
    [
        pa.field("pseudonym", pa.string(), nullable=False),
        pa.field("nonce", pa.binary(), nullable=False),
        pa.field("ciphertext", pa.binary(), nullable=False),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
"""The vault table: AES-GCM sealed clear values by pseudonym (see :mod:`.vault`)."""

_ALL_TABLES: dict[str, pa.Schema] = {**TABLES, "vault": VAULT_SCHEMA}
_BANK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def validate_bank_id(bank_id: str, *, file: str | Path | None = None) -> str:
    """Return ``bank_id`` if it is a safe identifier (letters, digits, ``_.-``), else raise."""
    if not _BANK_ID.fullmatch(bank_id):
        raise InputError(
            f"bank id {bank_id!r} must be 1-64 letters, digits, '_', '.' or '-' "
            "and start with a letter or digit",
            file=file,
            field="bank_id",
        )
    return bank_id


def new_batch_id() -> str:
    """A unique, time-ordered batch identifier (UTC timestamp + random suffix)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class TablePart:
    """One table's rows of a batch: a SQL query over the writer's engine, or an Arrow table.

    The columns must be the table's schema exactly, in order; for ``transactions`` a final
    ``month`` column (``YYYY-MM`` of ``booked_at``) partitions the files and is not stored.
    Arrow rows are written by pyarrow directly (no engine round trip: the fast path for rows
    a caller has assembled in Arrow already).
    """

    table: str
    rows: str | pa.Table
    bank_id: str


@dataclass(frozen=True, slots=True)
class Recovery:
    """What opening a writer cleaned up after an earlier crash."""

    rolled_back_batches: tuple[str, ...] = ()
    deleted_files: int = 0
    cleared_journals: int = 0


class Warehouse:
    """The warehouse rooted at one directory; cheap to create, holds no open resources."""

    def __init__(self, root: Path, settings: WarehouseSettings | None = None) -> None:
        self.root = Path(root)
        self.settings = settings or WarehouseSettings()

    @classmethod
    def default(cls) -> Warehouse:
        """The warehouse of the current settings (``data_dir/warehouse``)."""
        settings = get_settings()
        return cls(settings.warehouse_dir, settings.warehouse)

    def manifest(self) -> Manifest:
        """The currently committed manifest."""
        return read_manifest(self.root)

    def connect(
        self, *, engine: str = "duckdb", manifest: Manifest | None = None, sandbox: bool = False
    ) -> Engine:
        """A read connection with every view over one committed snapshot.

        With ``sandbox`` the connection can read nothing but the warehouse's data files (for
        user-supplied SQL). The caller closes it (it is a context manager).
        """
        snapshot = manifest if manifest is not None else self.manifest()
        connection = create_engine(
            engine, memory_limit=self.settings.memory_limit, threads=self.settings.threads
        )
        try:
            create_views(connection, self.root, snapshot)
            if sandbox:
                connection.restrict_to([self.root / "data"])
        except BaseException:
            connection.close()
            raise
        return connection

    @contextmanager
    def writer(self, *, timeout: float | None = None) -> Iterator[WarehouseWriter]:
        """Hold the writer lock, recover from any crashed writer, and yield a writer.

        Whatever is staged but not published when the block ends (normally or by an error)
        is rolled back. Raises :class:`StorageError` if another writer keeps the lock longer
        than ``timeout`` seconds (default ``lock_timeout_seconds``).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        wait = self.settings.lock_timeout_seconds if timeout is None else timeout
        with _exclusive_lock(self.root / "writer.lock", wait):
            recovery = self.recover()
            writer = WarehouseWriter(self, recovery)
            try:
                yield writer
            finally:
                writer.close()

    def recover(self) -> Recovery:
        """Undo what a crashed writer left behind. Call only while holding the writer lock."""
        manifest = self.manifest()
        referenced = manifest.referenced_paths()
        rolled_back: list[str] = []
        deleted = cleared = 0
        journal_dir = self.root / "journal"
        for journal in sorted(journal_dir.glob("*.json")) if journal_dir.exists() else []:
            entry = json.loads(journal.read_text("utf-8"))
            files = [str(p) for p in entry["files"]]
            if not all(p in referenced for p in files):
                rolled_back.append(str(entry["batch_id"]))
                for path in files:
                    if path not in referenced and (self.root / path).exists():
                        (self.root / path).unlink()
                        deleted += 1
            journal.unlink()
            cleared += 1
        shutil.rmtree(self.root / "staging", ignore_errors=True)
        (self.root / "manifest.json.tmp").unlink(missing_ok=True)
        return Recovery(tuple(rolled_back), deleted, cleared)


@dataclass
class _Pending:
    journals: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


class WarehouseWriter:
    """The single writer: stages batches and annotations, then publishes them atomically.

    Obtain one with :meth:`Warehouse.writer`. :attr:`engine` is a DuckDB connection whose
    views show the committed snapshot *plus* everything this writer staged (so dedupe and
    link queries see earlier batches of the same run); readers elsewhere see none of it until
    :meth:`publish`.
    """

    def __init__(self, warehouse: Warehouse, recovery: Recovery) -> None:
        self.warehouse = warehouse
        self.root = warehouse.root
        self.recovery = recovery
        self.committed = warehouse.manifest()
        self.manifest = self.committed
        self._pending = _Pending()
        settings = warehouse.settings
        self.engine = create_engine(
            "duckdb",
            memory_limit=settings.memory_limit,
            threads=settings.threads,
            temp_directory=self.root / "tmp",
        )
        create_views(self.engine, self.root, self.manifest)

    # -- staging ----------------------------------------------------------------------------

    def stage_batch(self, batch_id: str, parts: Sequence[TablePart]) -> dict[str, list[DataFile]]:
        """Write ``parts`` as one batch: staged, journaled, moved into ``data/``, not visible.

        Returns the files written per table (tables with no rows write nothing).
        """
        staging = self.root / "staging" / batch_id
        written: list[tuple[str, DataFile, Path]] = []
        for part in parts:
            schema = _ALL_TABLES.get(part.table)
            if schema is None:
                raise StorageError(f"unknown warehouse table {part.table!r}")
            validate_bank_id(part.bank_id)
            by_month = part.table == "transactions"
            partition = "month" if by_month else None
            if isinstance(part.rows, pa.Table):
                files = write_arrow_parquet(part.rows, staging / part.table, partition)
            else:
                files = self.engine.write_parquet(
                    part.rows, staging / part.table, partition_by=partition
                )
            for file in files:
                _check_schema(file.path, schema, part.table)
                if part.table == "vault":
                    final = f"vault/{batch_id}.parquet"
                elif by_month:
                    final = (
                        f"data/transactions/bank={part.bank_id}/month={file.partition}/"
                        f"{batch_id}.parquet"
                    )
                else:
                    final = f"data/{part.table}/bank={part.bank_id}/{batch_id}.parquet"
                entry = DataFile(final, file.rows, batch_id, part.bank_id, file.partition)
                written.append((part.table, entry, file.path))
        pause_point("batch_staged")
        self._move_into_place(batch_id, [(entry.path, staged) for _, entry, staged in written])
        by_table: dict[str, list[DataFile]] = {}
        for table, entry, _ in written:
            by_table.setdefault(table, []).append(entry)
        for table, entries in by_table.items():
            self.manifest = self.manifest.with_files(table, entries)
        create_views(self.engine, self.root, self.manifest, changed=set(by_table))
        return by_table

    def replace_annotation(self, name: str, scope: str, rows: pa.Table | str) -> list[DataFile]:
        """Stage ``rows`` (an Arrow table or SQL over :attr:`engine`) as annotation ``name``'s
        scope ``scope``, replacing what that scope held. Visible after :meth:`publish`.

        Raises :class:`ConflictError` if a ``tx_id`` repeats, appears in another scope, or
        names no stored transaction.
        """
        return self.replace_annotations(name, {scope: rows})[scope]

    def replace_annotations(
        self, name: str, scopes: Mapping[str, pa.Table | str]
    ) -> dict[str, list[DataFile]]:
        """:meth:`replace_annotation` of several scopes of one annotation at once: one check
        of all the rows against the store (a ``tx_id`` may also not repeat across the given
        scopes), one journal. Returns the files staged per scope."""
        spec = ANNOTATIONS.get(name)
        if spec is None:
            raise StorageError(
                f"unknown annotation {name!r}; register it in flowbureau.storage.annotations"
            )
        queries: dict[str, str] = {}
        registered: list[str] = []
        for index, (scope, rows) in enumerate(scopes.items()):
            if isinstance(rows, pa.Table):
                relation = f"__annotation_rows_{index}"
                self.engine.register(relation, rows.select(spec.schema.names).cast(spec.schema))
                registered.append(relation)
                queries[scope] = f"SELECT * FROM {relation}"
            else:
                queries[scope] = rows
        others = [
            self.root / f.path
            for s, files in self.manifest.annotations.get(name, {}).items()
            if s not in scopes
            for f in files
        ]
        self.engine.create_parquet_view("__annotation_others", others, spec.schema)
        labelled = " UNION ALL ".join(
            f"SELECT {index} AS __scope, tx_id FROM ({sql})"
            for index, sql in enumerate(queries.values())
        )
        # The stored side is probed, never built: the hash table holds only the new rows.
        problem = self.engine.query(
            f"""
            WITH n AS MATERIALIZED ({labelled}),
            stored AS (SELECT tx_id FROM stored_transactions SEMI JOIN n USING (tx_id))
            SELECT 'repeats within the new rows' AS why, tx_id, max(__scope) AS at FROM n
              GROUP BY tx_id HAVING count(*) > 1 AND count(DISTINCT __scope) = 1
            UNION ALL SELECT 'is already annotated in another scope', tx_id, max(__scope)
              FROM n GROUP BY tx_id HAVING count(DISTINCT __scope) > 1
            UNION ALL SELECT 'is already annotated in another scope', tx_id, __scope FROM n
              SEMI JOIN __annotation_others o USING (tx_id)
            UNION ALL SELECT 'names no stored transaction', tx_id, __scope FROM n
              ANTI JOIN stored s USING (tx_id)
            LIMIT 1
            """
        )
        if problem.num_rows:
            why, tx_id, at = (problem.column(i)[0].as_py() for i in range(3))
            scope = list(queries)[at]
            raise ConflictError(f"annotation {name!r} scope {scope!r}: tx_id {tx_id} {why}")
        batch_id = new_batch_id()
        staged: dict[str, list[DataFile]] = {}
        moves: list[tuple[str, Path]] = []
        for index, (scope, sql) in enumerate(queries.items()):
            files = self.engine.write_parquet(
                sql, self.root / "staging" / batch_id / f"{name}-{index}"
            )
            digest = hashlib.sha256(scope.encode("utf-8")).hexdigest()[:16]
            entries: list[DataFile] = []
            for file in files:
                _check_schema(file.path, spec.schema, name)
                final = f"data/annotations/{name}/{digest}/{batch_id}.parquet"
                entries.append(DataFile(final, file.rows, batch_id))
                moves.append((final, file.path))
            staged[scope] = entries
        self._move_into_place(batch_id, moves)
        now = time.time()
        for scope, entries in staged.items():
            self.manifest = self.manifest.with_annotation(name, scope, entries, now=now)
        for relation in registered:
            self.engine.unregister(relation)
        create_views(self.engine, self.root, self.manifest, changed={name})
        return staged

    def _move_into_place(self, batch_id: str, moves: Sequence[tuple[str, Path]]) -> None:
        journal_dir = self.root / "journal"
        journal_dir.mkdir(parents=True, exist_ok=True)
        journal = journal_dir / f"{batch_id}.json"
        with journal.open("w", encoding="utf-8") as handle:
            json.dump({"batch_id": batch_id, "files": [final for final, _ in moves]}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_directory(journal_dir)
        self._pending.journals.append(journal)
        pause_point("batch_journaled")
        _fsync_all([staged for _, staged in moves], fsync_file)
        directories: set[Path] = set()
        for final, staged in moves:
            target = self.root / final
            if target.parent not in directories:
                target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
            self._pending.files.append(target)
            directories.add(target.parent)
        _fsync_all(sorted(directories), fsync_directory)
        shutil.rmtree(self.root / "staging" / batch_id, ignore_errors=True)
        pause_point("batch_moved")

    # -- commit -----------------------------------------------------------------------------

    def publish(self) -> Manifest:
        """Make everything staged since the last publish visible, atomically; return the manifest.

        Retired files older than the grace period are deleted first (no reader can still hold
        a snapshot that lists them).
        """
        pause_point("before_publish")
        now = time.time()
        grace = self.warehouse.settings.retire_grace_seconds
        expired = [r for r in self.manifest.retired if now - r.retired_at >= grace]
        for retired in expired:
            (self.root / retired.path).unlink(missing_ok=True)
        manifest = replace(
            self.manifest,
            version=self.committed.version + 1,
            committed_at=datetime.now(UTC).isoformat(),
            retired=tuple(r for r in self.manifest.retired if r not in expired),
        )
        write_manifest(self.root, manifest)
        pause_point("published")
        for journal in self._pending.journals:
            journal.unlink(missing_ok=True)
        self._pending = _Pending()
        self.committed = self.manifest = manifest
        return manifest

    def rollback(self) -> None:
        """Delete everything staged since the last publish."""
        for path in self._pending.files:
            path.unlink(missing_ok=True)
        for journal in self._pending.journals:
            journal.unlink(missing_ok=True)
        shutil.rmtree(self.root / "staging", ignore_errors=True)
        self._pending = _Pending()
        self.manifest = self.committed
        create_views(self.engine, self.root, self.manifest)

    def close(self) -> None:
        """Roll back anything unpublished and release the engine."""
        try:
            if self._pending.journals or self._pending.files:
                self.rollback()
        finally:
            self.engine.close()

    def __enter__(self) -> WarehouseWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 1}
"""How Arrow rows are written: zstd level 1 writes about as fast as snappy and stays within a
few per cent of level 3's size (the DuckDB engine writes the same)."""

_UNIQUE_COLUMNS = frozenset(
    {
        "tx_id",
        "booked_at",
        "amount_minor",
        "balance_after_minor",
        "reference",
        "end_to_end_id",
        "source_location",
    }
)
"""Columns whose values rarely repeat: dictionary-encoding them is wasted work (about a fifth
of the write time of a transactions file) and does not shrink them."""


def write_arrow_parquet(
    table: pa.Table, directory: Path, partition_by: str | None = None
) -> list[WrittenFile]:
    """Write ``table`` as ``directory/part-0.parquet`` (or one file per value of column
    ``partition_by``, which is not stored, as ``directory/<col>=<value>.parquet``); no file for
    no rows."""
    directory.mkdir(parents=True, exist_ok=True)
    if partition_by is None:
        if not table.num_rows:
            return []
        target = directory / "part-0.parquet"
        pq.write_table(table, target, use_dictionary=_dictionary(table), **PARQUET_OPTIONS)
        return [WrittenFile(target, table.num_rows)]
    keys = table.column(partition_by)
    if (
        len(keys) > 1
        and not pc.all(pc.greater_equal(keys.slice(1), keys.slice(0, len(keys) - 1))).as_py()
    ):
        table = table.sort_by(partition_by)
        keys = table.column(partition_by)
    body = table.drop_columns([partition_by])
    dictionary = _dictionary(body)
    values = np.asarray(keys.to_numpy(zero_copy_only=False), dtype=object)
    if not len(values):
        return []
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    ends = np.append(starts[1:], len(values))
    written = [
        WrittenFile(directory / f"{partition_by}={v}.parquet", end - start, str(v))
        for start, end, v in zip(starts.tolist(), ends.tolist(), values[starts], strict=True)
    ]

    def write(file: WrittenFile, start: int) -> None:
        pq.write_table(
            body.slice(start, file.rows), file.path, use_dictionary=dictionary, **PARQUET_OPTIONS
        )

    # Flat files (no directory per value); pyarrow releases the GIL, so they are written in
    # parallel. map() raises the first error.
    workers = min(len(written), os.cpu_count() or 1, WRITE_THREADS)
    if workers <= 1:
        for file, start in zip(written, starts.tolist(), strict=True):
            write(file, start)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(write, written, starts.tolist()):
                pass
    return written


WRITE_THREADS = 4
"""Partition files written at once by :func:`write_arrow_parquet`."""


FSYNC_THREADS = 8
"""fsyncs in flight at once when a batch is moved into place: the disk overlaps them (about 3x
faster than one after another on a virtualised disk)."""


def fsync_file(path: Path) -> None:
    """Make ``path``'s contents durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_all(paths: Sequence[Path], sync: Callable[[Path], None]) -> None:
    """``sync`` every path, several at once (fsync releases the GIL); the first error raises."""
    if len(paths) <= 1:
        for path in paths:
            sync(path)
        return
    with ThreadPoolExecutor(max_workers=min(FSYNC_THREADS, len(paths))) as pool:
        for _ in pool.map(sync, paths):
            pass


def _dictionary(table: pa.Table) -> list[str]:
    return [name for name in table.column_names if name not in _UNIQUE_COLUMNS]


def _check_schema(path: Path, expected: pa.Schema, table: str) -> None:
    actual = pq.read_schema(path)
    got = [(f.name, _plain(f.type)) for f in actual]
    want = [(f.name, _plain(f.type)) for f in expected]
    if got != want:
        raise StorageError(f"rows written for {table!r} have columns {got}; expected {want}")


def _plain(data_type: pa.DataType) -> str:
    if pa.types.is_list(data_type):
        return f"list<{_plain(data_type.value_type)}>"
    if pa.types.is_timestamp(data_type):
        return f"timestamp[{data_type.unit}, tz={'UTC' if data_type.tz else None}]"
    return str(data_type)


@contextmanager
def _exclusive_lock(path: Path, timeout: float) -> Iterator[None]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text("utf-8").strip() or "unknown"
                    raise StorageError(
                        f"another writer (pid {holder}) holds {path} for more than "
                        f"{timeout:g} s; wait for it to finish"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(os.getpid()).encode())
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
