"""How contributed batches reach the warehouse: always through the contract and the log.

Rules:
- A batch's records and statements are stored exactly as the platform decrypted them from the
  bundle (the rows whose leaves the bank signed), in the same warehouse batch as the rest of
  the ingest batch (quarantine, accounts, sources...); quarantined entries are never
  contributed, and batches with neither records nor statements add no log entry.
- The warehouse commit and the log append are one step for the caller: :meth:`IngestLedger.
  publish` appends the run's entries pending, publishes the warehouse, commits the entries,
  then checkpoints (:meth:`flowbureau.ledger.log.LogRun.commit`). A run that fails before
  publishing leaves neither records nor entries; a crash in between is settled at the next
  :func:`~flowbureau.ledger.embedded.open_ledger`.
- A checkpoint short of the witness quorum is not a failure of the run: the records are stored
  and on the log; the summary says so and ``flowbureau ledger checkpoint --publish`` retries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from flowbureau.ledger.consortium import EmbeddedRun, Ledger
from flowbureau.ledger.log import RunOutcome
from flowbureau.schema import STATEMENT_SCHEMA, STORED_TRANSACTION_SCHEMA

if TYPE_CHECKING:
    from flowbureau.config import Settings
    from flowbureau.storage.warehouse import TablePart, WarehouseWriter

__all__ = [
    "EmbeddedIngest",
    "IngestLedger",
    "LedgerSummary",
    "admit_bundle",
    "contribution_parts",
    "is_published_by",
]


@dataclass
class LedgerSummary:
    """What the log did for one run: entries appended, the checkpoint, and any refusal."""

    entries: list[int] = field(default_factory=list)
    checkpoint: int | None = None
    final: bool = True
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"entries", "checkpoint", "final", "problem"}``."""
        return {
            "entries": list(self.entries),
            "checkpoint": self.checkpoint,
            "final": self.final,
            "problem": self.problem,
        }

    @classmethod
    def of(cls, outcome: RunOutcome) -> LedgerSummary:
        """The summary of a committed run."""
        missing = outcome.not_final
        return cls(
            list(outcome.indices),
            outcome.checkpoint_size,
            missing is None,
            None if missing is None else str(missing),
        )


class IngestLedger(Protocol):
    """What the ingest pipeline's commit step calls (embedded platform or a bank node)."""

    def contribute(
        self,
        writer: WarehouseWriter,
        *,
        bank_id: str,
        batch_id: str,
        records: pa.Table,
        statements: pa.Table,
    ) -> tuple[pa.Table, pa.Table]:
        """Check and admit one batch; return the rows to store (raise to refuse the batch)."""
        ...

    def publish(self, writer: WarehouseWriter) -> LedgerSummary:
        """Publish the warehouse together with the run's log entries."""
        ...


def is_published_by(writer: WarehouseWriter) -> Callable[[str], bool]:
    """Whether a warehouse batch is in the manifest the writer's warehouse has published."""

    def check(batch_id: str) -> bool:
        manifest = writer.warehouse.manifest()
        return any(f.batch_id == batch_id for files in manifest.tables.values() for f in files)

    return check


def contribution_parts(*, bank_id: str, records: pa.Table, statements: pa.Table) -> list[TablePart]:
    """Warehouse table parts storing exactly ``records`` and ``statements`` (Arrow rows; the
    transactions part adds the ``month`` partition column, ``YYYY-MM`` of ``booked_at`` in
    UTC)."""
    import pyarrow.compute as pc

    from flowbureau.storage.warehouse import TablePart

    parts: list[TablePart] = []
    if records.num_rows:
        rows = records.select(STORED_TRANSACTION_SCHEMA.names)
        month = pc.strftime(rows.column("booked_at"), format="%Y-%m")
        parts.append(TablePart("transactions", rows.append_column("month", month), bank_id))
    if statements.num_rows:
        parts.append(TablePart("statements", statements.select(STATEMENT_SCHEMA.names), bank_id))
    return parts


def admit_bundle(
    ledger: Ledger, bundle: bytes, *, settings: Settings, source: str = "<bundle>"
) -> RunOutcome:
    """The platform's one path in for a bundle from a bank node: open and check it, stage its
    rows in the warehouse, append + publish + commit, checkpoint (nothing stored on refusal)."""
    from flowbureau.ledger.embedded import WarehouseHistory
    from flowbureau.storage.warehouse import Warehouse, new_batch_id

    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    with warehouse.writer() as writer:
        batch_id = new_batch_id()
        run = ledger.log.run()
        admitted = run.admit(
            bundle, source=source, history=WarehouseHistory(writer.engine), warehouse_batch=batch_id
        )
        parts = contribution_parts(
            bank_id=admitted.entry.manifest.bank_id,
            records=admitted.records,
            statements=admitted.statements,
        )
        writer.stage_batch(batch_id, parts)
        return run.commit(writer.publish, is_published=is_published_by(writer))


class EmbeddedIngest:
    """The embedded default: the bank node, the platform and local witnesses in this process."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.run: EmbeddedRun = ledger.run()

    def contribute(
        self,
        writer: WarehouseWriter,
        *,
        bank_id: str,
        batch_id: str,
        records: pa.Table,
        statements: pa.Table,
    ) -> tuple[pa.Table, pa.Table]:
        """Bank node -> bundle -> platform checks; the rows the platform decrypted."""
        from flowbureau.ledger.embedded import WarehouseHistory

        if not records.num_rows and not statements.num_rows:
            return records, statements
        admitted = self.run.contribute(
            bank_id,
            records,
            statements,
            warehouse_batch=batch_id,
            history=WarehouseHistory(writer.engine),
        )
        return admitted.records, admitted.statements

    def publish(self, writer: WarehouseWriter) -> LedgerSummary:
        """Append pending, publish the warehouse, commit, checkpoint."""
        outcome = self.run.commit(writer.publish, is_published=is_published_by(writer))
        return LedgerSummary.of(outcome)
