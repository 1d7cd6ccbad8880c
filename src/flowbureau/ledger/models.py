"""Tables of the consortium log in the service database (SQLite by default, PostgreSQL tested).

Rules:
- ``ledger_entries`` holds every log entry's exact bytes by index. An entry appended as part of
  an ingest run stays *pending* (``pending_run`` set) until the run's warehouse commit; pending
  entries are invisible to readers, and recovery commits or deletes them (see
  :mod:`flowbureau.ledger.store`).
- Per batch entry, ``ledger_batches`` keeps the bank, sequence number, counts, the statement
  leaves and the tree above the record chunks; ``ledger_batch_chunks`` keeps the record leaf
  hashes and tx ids in chunks of :data:`CHUNK_LEAVES` (one row per chunk, never one per record);
  ``ledger_tx_index`` maps a tx id to its batch and leaf through 4096 buckets (one row per bucket
  per batch).
- ``ledger_checkpoints`` keeps each signed checkpoint note with every cosignature gathered, and
  ``ledger_cosignatures`` one row per cosignature line (who cosigned which size).
- ``ledger_bank_sequences`` is the next sequence number per bank (derived from the entries and
  maintained in the same transaction as each append; ``ledger verify`` checks they agree).
- ``ledger_witness_state`` is a witness's latest cosigned checkpoint (compare-and-swap on the
  size); ``ledger_receipts`` the receipts a bank node received for its contributions.
- Everything here is hashes, counts, ids and signatures: no personal data (tx ids and statement
  ids are pseudonymous digests).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flowbureau.ledger.merkle import ROOT_CHUNK
from flowbureau.storage.database import Base, UTCDateTime

__all__ = [
    "CHUNK_LEAVES",
    "TX_BUCKETS",
    "LedgerBankSequence",
    "LedgerBatch",
    "LedgerBatchChunk",
    "LedgerCheckpoint",
    "LedgerCosignature",
    "LedgerEntry",
    "LedgerReceipt",
    "LedgerTxBucket",
    "LedgerWitnessState",
]

CHUNK_LEAVES = ROOT_CHUNK
"""Record leaves per stored chunk: a record proof rehashes at most this many leaves."""
TX_BUCKETS = 4096
"""Buckets of the tx-id index (by the first three characters of the tx id)."""


class LedgerEntry(Base):
    """One log entry: its canonical bytes, leaf hash and whether its run has committed."""

    __tablename__ = "ledger_entries"

    idx: Mapped[int] = mapped_column(sa.BigInteger(), primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(sa.String(16))
    data: Mapped[bytes] = mapped_column(sa.LargeBinary())
    leaf_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    pending_run: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    appended_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerBatch(Base):
    """What the platform keeps beside a batch entry to prove and verify its records."""

    __tablename__ = "ledger_batches"
    __table_args__ = (sa.UniqueConstraint("bank_id", "seq"),)

    entry_idx: Mapped[int] = mapped_column(
        sa.ForeignKey("ledger_entries.idx", ondelete="CASCADE"), primary_key=True
    )
    bank_id: Mapped[str] = mapped_column(sa.String(64))
    seq: Mapped[int] = mapped_column(sa.BigInteger())
    record_count: Mapped[int] = mapped_column(sa.BigInteger())
    statement_count: Mapped[int] = mapped_column(sa.BigInteger())
    chunk_leaves: Mapped[int] = mapped_column(sa.Integer())
    chunk_roots: Mapped[bytes] = mapped_column(sa.LargeBinary())
    statement_ids: Mapped[bytes] = mapped_column(sa.LargeBinary())
    statement_leaf_hashes: Mapped[bytes] = mapped_column(sa.LargeBinary())
    warehouse_batch: Mapped[str | None] = mapped_column(sa.String(64))


class LedgerBatchChunk(Base):
    """Up to :data:`CHUNK_LEAVES` consecutive record leaf hashes of a batch."""

    __tablename__ = "ledger_batch_chunks"

    entry_idx: Mapped[int] = mapped_column(
        sa.ForeignKey("ledger_entries.idx", ondelete="CASCADE"), primary_key=True
    )
    chunk_no: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=False)
    leaf_hashes: Mapped[bytes] = mapped_column(sa.LargeBinary())


class LedgerTxBucket(Base):
    """The tx ids of one batch that fall in one bucket, with their leaf positions."""

    __tablename__ = "ledger_tx_index"

    bucket: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=False)
    entry_idx: Mapped[int] = mapped_column(
        sa.ForeignKey("ledger_entries.idx", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(sa.LargeBinary())


class LedgerCheckpoint(Base):
    """A signed checkpoint note (with the cosignatures gathered) of one log size."""

    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(sa.BigInteger(), primary_key=True, autoincrement=False)
    note: Mapped[bytes] = mapped_column(sa.LargeBinary())
    published_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerCosignature(Base):
    """One witness's cosignature line on the checkpoint of ``size``."""

    __tablename__ = "ledger_cosignatures"

    size: Mapped[int] = mapped_column(
        sa.ForeignKey("ledger_checkpoints.size", ondelete="CASCADE"), primary_key=True
    )
    witness: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    line: Mapped[str] = mapped_column(sa.Text())


class LedgerBankSequence(Base):
    """The sequence number a bank's next batch must carry."""

    __tablename__ = "ledger_bank_sequences"

    bank_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    next_seq: Mapped[int] = mapped_column(sa.BigInteger())


class LedgerWitnessState(Base):
    """A witness's latest cosigned checkpoint for one log origin."""

    __tablename__ = "ledger_witness_state"

    witness: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    origin: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    size: Mapped[int] = mapped_column(sa.BigInteger())
    note: Mapped[bytes] = mapped_column(sa.LargeBinary())


class LedgerReceipt(Base):
    """A receipt a bank node got back for one contributed batch (JSON of ``Receipt``)."""

    __tablename__ = "ledger_receipts"

    bank_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger(), primary_key=True, autoincrement=False)
    entry_idx: Mapped[int] = mapped_column(sa.BigInteger())
    receipt: Mapped[str] = mapped_column(sa.Text())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
