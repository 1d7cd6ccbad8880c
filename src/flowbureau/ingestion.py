"""The ingest pipeline: bank files -> read -> clean -> warehouse, streaming, in batches.

Rules:
- ``ingest`` expands directories recursively (hidden files skipped, sorted paths), infers each
  file's bank from a ``banks/<bank_id>/`` path component unless ``bank_id`` is given, and
  reads every bank's account registers before any statement, so enterprise ids and
  own-account transfers are known when statements are cleaned.
- Statements stream: files are read one at a time and buffered per bank until the buffer
  holds ``settings.ingest.chunk_rows`` entries; then the buffer becomes one :class:`Batch`
  (cleaned by vectorised SQL, :mod:`flowbureau.cleaning.batch`) and is committed with
  :func:`commit_batch`. Memory is bounded by one batch plus the largest file.
- A file whose SHA-256 was already ingested (before, or earlier in this run) stores nothing:
  it is counted as a duplicate file with all its records as duplicates. Entries whose
  ``tx_id`` is already stored (overlapping statement periods) or repeats within a batch are
  counted as duplicates and not stored again.
- A run is one warehouse transaction: batches are staged as they fill, and after the last
  one the cross-bank payment links and the outlier flags of the touched banks are
  recomputed, then everything is published at once. Any error (a malformed file, a broken
  rules file) aborts the run and nothing of it becomes visible; a crash is rolled back when
  the next writer opens the warehouse. Re-running the same input is always safe.
- One path in: every batch's records and statements pass the consortium contract and go on the
  log (:func:`commit_batch`, :mod:`flowbureau.ledger.intake`); the warehouse stores exactly the
  rows admitted, quarantined entries never reach the log, and the publish is the log append's
  commit point (a crash between the two is settled when the ledger is next opened).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flowbureau.cleaning import batch as batch_sql
from flowbureau.cleaning import links, outliers
from flowbureau.cleaning.identifiers import pseudonym_key, pseudonymise, statement_id
from flowbureau.cleaning.normalise import map_distinct, normalise_name
from flowbureau.cleaning.rules import RuleSet, load_rules, rule_files
from flowbureau.config import Settings, get_settings
from flowbureau.errors import FlowbureauError, InputError
from flowbureau.formats import (
    BOOKED,
    FORMATS,
    INVALID_PREFIX,
    ParsedStatement,
    ReadResult,
    read_file,
)
from flowbureau.formats.base import EntrySpan
from flowbureau.formats.detection import Detection, detect_file, read_files
from flowbureau.schema import (
    ACCOUNT_SCHEMA,
    QUARANTINE_SCHEMA,
    RAW_ENTRY_SCHEMA,
    SOURCE_FILE_SCHEMA,
    STATEMENT_SCHEMA,
    STORED_TRANSACTION_SCHEMA,
    is_valid_credit_code,
)
from flowbureau.storage import vault
from flowbureau.storage.engine import Engine
from flowbureau.storage.warehouse import (
    TablePart,
    Warehouse,
    WarehouseWriter,
    new_batch_id,
    validate_bank_id,
)

if TYPE_CHECKING:
    from flowbureau.ledger.intake import IngestLedger, LedgerSummary

__all__ = ["Batch", "FileProblem", "IngestReport", "commit_batch", "infer_bank_id", "ingest"]

REGISTER_SUFFIXES = frozenset({".csv", ".xlsx"})
"""Extensions an account register can have (others are never sniffed as one)."""
MIN_FILES_FOR_POOL = 32
"""Fewer statement files than this are read in-process (a pool costs ~1 s to start)."""
TASK_FILES = 64
"""Files one worker reads per task (bank CSV exports among them are read in bulk)."""
_NO_RAW_ENTRIES = RAW_ENTRY_SCHEMA.empty_table()


@dataclass(frozen=True, slots=True)
class FileProblem:
    """Something a user should look at in one input file (the run still succeeded)."""

    file: str
    kind: str
    message: str
    location: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """``{"file", "kind", "message", "location"}``."""
        return {
            "file": self.file,
            "kind": self.kind,
            "message": self.message,
            "location": self.location,
        }


@dataclass
class IngestReport:
    """What one ``ingest`` run did. ``records`` = ``new_records + duplicates + quarantined``."""

    ingest_id: str
    files: int = 0
    records: int = 0
    new_records: int = 0
    duplicates: int = 0
    quarantined: int = 0
    payment_links: int = 0
    totals: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[FileProblem] = field(default_factory=list)
    ledger: LedgerSummary | None = None
    """What the consortium log did for the run (entries, checkpoint, finality)."""

    def to_json(self) -> dict[str, Any]:
        """The run summary as JSON-ready data (``outflow_minor`` is a positive magnitude);
        ``ledger`` is :meth:`LedgerSummary.to_json` when the run went through the log."""
        data: dict[str, Any] = {
            "files": self.files,
            "records": self.records,
            "new_records": self.new_records,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "payment_links": self.payment_links,
            "totals": {c: dict(v) for c, v in sorted(self.totals.items())},
            "problems": [p.to_json() for p in self.problems],
        }
        if self.ledger is not None:
            data["ledger"] = self.ledger.to_json()
        return data


@dataclass(frozen=True)
class Batch:
    """One bank's cleaned chunk, waiting in the writer's engine to be committed.

    Its rows live in temp tables of :attr:`engine` (so nothing is copied into Python);
    :meth:`records` / :meth:`statements` / :meth:`quarantine` materialise them as Arrow
    tables in the stored schemas for whoever needs to inspect them before commit. They are
    valid only until :func:`commit_batch` returns (the temp tables are then dropped).
    """

    batch_id: str
    bank_id: str
    ingest_id: str
    engine: Engine
    parts: tuple[TablePart, ...]

    def _table(self, name: str, schema: pa.Schema) -> pa.Table:
        for part in self.parts:
            if part.table == name:
                rows = (
                    part.rows if isinstance(part.rows, pa.Table) else self.engine.query(part.rows)
                )
                return rows.select(schema.names).cast(schema)
        return schema.empty_table()

    def records(self) -> pa.Table:
        """The new transactions (``STORED_TRANSACTION_SCHEMA``) this batch stores."""
        return self._table("transactions", STORED_TRANSACTION_SCHEMA)

    def statements(self) -> pa.Table:
        """Its statements (``STATEMENT_SCHEMA``)."""
        return self._table("statements", STATEMENT_SCHEMA)

    def quarantine(self) -> pa.Table:
        """Its quarantined entries (``QUARANTINE_SCHEMA``)."""
        return self._table("quarantine", QUARANTINE_SCHEMA)


def commit_batch(writer: WarehouseWriter, batch: Batch, ledger: IngestLedger | None = None) -> None:
    """Commit one batch into the run's transaction: the single door into the warehouse.

    Everything a batch stores (records, statements, quarantine, accounts, sources,
    duplicates, vault rows) passes here together, so checks that must hold for every stored
    record belong here, before ``stage_batch``: ``ledger`` (the consortium's one path in,
    :mod:`flowbureau.ledger.intake`) runs the contract on ``batch.records()`` /
    ``batch.statements()``, packs them into a signed bundle and admits it, raising to refuse
    the batch (which aborts the run: nothing of it is published). The records and statements
    stored are the rows it returns - exactly those whose leaves are on the log; quarantined
    entries never reach it. The log entries are appended when the run publishes.
    """
    parts = batch.parts
    if ledger is not None:
        from flowbureau.ledger.intake import contribution_parts

        records, statements = ledger.contribute(
            writer,
            bank_id=batch.bank_id,
            batch_id=batch.batch_id,
            records=batch.records(),
            statements=batch.statements(),
        )
        parts = (
            *contribution_parts(bank_id=batch.bank_id, records=records, statements=statements),
            *(p for p in parts if p.table not in ("transactions", "statements")),
        )
    writer.stage_batch(batch.batch_id, parts)


def infer_bank_id(path: Path) -> str | None:
    """The ``<bank_id>`` of a ``.../banks/<bank_id>/...`` path, or None."""
    parts = path.parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "banks" and index + 1 < len(parts) - 1:
            return parts[index + 1]
    return None


@dataclass(frozen=True, slots=True)
class _Input:
    path: Path
    bank_id: str


def _expand(paths: Sequence[Path], bank_id: str | None) -> list[_Input]:
    found: list[_Input] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files = [path]
        else:
            raise InputError("no such file or directory", file=path)
        resolved: dict[Path, Path] = {}  # a directory's files share its resolution
        for file in files:
            bank = bank_id or infer_bank_id(_resolve(file, resolved))
            if bank is None:
                raise InputError(
                    "cannot tell which bank this file comes from: put it under a "
                    "banks/<bank_id>/ directory or pass --bank",
                    file=file,
                    field="bank_id",
                )
            found.append(_Input(file, validate_bank_id(bank, file=file)))
    return found


def _resolve(file: Path, directories: dict[Path, Path]) -> Path:
    """``file.resolve()``, resolving each parent directory once (a symlink resolves itself)."""
    if file.is_symlink():
        return file.resolve()
    parent = directories.get(file.parent)
    if parent is None:
        parent = directories[file.parent] = file.parent.resolve()
    return parent / file.name


def _record_count(entries: pa.Table) -> int:
    status = entries.column("status")
    booked = pc.or_(pc.equal(status, BOOKED), pc.starts_with(status, INVALID_PREFIX))
    return int(pc.sum(booked).as_py() or 0)


@dataclass(frozen=True, slots=True)
class _Chunk:
    """A buffer of one bank's files, prepared for SQL (see :mod:`flowbureau.cleaning.batch`)."""

    entries: pa.Table
    files: pa.Table
    statements: pa.Table
    clear: dict[str, str]
    now: datetime


class _Columns:
    """Rows of a small table collected column-wise, then built in one call."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.values: dict[str, list[Any]] = {name: [] for name in schema.names}

    def add(self, **row: Any) -> None:
        """Append one row (every column but those :meth:`table` is given)."""
        for name, value in row.items():
            self.values[name].append(value)

    def table(self, **given: pa.Array) -> pa.Table:
        """The collected rows in ``schema``; ``given`` supplies whole columns."""
        columns = [
            given[f.name] if f.name in given else pa.array(self.values[f.name], f.type)
            for f in self.schema
        ]
        return pa.Table.from_arrays(columns, schema=self.schema)


class _Pieces:
    """A buffer's entries with ``stmt_idx`` / ``entry_no``, assembled from as few slices as
    possible: statements read in bulk share a table (``ParsedStatement.span``), and a run of
    adjacent ones becomes one zero-copy slice instead of thousands of small tables."""

    def __init__(self) -> None:
        self._shared: dict[int, tuple[pa.Table, list[tuple[int, int, int]]]] = {}
        self._alone: list[pa.Table] = []

    def add(self, parsed: ParsedStatement, stmt_idx: int) -> None:
        """Add one statement's entries as statement ``stmt_idx``."""
        rows = parsed.entries.num_rows
        if not rows:
            return
        span = parsed.span
        if span is None:
            self._alone.append(_numbered(parsed.entries, np.full(rows, stmt_idx), np.arange(rows)))
            return
        self._shared.setdefault(id(span.table), (span.table, []))[1].append(
            (span.offset, rows, stmt_idx)
        )

    def table(self) -> pa.Table:
        """Every added entry, in no particular row order (SQL orders by the two columns)."""
        parts = list(self._alone)
        for table, members in self._shared.values():
            members.sort()
            run: list[tuple[int, int, int]] = []
            for member in members:
                if run and run[-1][0] + run[-1][1] != member[0]:
                    parts.append(_run(table, run))
                    run = []
                run.append(member)
            parts.append(_run(table, run))
        if not parts:
            return _EMPTY_ENTRIES
        return pa.concat_tables(parts)


def _run(table: pa.Table, run: Sequence[tuple[int, int, int]]) -> pa.Table:
    """Adjacent statements ``(offset, rows, stmt_idx)`` of a shared table as one slice."""
    offsets = np.array([m[0] for m in run], dtype=np.int64)
    sizes = np.array([m[1] for m in run], dtype=np.int64)
    total = int(sizes.sum())
    stmt = np.repeat(np.array([m[2] for m in run], dtype=np.int64), sizes)
    entry = np.arange(total) - np.repeat(offsets - offsets[0], sizes)
    return _numbered(table.slice(int(offsets[0]), total), stmt, entry)


def _numbered(entries: pa.Table, stmt_idx: Any, entry_no: Any) -> pa.Table:
    entries = entries.select(RAW_ENTRY_SCHEMA.names).cast(RAW_ENTRY_SCHEMA)
    return entries.append_column("stmt_idx", pa.array(stmt_idx, pa.int32())).append_column(
        "entry_no", pa.array(entry_no, pa.int32())
    )


class _Run:
    """State of one ``ingest`` call (the writer, report, caches)."""

    def __init__(
        self,
        writer: WarehouseWriter,
        settings: Settings,
        rules: RuleSet,
        report: IngestReport,
        ledger: IngestLedger | None = None,
    ) -> None:
        self.writer = writer
        self.ledger = ledger
        self.engine = writer.engine
        self.settings = settings
        self.rules = rules
        self.report = report
        self.key = pseudonym_key()
        self.banks: set[str] = set()
        self.duplicate_files: dict[str, list[dict[str, Any]]] = {}
        known = self.engine.query(
            "SELECT file_sha256, any_value(records) AS records FROM sources "
            "WHERE status = 'ingested' GROUP BY file_sha256"
        )
        self.known_files: dict[str, int | ReadResult] = dict(
            zip(
                known.column("file_sha256").to_pylist(),
                known.column("records").to_pylist(),
                strict=True,
            )
        )
        self.stored: dict[str, tuple[str, str | None, int] | None] = {}
        """``(format, profile, statements)`` of each file stored before this run (``None``
        when its ``sources`` rows disagree): enough to skip it again without reading it."""
        for row in self.engine.query(
            "SELECT file_sha256, format, profile, statements FROM sources WHERE status = 'ingested'"
        ).to_pylist():
            seen = (row["format"], row["profile"], int(row["statements"]))
            sha = row["file_sha256"]
            self.stored[sha] = seen if self.stored.get(sha, seen) == seen else None

        self._codes: dict[str, bool] = {}
        self._names: dict[str | None, str | None] = {}

    @property
    def ingest_id(self) -> str:
        return self.report.ingest_id

    def _valid_code(self, code: str) -> bool:
        valid = self._codes.get(code)
        if valid is None:
            valid = self._codes[code] = is_valid_credit_code(code)
        return valid

    def _name(self, name: str | None) -> str | None:
        if name not in self._names:
            self._names[name] = normalise_name(name)
        return self._names[name]

    # -- registers ---------------------------------------------------------------------------

    def add_registers(self, bank_id: str, results: Sequence[ReadResult]) -> None:
        """Stage the account registers of one bank: account rows (+ vault) and source rows."""
        if not results:
            return
        now = datetime.now(UTC)
        accounts: list[dict[str, Any]] = []
        sources: list[dict[str, Any]] = []
        clear: dict[str, str] = {}
        for result in results:
            numbers = pa.array([r.account_number for r in result.accounts], pa.string())
            pseudonyms, pairs = pseudonymise(numbers, self.key)
            clear.update(pairs)
            for record, pseudonym in zip(result.accounts, pseudonyms.to_pylist(), strict=True):
                accounts.append(
                    {
                        "account_id": pseudonym,
                        "bank_id": bank_id,
                        "enterprise_id": record.credit_code,
                        "owner_name": record.owner_name,
                        "owner_name_norm": normalise_name(record.owner_name),
                        "currency": record.currency,
                        "source": "register",
                        "source_file": str(result.path),
                        "source_location": record.location,
                        "file_sha256": result.sha256,
                        "ingest_id": self.ingest_id,
                        "recorded_at": now,
                    }
                )
            sources.append(self._source_row(result, bank_id, now))
        self.engine.register("r_accounts", pa.Table.from_pylist(accounts, schema=ACCOUNT_SCHEMA))
        self.engine.register("r_sources", pa.Table.from_pylist(sources, schema=SOURCE_FILE_SCHEMA))
        parts = (
            TablePart("accounts", "SELECT * FROM r_accounts", bank_id),
            TablePart("sources", "SELECT * FROM r_sources", bank_id),
            *self._vault_parts(clear, bank_id),
        )
        commit_batch(
            self.writer,
            Batch(new_batch_id(), bank_id, self.ingest_id, self.engine, parts),
            self.ledger,
        )
        for name in ("r_accounts", "r_sources", "v_candidates", "v_rows"):
            self.engine.unregister(name)

    def _source_row(
        self,
        result: ReadResult,
        bank_id: str,
        now: datetime,
        *,
        status: str = "ingested",
        duplicates: int = 0,
        statements: int | None = None,
    ) -> dict[str, Any]:
        return {
            "file_sha256": result.sha256,
            "bank_id": bank_id,
            "source_file": str(result.path),
            "format": result.format,
            "profile": result.profile,
            "status": status,
            "statements": len(result.statements) if statements is None else statements,
            "records": duplicates,
            "new_records": 0,
            "duplicates": duplicates,
            "quarantined": 0,
            "pending": 0,
            "ingest_id": self.ingest_id,
            "ingested_at": now,
        }

    def _vault_parts(self, clear: dict[str, str], bank_id: str) -> list[TablePart]:
        if not clear:
            return []
        files = [str(self.writer.root / f.path) for f in self.writer.manifest.files("vault")]
        self.engine.register(
            "v_candidates", pa.table({"pseudonym": pa.array(sorted(clear), pa.string())})
        )
        new = self.engine.query(vault.new_entries_sql(files, "v_candidates"))
        wanted = new.column("pseudonym").to_pylist()
        if not wanted:
            return []
        self.engine.register("v_rows", vault.seal({p: clear[p] for p in wanted}))
        return [TablePart("vault", "SELECT * FROM v_rows", bank_id)]

    # -- statements --------------------------------------------------------------------------

    def flush(self, bank_id: str, buffer: list[ReadResult]) -> None:
        """Clean and commit the buffered statement files of one bank as one batch.

        Per statement only Python bookkeeping runs here (facts, problems); entries are
        assembled once for the whole buffer (runs of statements read in bulk are one slice of
        their shared table) and pseudonymised, normalised and filled column-wise.
        """
        if not buffer:
            return
        now = datetime.now(UTC)
        files = _Columns(_FILES_SCHEMA)
        statements = _Columns(_STATEMENTS_SCHEMA)
        pieces = _Pieces()
        accounts: list[str | None] = []  # per statement: stated, else its entries' only one
        stated: list[str | None] = []  # per statement: the account its facts state
        for file_idx, result in enumerate(buffer):
            pending = 0
            for index, parsed in enumerate(result.statements):
                stmt_idx = len(accounts)
                facts = parsed.facts
                account = facts.account_number
                if account is None and parsed.entries.num_rows:
                    column = parsed.entries.column("account_number")
                    numbers = pc.unique(column.drop_null()).to_pylist()
                    account = numbers[0] if len(numbers) == 1 else None
                accounts.append(account)
                stated.append(facts.account_number)
                owner_code = facts.owner_id if facts.owner_id else None
                if owner_code is not None and not self._valid_code(owner_code):
                    self.report.problems.append(
                        FileProblem(
                            str(result.path),
                            "invalid_credit_code",
                            f"statement owner id {owner_code!r} is not a valid unified social "
                            "credit code; ignored",
                            facts.location,
                        )
                    )
                    owner_code = None
                statements.add(
                    stmt_idx=stmt_idx,
                    file_idx=file_idx,
                    statement_id=statement_id(result.sha256, index),
                    location=facts.location,
                    owner_name=facts.owner_name,
                    owner_name_norm=self._name(facts.owner_name),
                    owner_enterprise_id=owner_code,
                    currency=facts.currency,
                    opening_balance_minor=facts.opening_balance_minor,
                    closing_balance_minor=facts.closing_balance_minor,
                    period_start=facts.period_start,
                    period_end=facts.period_end,
                    pending=parsed.pending.num_rows,
                )
                pending += parsed.pending.num_rows
                self._statement_problems(result, parsed, account)
                pieces.add(parsed, stmt_idx)
            files.add(
                file_idx=file_idx,
                source_file=str(result.path),
                file_sha256=result.sha256,
                format=result.format,
                profile=result.profile,
                statements=len(result.statements),
                pending=pending,
            )
        clear: dict[str, str] = {}
        account_ids, pairs = pseudonymise(pa.array(accounts, pa.string()), self.key)
        clear.update(pairs)
        entries = pieces.table()
        numbers = entries.column("account_number")
        if any(a is not None for a in stated):  # an entry without a number is the statement's
            numbers = pc.coalesce(
                numbers, pa.array(stated, pa.string()).take(entries.column("stmt_idx"))
            )
        entry_ids, pairs = pseudonymise(numbers, self.key)
        clear.update(pairs)
        counterparty_ids, pairs = pseudonymise(entries.column("counterparty_account"), self.key)
        clear.update(pairs)
        names = map_distinct(entries.column("counterparty_name"), normalise_name)
        entries = (
            entries.drop_columns(["account_number", "counterparty_account"])
            .append_column("account_id", entry_ids)
            .append_column("counterparty_account", counterparty_ids)
            .append_column("counterparty_name_norm", names)
        )
        self._clean_and_commit(
            bank_id,
            _Chunk(entries, files.table(), statements.table(account_id=account_ids), clear, now),
        )

    def _statement_problems(
        self, result: ReadResult, parsed: ParsedStatement, account_id: str | None
    ) -> None:
        path = str(result.path)
        location = parsed.facts.location
        for warning in parsed.warnings:
            kind = "reconciliation" if "does not reconcile" in warning else "warning"
            self.report.problems.append(FileProblem(path, kind, warning, location))
        if parsed.pending.num_rows:
            self.report.problems.append(
                FileProblem(
                    path,
                    "pending",
                    f"{parsed.pending.num_rows} pending entries reported, not stored",
                    location,
                )
            )
        if account_id is None:
            self.report.problems.append(
                FileProblem(
                    path,
                    "no_account",
                    "statement names no account; its entries are quarantined",
                    location,
                )
            )

    def _clean_and_commit(self, bank_id: str, chunk: _Chunk) -> None:
        engine = self.engine
        entries = chunk.entries.append_column(
            "row_idx", pa.array(np.arange(chunk.entries.num_rows), pa.int64())
        )
        engine.register("b_entries", entries)
        engine.register("b_files", chunk.files)
        engine.register("b_statements", chunk.statements)
        engine.execute(
            "CREATE OR REPLACE TEMP TABLE b_accounts AS "
            "SELECT account_id, enterprise_id, owner_name_norm FROM accounts"
        )
        engine.execute(batch_sql.reconcile_sql())
        engine.execute(batch_sql.standardise_sql(timezone=self.settings.timezone))
        for statement in batch_sql.tallies_sql():
            engine.execute(statement)
        for statement in batch_sql.rows_sql(bank_id=bank_id, rules=self.rules):
            engine.execute(statement)
        self._existing_ids(bank_id)
        for statement in batch_sql.marks_sql():
            engine.execute(statement)
        ingest_id, now = self.ingest_id, chunk.now
        records = _records(
            engine.query(batch_sql.new_rows_sql()), entries, chunk, bank_id, ingest_id
        )
        parts = (
            TablePart("transactions", records, bank_id),
            TablePart(
                "statements",
                batch_sql.statements_sql(bank_id=bank_id, ingest_id=ingest_id, now=now),
                bank_id,
            ),
            TablePart(
                "quarantine",
                batch_sql.quarantine_sql(bank_id=bank_id, ingest_id=ingest_id, now=now),
                bank_id,
            ),
            TablePart(
                "accounts",
                batch_sql.accounts_sql(bank_id=bank_id, ingest_id=ingest_id, now=now),
                bank_id,
            ),
            TablePart(
                "sources",
                batch_sql.sources_sql(bank_id=bank_id, ingest_id=ingest_id, now=now),
                bank_id,
            ),
            TablePart(
                "duplicates",
                batch_sql.duplicates_sql(bank_id=bank_id, ingest_id=ingest_id),
                bank_id,
            ),
            *self._vault_parts(chunk.clear, bank_id),
        )
        counts = engine.query(
            "SELECT coalesce(sum(records), 0) AS records, "
            "coalesce(sum(quarantined), 0) AS quarantined FROM b_counts"
        ).to_pylist()[0]
        new = engine.query(
            "SELECT currency, count(*) AS n, "
            "coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0) AS inflow, "
            "coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0) AS outflow "
            f"FROM b_marked WHERE {batch_sql.NEW} GROUP BY currency"
        ).to_pylist()
        for reason in engine.query(
            "SELECT source_file, reject_reason, count(*) AS n, "
            "arg_min(location, stmt_idx::BIGINT * 4294967296 + entry_no) AS first "
            "FROM b_rejects GROUP BY ALL ORDER BY ALL"
        ).to_pylist():
            self.report.problems.append(
                FileProblem(
                    reason["source_file"],
                    "quarantine",
                    f"{reason['n']} entries quarantined: {reason['reject_reason']}",
                    reason["first"],
                )
            )
        for row in engine.query(
            "SELECT f.file_sha256, coalesce(sum(c.records), 0) AS records "
            "FROM b_files f LEFT JOIN b_counts c USING (file_idx) GROUP BY ALL"
        ).to_pylist():
            self.known_files[row["file_sha256"]] = int(row["records"])
        batch = Batch(new_batch_id(), bank_id, self.ingest_id, engine, parts)
        commit_batch(self.writer, batch, self.ledger)
        stored = sum(int(row["n"]) for row in new)
        self.report.records += int(counts["records"])
        self.report.quarantined += int(counts["quarantined"])
        self.report.new_records += stored
        self.report.duplicates += int(counts["records"]) - int(counts["quarantined"]) - stored
        for row in new:
            totals = self.report.totals.setdefault(
                row["currency"], {"inflow_minor": 0, "outflow_minor": 0}
            )
            totals["inflow_minor"] += int(row["inflow"])
            totals["outflow_minor"] += int(row["outflow"])
        if stored:
            self.banks.add(bank_id)
        for view in ("b_marked", "b_ok", "b_std", "existing_ids"):
            engine.execute(f"DROP VIEW IF EXISTS {view}")
        for name in ("b_entries", "b_files", "b_statements", "v_candidates", "v_rows"):
            engine.unregister(name)
        for table in (
            "b_stmts",
            "b_counts",
            "b_rejects",
            "b_rows",
            "b_dups",
            "b_existing",
            "b_accounts",
        ):
            engine.execute(f"DROP TABLE IF EXISTS {table}")

    def _existing_ids(self, bank_id: str) -> None:
        months = self.engine.query("SELECT DISTINCT month FROM b_rows").column(0).to_pylist()
        wanted = {_shift_month(m, d) for m in months for d in (-1, 0, 1)}
        paths = [
            self.writer.root / f.path
            for f in self.writer.manifest.files("transactions")
            if f.bank_id == bank_id and f.month in wanted
        ]
        self.engine.create_parquet_view("existing_ids", paths, STORED_TRANSACTION_SCHEMA)

    def is_duplicate(self, bank_id: str, result: ReadResult) -> bool:
        """True (and counted) when ``result``'s file was ingested before; else remember it."""
        self.report.files += 1
        seen = self.known_files.get(result.sha256)
        if seen is None:
            # Counted when needed: by SQL once its batch is cleaned, or here if it repeats first.
            self.known_files[result.sha256] = result if result.statements else 0
            return False
        if isinstance(seen, ReadResult):
            seen = sum(_record_count(s.entries) for s in seen.statements)
            self.known_files[result.sha256] = seen
        self._count_duplicate(bank_id, result, seen)
        return True

    def was_stored(self, found: Detection) -> bool:
        """True when the file ``found`` judged was stored before this run and would be read
        as it was then: it need not be read again (:meth:`skip_stored`). Files repeated
        within this run are left to :meth:`is_duplicate`."""
        if found.sha256 is None or found.choice is None:
            return False
        stored = self.stored.get(found.sha256)
        return (
            stored is not None
            and stored[:2] == found.choice
            and isinstance(self.known_files.get(found.sha256), int)
        )

    def skip_stored(self, bank_id: str, path: Path, found: Detection) -> None:
        """Count the file at ``path`` (:meth:`was_stored`) as :meth:`is_duplicate` counts a
        duplicate, without reading it."""
        sha256 = found.sha256 or ""
        stored, records = self.stored[sha256], self.known_files[sha256]
        assert stored is not None
        assert found.choice is not None
        assert isinstance(records, int)
        self.report.files += 1
        result = ReadResult(path, sha256, found.choice[0], found.choice[1], [], [])
        self._count_duplicate(bank_id, result, records, statements=stored[2])

    def _count_duplicate(
        self, bank_id: str, result: ReadResult, known: int, *, statements: int | None = None
    ) -> None:
        self.duplicate_files.setdefault(bank_id, []).append(
            self._source_row(
                result,
                bank_id,
                datetime.now(UTC),
                status="duplicate_file",
                duplicates=known,
                statements=statements,
            )
        )
        self.report.records += known
        self.report.duplicates += known
        self.report.problems.append(
            FileProblem(
                str(result.path),
                "duplicate_file",
                f"this file (SHA-256 {result.sha256[:12]}...) was already ingested; "
                + (
                    "its accounts were not recorded again"
                    if result.format == "register"
                    else f"its {known} records were not stored again"
                ),
            )
        )

    def add_duplicate_files(self, bank_id: str) -> None:
        """Record the files of ``bank_id`` skipped as duplicates (a ``sources`` row each)."""
        rows = self.duplicate_files.pop(bank_id, [])
        if not rows:
            return
        self.engine.register("d_sources", pa.Table.from_pylist(rows, schema=SOURCE_FILE_SCHEMA))
        parts = (TablePart("sources", "SELECT * FROM d_sources", bank_id),)
        commit_batch(
            self.writer,
            Batch(new_batch_id(), bank_id, self.ingest_id, self.engine, parts),
            self.ledger,
        )
        self.engine.unregister("d_sources")

    # -- after the last batch ----------------------------------------------------------------

    def link_payments(self) -> None:
        """Link new debits and credits across accounts and stage the annotation."""
        if not self.banks:
            return
        engine = self.engine
        for statement in links.candidates_sql(
            ingest_id=self.ingest_id,
            window_days=self.settings.ingest.link_window_days,
            timezone=self.settings.timezone,
        ):
            engine.execute(statement)
        for _ in range(links.MAX_ROUNDS):
            for statement in links.ROUND_SQL:
                engine.execute(statement)
            if not engine.query("SELECT count(*) FROM link_round").column(0)[0].as_py():
                break
        count = int(engine.query("SELECT count(*) FROM link_pairs").column(0)[0].as_py())
        if count:
            engine.execute(
                "CREATE OR REPLACE TEMP TABLE link_rows AS "
                + links.annotation_sql(ingest_id=self.ingest_id)
            )
            self.writer.replace_annotation(
                "payment_links", self.ingest_id, "SELECT * FROM link_rows"
            )
        self.report.payment_links = count
        for table in ("link_cand", "link_pairs", "link_round", "link_rows"):
            engine.execute(f"DROP TABLE IF EXISTS {table}")

    def flag_outliers(self) -> None:
        """Recompute the outlier annotation of every bank that received new records."""
        if not self.banks:
            return
        options = self.settings.ingest
        banks = ", ".join("'" + b.replace("'", "''") + "'" for b in sorted(self.banks))
        sql = outliers.outliers_sql(
            f"(SELECT * FROM stored_transactions WHERE bank_id IN ({banks}))",
            min_history=options.outlier_min_history,
            threshold=options.outlier_threshold,
        )
        self.engine.execute(f"CREATE OR REPLACE TEMP TABLE o_rows AS {sql}")  # one pass
        self.writer.replace_annotations(
            "outliers",
            {
                bank_id: "SELECT * EXCLUDE (bank_id) FROM o_rows WHERE bank_id = "
                + "'"
                + bank_id.replace("'", "''")
                + "'"
                for bank_id in sorted(self.banks)
            },
        )
        self.engine.execute("DROP TABLE o_rows")


_FILES_SCHEMA = pa.schema(
    [
        ("file_idx", pa.int32()),
        ("source_file", pa.string()),
        ("file_sha256", pa.string()),
        ("format", pa.string()),
        ("profile", pa.string()),
        ("statements", pa.int64()),
        ("pending", pa.int64()),
    ]
)
_STATEMENTS_SCHEMA = pa.schema(
    [
        ("stmt_idx", pa.int32()),
        ("file_idx", pa.int32()),
        ("statement_id", pa.string()),
        ("location", pa.string()),
        ("account_id", pa.string()),
        ("owner_name", pa.string()),
        ("owner_name_norm", pa.string()),
        ("owner_enterprise_id", pa.string()),
        ("currency", pa.string()),
        ("opening_balance_minor", pa.int64()),
        ("closing_balance_minor", pa.int64()),
        ("period_start", pa.date32()),
        ("period_end", pa.date32()),
        ("pending", pa.int64()),
    ]
)


_RECORD_COLUMNS = (
    "account_id",
    "value_date",
    "amount_minor",
    "balance_after_minor",
    "counterparty_name",
    "counterparty_name_norm",
    "counterparty_account",
    "counterparty_bank",
    "tx_code",
    "reference",
    "end_to_end_id",
    "description",
    "location",
    "stmt_idx",
)


def _records(
    computed: pa.Table, entries: pa.Table, chunk: _Chunk, bank_id: str, ingest_id: str
) -> pa.Table:
    """The batch's new records (``STORED_TRANSACTION_SCHEMA`` plus ``month``), ordered by month
    and position: the columns SQL computed (:func:`~flowbureau.cleaning.batch.new_rows_sql`)
    completed with the entries' own columns taken from the Arrow buffer, so wide rows are
    never copied through the engine."""
    months = pc.dictionary_encode(computed.column("month")).combine_chunks()
    ranks = np.argsort(np.argsort(np.asarray(months.dictionary.to_pylist(), dtype=object)))
    rows = np.asarray(computed.column("row_idx").to_numpy(), dtype=np.int64)
    order = np.lexsort((rows, ranks[np.asarray(months.indices.to_numpy())]))
    computed = computed.take(pa.array(order))
    picked = entries.select(list(_RECORD_COLUMNS)).take(pa.array(rows[order]))
    stmt_idx = picked.column("stmt_idx")
    file_idx = chunk.statements.column("file_idx").take(stmt_idx)
    count = computed.num_rows
    columns: dict[str, Any] = {
        "tx_id": computed.column("tx_id"),
        "bank_id": pa.repeat(pa.scalar(bank_id), count),
        "account_id": picked.column("account_id"),
        "enterprise_id": computed.column("enterprise_id"),
        "statement_id": chunk.statements.column("statement_id").take(stmt_idx),
        "booked_at": computed.column("booked_at"),
        "description_raw": picked.column("description"),
        "source_file": chunk.files.column("source_file").take(file_idx),
        "source_location": picked.column("location"),
        "file_sha256": chunk.files.column("file_sha256").take(file_idx),
        "ingest_id": pa.repeat(pa.scalar(ingest_id), count),
    }
    for name in ("tx_type", "quality_flags", "currency"):
        columns[name] = computed.column(name)
    for name in STORED_TRANSACTION_SCHEMA.names:
        if name not in columns:
            columns[name] = picked.column(name)
    table = pa.table(
        [columns[n] for n in STORED_TRANSACTION_SCHEMA.names], names=STORED_TRANSACTION_SCHEMA.names
    ).cast(STORED_TRANSACTION_SCHEMA)
    return table.append_column("month", computed.column("month"))


def _empty_entries() -> pa.Table:
    table = RAW_ENTRY_SCHEMA.empty_table()
    return table.append_column("stmt_idx", pa.array([], pa.int32())).append_column(
        "entry_no", pa.array([], pa.int32())
    )


_EMPTY_ENTRIES = _empty_entries()


def _shift_month(month: str, delta: int) -> str:
    year, number = int(month[:4]), int(month[5:7]) - 1 + delta
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


@dataclass(frozen=True)
class _ReadOptions:
    format: str
    profile: str | None
    profile_dirs: tuple[Path, ...]
    detected: dict[Path, tuple[str, str | None]] = field(default_factory=dict)
    """``(format, profile)`` per path, judged once up front (:func:`detect_file`)."""


@dataclass(frozen=True)
class _Failure:
    """A reader's error, carried back from a worker process whole (type, message, location)."""

    kind: type[FlowbureauError]
    args: tuple[Any, ...]
    state: dict[str, Any]

    def reraise(self) -> NoReturn:
        error = self.kind.__new__(self.kind)
        Exception.__init__(error, *self.args)
        error.__dict__.update(self.state)
        raise error


@dataclass(frozen=True)
class _Task:
    """What a worker read from a run of files, packed for the trip back: statements read in
    bulk travel without their entries (a pickled slice would carry its whole table), which
    travel once per shared table; ``failure`` is the error that stopped the run, if any."""

    results: list[ReadResult]
    tables: list[pa.Table]
    spans: list[list[tuple[int, int, int] | None]]
    failure: _Failure | None

    def unpack(self) -> Iterator[ReadResult]:
        """The results with their entries back in place, then the failure raised."""
        for result, spans in zip(self.results, self.spans, strict=True):
            statements = [
                parsed
                if span is None
                else replace(
                    parsed,
                    entries=self.tables[span[0]].slice(span[1], span[2]),
                    span=EntrySpan(self.tables[span[0]], span[1]),
                )
                for parsed, span in zip(result.statements, spans, strict=True)
            ]
            yield replace(result, statements=statements)
        if self.failure is not None:
            self.failure.reraise()


def _read_task(paths: Sequence[Path], options: _ReadOptions) -> _Task:
    """Read ``paths`` in a worker process (see :class:`_Task`)."""
    results: list[ReadResult] = []
    tables: dict[int, tuple[int, pa.Table]] = {}
    spans: list[list[tuple[int, int, int] | None]] = []
    failure = None
    try:
        for result in read_files(
            paths,
            format=options.format,
            profile=options.profile,
            profile_dirs=options.profile_dirs,
            detected=options.detected,
        ):
            packed: list[ParsedStatement] = []
            places: list[tuple[int, int, int] | None] = []
            for parsed in result.statements:
                if parsed.span is None:
                    packed.append(parsed)
                    places.append(None)
                    continue
                index = tables.setdefault(id(parsed.span.table), (len(tables), parsed.span.table))
                places.append((index[0], parsed.span.offset, parsed.entries.num_rows))
                packed.append(replace(parsed, entries=_NO_RAW_ENTRIES, span=None))
            results.append(replace(result, statements=packed))
            spans.append(places)
    except FlowbureauError as exc:
        failure = _Failure(type(exc), exc.args, dict(exc.__dict__))
    return _Task(results, [t for _, t in tables.values()], spans, failure)


class _Reader:
    """Reads statement files in order, in worker processes when there are enough of them.

    In-process, :func:`~flowbureau.formats.detection.read_files` reads bank CSV exports in
    bulk. With ``read_workers`` > 1, runs of :data:`TASK_FILES` files are read by a process
    pool (forkserver: no DuckDB threads are forked) while this process cleans and stores; at
    most ``2 x workers`` runs wait in memory.
    """

    def __init__(self, options: _ReadOptions, workers: int) -> None:
        self.options = options
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def results(self, paths: Sequence[Path]) -> Iterator[ReadResult]:
        """``read_file`` of each path, in order; a reader's error is raised here as it was."""
        options = self.options
        if self.workers <= 1 or len(paths) < MIN_FILES_FOR_POOL:
            yield from read_files(
                paths,
                format=options.format,
                profile=options.profile,
                profile_dirs=options.profile_dirs,
                detected=options.detected,
            )
            return
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        runs = iter([paths[i : i + TASK_FILES] for i in range(0, len(paths), TASK_FILES)])
        pending: deque[Future[_Task]] = deque()
        for run in runs:
            pending.append(self._pool.submit(_read_task, run, self._options_for(run)))
            if len(pending) >= 2 * self.workers:
                break
        while pending:
            task = pending.popleft().result()
            next_run = next(runs, None)
            if next_run is not None:
                pending.append(self._pool.submit(_read_task, next_run, self._options_for(next_run)))
            yield from task.unpack()

    def _options_for(self, paths: Sequence[Path]) -> _ReadOptions:
        """The options with only ``paths``' detections (what a worker's task needs)."""
        known = self.options.detected
        return replace(self.options, detected={p: known[p] for p in paths if p in known})

    def close(self) -> None:
        """Stop the worker processes (pending reads are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _detect(
    inputs: Sequence[_Input], profile_dirs: Sequence[Path], format: str, profile: str | None
) -> tuple[set[Path], dict[Path, tuple[str, str | None]], dict[Path, Detection]]:
    """The account registers among ``inputs``, every file's ``(format, profile)``, judged
    once per file (reading it later does not judge it again), and each file's detection
    with its SHA-256 (to skip files stored before unread). With ``format`` / ``profile``
    given, nothing is judged for reading: only the digest and the choice they imply."""
    registers: set[Path] = set()
    detected: dict[Path, tuple[str, str | None]] = {}
    found: dict[Path, Detection] = {}
    auto = format == "auto" and profile is None
    for item in inputs:
        found[item.path] = judged = detect_file(
            item.path, profile_dirs=profile_dirs, format=format, profile=profile
        )
        if not auto:
            continue
        if judged.register and item.path.suffix.lower() in REGISTER_SUFFIXES:
            registers.add(item.path)
        if judged.choice is not None:
            detected[item.path] = judged.choice
    return registers, detected, found


def ingest(
    paths: Sequence[Path],
    *,
    bank_id: str | None = None,
    format: str = "auto",
    profile: str | None = None,
    profile_dirs: Sequence[Path] = (),
    rules: Path | None = None,
    progress: bool = False,
    ledger: IngestLedger | None = None,
) -> IngestReport:
    """Read, clean and store bank statement files and account registers (see module rules).

    Every batch goes through the consortium contract and log: ``ledger`` (a bank node's
    :class:`~flowbureau.ledger.nodes.NodeIngest`), by default the embedded bank node,
    platform and witnesses of this installation (:class:`~flowbureau.ledger.intake.
    EmbeddedIngest`, keys created on first use); the warehouse publishes together with the
    log append (:meth:`IngestLedger.publish`) and ``report.ledger`` says what the log did.

    Raises :class:`InputError` (naming file, line or XML path, and field) on malformed input,
    or :class:`~flowbureau.ledger.contract.ContractRejectedError` for a batch the contract
    refuses, in which case nothing of the run is stored.
    """
    settings = get_settings()
    rule_set = load_rules(rule_files(rules, settings.data_dir))
    if bank_id is not None:
        validate_bank_id(bank_id)
    if format != "auto" and format not in FORMATS:
        raise InputError(
            f"unknown format {format!r}; known: auto, {', '.join(FORMATS)}", field="format"
        )
    inputs = _expand(paths, bank_id)
    report = IngestReport(ingest_id="ing-" + new_batch_id())
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    registers, detected, found = _detect(inputs, profile_dirs, format, profile)
    chunk_rows = settings.ingest.chunk_rows

    options = _ReadOptions(format, profile, tuple(profile_dirs), detected)
    workers = settings.ingest.read_workers or max(1, (os.cpu_count() or 1) - 1)
    reader = _Reader(options, workers)

    sink = ledger if ledger is not None else _embedded_ledger(settings)

    with warehouse.writer() as writer, _progress(progress) as bar, closing(reader):
        task = bar.add_task("ingest", total=len(inputs))
        run = _Run(writer, settings, rule_set, report, sink)
        by_bank: dict[str, list[_Input]] = {}
        for item in inputs:
            by_bank.setdefault(item.bank_id, []).append(item)
        for bank, items in by_bank.items():
            results = []
            for item in items:
                if item.path in registers:
                    judged = replace(found[item.path], choice=("register", None))
                    if run.was_stored(judged):
                        run.skip_stored(bank, item.path, judged)
                        bar.advance(task)
                        continue
                    result = read_file(item.path, format="register")
                    if not run.is_duplicate(bank, result):
                        results.append(result)
                    bar.advance(task)
            run.add_registers(bank, results)
        for bank, items in by_bank.items():
            buffer: list[ReadResult] = []
            rows = 0
            # Files stored before this run are counted in their turn, never read.
            files = [i.path for i in items if i.path not in registers]
            skip = [run.was_stored(found[f]) for f in files]
            read = reader.results([f for f, s in zip(files, skip, strict=True) if not s])
            for file, skipped in zip(files, skip, strict=True):
                bar.advance(task)
                if skipped:
                    run.skip_stored(bank, file, found[file])
                    continue
                result = next(read)
                if run.is_duplicate(bank, result):
                    continue
                if result.format == "register":
                    run.add_registers(bank, [result])
                    continue
                buffer.append(result)
                rows += sum(s.entries.num_rows for s in result.statements)
                if rows >= chunk_rows:
                    run.flush(bank, buffer)
                    buffer, rows = [], 0
            run.flush(bank, buffer)
            run.add_duplicate_files(bank)
        bar.update(task, description="link payments")
        run.link_payments()
        bar.update(task, description="flag outliers")
        run.flag_outliers()
        report.ledger = sink.publish(writer)
        bar.update(task, description="done")
    return report


def _embedded_ledger(settings: Settings) -> IngestLedger:
    """The embedded default: this installation's ledger (recovered first, see
    :func:`~flowbureau.ledger.embedded.open_ledger`) behind bank node + platform in process."""
    from flowbureau.ledger.embedded import open_ledger
    from flowbureau.ledger.intake import EmbeddedIngest

    return EmbeddedIngest(open_ledger(settings))
