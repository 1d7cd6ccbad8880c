"""The consortium log stored in the service database: :class:`SqlLogStore` and witness state.

Rules:
- One ``append`` is one transaction: the entry, its batch (chunks, tx-id buckets) and the
  bank's next sequence number are written together or not at all; the primary key on the entry
  index refuses a second append at the same index, the unique (bank, seq) pair a replayed batch.
- A run (an ingest, or a bundle the platform admits) appends its entries *pending* in one
  transaction, then the warehouse publishes, then :meth:`SqlLogStore.commit_run` clears the
  mark. Readers only ever see committed entries. :meth:`SqlLogStore.recover` settles a run a
  crash interrupted: committed when every warehouse batch it names is in the published
  manifest, deleted otherwise - so the warehouse and the log always agree. Checkpoints are
  published only after the commit, so no witness ever cosigns a pending entry.
- Appending a batch of n records writes n / :data:`~flowbureau.ledger.models.CHUNK_LEAVES`
  chunk rows and at most :data:`~flowbureau.ledger.models.TX_BUCKETS` index rows, in bulk -
  never one row per record. Leaf hashes and tx ids are stored as blobs (tx ids as Arrow-style
  offsets + UTF-8), so storing and loading them is vectorised.
- A record proof reads one chunk and the batch's chunk roots: the batch tree is the RFC 9162
  tree over the chunk roots (chunks are aligned on a power of two, so its splits fall on chunk
  boundaries), and the record's path is its path inside the chunk followed by the chunk's path
  in that tree.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from flowbureau.errors import ConflictError, FlowbureauError, NotFoundError, StorageError
from flowbureau.ledger.checkpoint import Checkpoint
from flowbureau.ledger.log import BatchIndex, RecordPath
from flowbureau.ledger.merkle import HASH_SIZE, MerkleTree, chunk_roots, leaf_hash
from flowbureau.ledger.models import (
    CHUNK_LEAVES,
    TX_BUCKETS,
    LedgerBankSequence,
    LedgerBatch,
    LedgerBatchChunk,
    LedgerCheckpoint,
    LedgerCosignature,
    LedgerEntry,
    LedgerTxBucket,
    LedgerWitnessState,
)
from flowbureau.ledger.note import parse_note
from flowbureau.storage.database import session_factory

__all__ = [
    "RecoveredRuns",
    "SqlLogStore",
    "SqlWitnessState",
    "pack_strings",
    "tx_buckets",
    "unpack_strings",
]


def pack_strings(values: pa.Array) -> bytes:
    """``u32 count || int32 offsets (count + 1, from 0) || UTF-8 data`` of a string array."""
    array = values.cast(pa.string())
    if array.null_count:
        raise StorageError("ids stored by the ledger cannot be null")
    count = len(array)
    offsets = np.frombuffer(
        array.buffers()[1], dtype=np.int32, count=count + 1, offset=4 * array.offset
    )
    start, end = int(offsets[0]), int(offsets[-1])
    data = array.buffers()[2]
    # a slice shares its parent's buffers: copy only this slice's bytes
    body = b"" if data is None else bytes(memoryview(data)[start:end])
    return struct.pack(">I", count) + (offsets - start).astype("<i4").tobytes() + body


def unpack_strings(blob: bytes) -> pa.Array:
    """Inverse of :func:`pack_strings` (validated: a corrupt blob raises ``ArrowInvalid``)."""
    (count,) = struct.unpack_from(">I", blob)
    end = 4 + 4 * (count + 1)
    if len(blob) < end:
        raise ValueError(f"string blob of {len(blob)} bytes is shorter than its {count} offsets")
    offsets = pa.py_buffer(blob[4:end])
    array = pa.Array.from_buffers(pa.string(), count, [None, offsets, pa.py_buffer(blob[end:])])
    array.validate(full=True)
    return array


_HEX_VALUE = np.array(
    [int(chr(b), 16) if chr(b) in "0123456789abcdefABCDEF" else b & 15 for b in range(256)],
    dtype=np.int64,
)


def tx_buckets(ids: pa.Array) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The index bucket of each tx id: its first three characters read as hex digits.

    Flowbureau's tx ids are 32 hex digits, so the buckets are uniform; other ids still get a
    deterministic bucket (a non-hex byte counts as its low four bits).
    """
    array = ids.cast(pa.string())
    count = len(array)
    offsets = np.frombuffer(
        array.buffers()[1], dtype=np.int32, count=count + 1, offset=4 * array.offset
    ).astype(np.int64)
    data_buffer = array.buffers()[2]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, np.uint8)
    )
    lengths = offsets[1:] - offsets[:-1]
    bucket = np.zeros(count, dtype=np.int64)
    for position in range(3):
        present = lengths > position
        digit = np.zeros(count, dtype=np.int64)
        digit[present] = _HEX_VALUE[data[offsets[:-1][present] + position]]
        bucket = bucket * 16 + digit
    return bucket % TX_BUCKETS


@dataclass(frozen=True, slots=True)
class RecoveredRuns:
    """What :meth:`SqlLogStore.recover` did with runs a crash left pending."""

    committed: tuple[str, ...] = ()
    discarded: tuple[str, ...] = ()


def _now() -> datetime:
    return datetime.now(UTC)


class SqlLogStore:
    """A :class:`~flowbureau.ledger.log.LogStore` in the service database (see module rules).

    ``engine`` must point at a database migrated to the newest revision
    (``flowbureau db upgrade``).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._sessions: sessionmaker[Session] = session_factory(engine)
        self._chunk_trees: dict[int, MerkleTree] = {}

    # --- reading entries ---------------------------------------------------------------------

    def size(self) -> int:
        """Number of committed entries."""
        with self.engine.connect() as session:
            count = session.scalar(
                sa.select(sa.func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.pending_run.is_(None))
            )
        return int(count or 0)

    def entry(self, index: int) -> bytes:
        """The bytes of committed entry ``index``."""
        with self.engine.connect() as session:
            data = session.scalar(
                sa.select(LedgerEntry.data).where(
                    LedgerEntry.idx == index, LedgerEntry.pending_run.is_(None)
                )
            )
        if data is None:
            raise IndexError(f"log entry {index} does not exist")
        return bytes(data)

    def entries(self, start: int = 0) -> Iterator[bytes]:
        """Committed entry bytes from ``start`` on, in order."""
        with self._sessions() as session:
            rows = session.execute(
                sa.select(LedgerEntry.data)
                .where(LedgerEntry.idx >= start, LedgerEntry.pending_run.is_(None))
                .order_by(LedgerEntry.idx)
                .execution_options(yield_per=1000)
            ).scalars()
            for data in rows:
                yield bytes(data)

    # --- appending ---------------------------------------------------------------------------

    def append(self, index: int, entry: bytes, batch: BatchIndex | None) -> None:
        """Store ``entry`` (and its batch) committed at ``index``, in one transaction."""
        self._insert(index, [(entry, batch)], run_id=None)

    def append_run(
        self, run_id: str, start: int, items: Sequence[tuple[bytes, BatchIndex | None]]
    ) -> None:
        """Store a run's entries at ``start, start + 1, ...``, pending, in one transaction."""
        if items:
            self._insert(start, items, run_id=run_id)

    def _insert(
        self, start: int, items: Sequence[tuple[bytes, BatchIndex | None]], *, run_id: str | None
    ) -> None:
        try:
            with self._sessions.begin() as session:
                last = session.scalar(sa.select(sa.func.max(LedgerEntry.idx)))
                size = 0 if last is None else int(last) + 1
                if start != size:
                    raise ConflictError(f"append at {start} but the log has {size} entries")
                for offset, (data, batch) in enumerate(items):
                    index = start + offset
                    session.add(
                        LedgerEntry(
                            idx=index,
                            kind=_kind(data),
                            data=data,
                            leaf_hash=leaf_hash(data),
                            pending_run=run_id,
                            appended_at=_now(),
                        )
                    )
                    session.flush()
                    if batch is not None:
                        self._insert_batch(session, index, batch)
                if run_id is None:
                    self._advance_sequences(session, [b for _, b in items if b is not None])
        except sa.exc.IntegrityError as exc:
            raise ConflictError(
                f"the log refused the append (concurrent or replayed): {exc.orig}"
            ) from None

    def _insert_batch(self, session: Session, index: int, batch: BatchIndex) -> None:
        leaves = batch.leaf_hashes
        count = len(leaves) // HASH_SIZE
        if len(leaves) % HASH_SIZE or count != len(batch.tx_ids):
            raise StorageError(f"batch {index}: leaf hashes and tx ids do not pair up")
        ids = pa.array(batch.tx_ids, pa.string())
        session.add(
            LedgerBatch(
                entry_idx=index,
                bank_id=batch.bank_id,
                seq=batch.seq,
                record_count=count,
                statement_count=len(batch.statement_ids),
                chunk_leaves=CHUNK_LEAVES,
                chunk_roots=chunk_roots(leaves),
                statement_ids=pack_strings(pa.array(batch.statement_ids, pa.string())),
                statement_leaf_hashes=batch.statement_leaf_hashes,
                warehouse_batch=batch.warehouse_batch,
            )
        )
        session.flush()
        step = CHUNK_LEAVES * HASH_SIZE
        chunks = [
            {
                "entry_idx": index,
                "chunk_no": number,
                "leaf_hashes": leaves[number * step : (number + 1) * step],
            }
            for number in range((count + CHUNK_LEAVES - 1) // CHUNK_LEAVES)
        ]
        if chunks:
            # Core inserts (executemany): no ORM bookkeeping per row
            session.execute(sa.insert(cast(sa.Table, LedgerBatchChunk.__table__)), chunks)
            session.execute(
                sa.insert(cast(sa.Table, LedgerTxBucket.__table__)), _bucket_rows(index, ids)
            )

    def _advance_sequences(self, session: Session, batches: Sequence[BatchIndex]) -> None:
        for batch in batches:
            row = session.get(LedgerBankSequence, batch.bank_id)
            if row is None:
                session.add(LedgerBankSequence(bank_id=batch.bank_id, next_seq=batch.seq + 1))
            else:
                row.next_seq = max(row.next_seq, batch.seq + 1)
            session.flush()

    def commit_run(self, run_id: str) -> None:
        """Make a run's pending entries part of the log (after its warehouse commit)."""
        with self._sessions.begin() as session:
            self._commit(session, run_id)

    def _commit(self, session: Session, run_id: str) -> None:
        batches = session.execute(
            sa.select(LedgerBatch.bank_id, LedgerBatch.seq)
            .join(LedgerEntry, LedgerEntry.idx == LedgerBatch.entry_idx)
            .where(LedgerEntry.pending_run == run_id)
        ).all()
        session.execute(
            sa.update(LedgerEntry)
            .where(LedgerEntry.pending_run == run_id)
            .values(pending_run=None)
            .execution_options(synchronize_session=False)
        )
        self._advance_sequences(
            session, [BatchIndex(bank, seq, (), b"", (), b"") for bank, seq in batches]
        )

    def discard_run(self, run_id: str) -> None:
        """Delete a run's pending entries (its warehouse commit did not happen)."""
        with self._sessions.begin() as session:
            self._discard(session, run_id)

    def _discard(self, session: Session, run_id: str) -> None:
        indices = sa.select(LedgerEntry.idx).where(LedgerEntry.pending_run == run_id)
        for table in (LedgerTxBucket, LedgerBatchChunk, LedgerBatch):
            session.execute(sa.delete(table).where(table.entry_idx.in_(indices)))
        session.execute(sa.delete(LedgerEntry).where(LedgerEntry.pending_run == run_id))

    def pending_runs(self) -> dict[str, list[str]]:
        """Runs with pending entries and the warehouse batches each names."""
        with self._sessions() as session:
            rows = session.execute(
                sa.select(LedgerEntry.pending_run, LedgerBatch.warehouse_batch)
                .outerjoin(LedgerBatch, LedgerBatch.entry_idx == LedgerEntry.idx)
                .where(LedgerEntry.pending_run.is_not(None))
            ).all()
        runs: dict[str, list[str]] = {}
        for run_id, warehouse_batch in rows:
            names = runs.setdefault(str(run_id), [])
            if warehouse_batch is not None:
                names.append(str(warehouse_batch))
        return runs

    def recover(self, is_published: Callable[[str], bool]) -> RecoveredRuns:
        """Commit each pending run whose warehouse batches are all published; discard others.

        Call it while holding the log's append lock (no run is between its two steps then).
        """
        committed: list[str] = []
        discarded: list[str] = []
        for run_id, batches in sorted(self.pending_runs().items()):
            if batches and all(is_published(b) for b in batches):
                self.commit_run(run_id)
                committed.append(run_id)
            else:
                self.discard_run(run_id)
                discarded.append(run_id)
        return RecoveredRuns(tuple(committed), tuple(discarded))

    # --- batches and records -----------------------------------------------------------------

    def _batch_row(self, session: Session, index: int) -> LedgerBatch:
        row = session.execute(
            sa.select(LedgerBatch)
            .join(LedgerEntry, LedgerEntry.idx == LedgerBatch.entry_idx)
            .where(LedgerBatch.entry_idx == index, LedgerEntry.pending_run.is_(None))
        ).scalar_one_or_none()
        if row is None:
            raise NotFoundError(f"entry {index} is not a batch")
        return row

    def _batch_leaves(self, session: Session, index: int) -> bytes:
        """The concatenated leaf hashes of batch ``index``, chunk by chunk in order."""
        return b"".join(
            bytes(c)
            for c in session.execute(
                sa.select(LedgerBatchChunk.leaf_hashes)
                .where(LedgerBatchChunk.entry_idx == index)
                .order_by(LedgerBatchChunk.chunk_no)
            ).scalars()
        )

    def batch(self, index: int) -> BatchIndex:
        """The stored batch of entry ``index`` (every leaf hash; tx ids from the index).

        Raises :class:`~flowbureau.errors.StorageError` naming the batch when a stored blob
        cannot be decoded or the index does not hold each leaf's tx id exactly once.
        """
        with self._sessions() as session:
            row = self._batch_row(session, index)
            leaves = self._batch_leaves(session, index)
            buckets = [
                bytes(b)
                for b in session.execute(
                    sa.select(LedgerTxBucket.data).where(LedgerTxBucket.entry_idx == index)
                ).scalars()
            ]
        try:
            tx_ids = _ordered_ids(buckets, int(row.record_count)).to_pylist()
            statement_ids = unpack_strings(bytes(row.statement_ids)).to_pylist()
        except (ValueError, struct.error, pa.ArrowException) as exc:
            raise StorageError(f"batch {index}: stored ids cannot be decoded: {exc}") from None
        return BatchIndex(
            row.bank_id,
            int(row.seq),
            tuple(tx_ids),
            leaves,
            tuple(statement_ids),
            bytes(row.statement_leaf_hashes),
            row.warehouse_batch,
        )

    def batch_entry(self, bank_id: str, seq: int) -> int | None:
        """The index of the bank's committed batch ``seq``, if any."""
        with self._sessions() as session:
            index = session.scalar(
                sa.select(LedgerBatch.entry_idx)
                .join(LedgerEntry, LedgerEntry.idx == LedgerBatch.entry_idx)
                .where(
                    LedgerBatch.bank_id == bank_id,
                    LedgerBatch.seq == seq,
                    LedgerEntry.pending_run.is_(None),
                )
            )
        return None if index is None else int(index)

    def batch_bank(self, index: int) -> str:
        """The bank of batch entry ``index``."""
        with self._sessions() as session:
            return self._batch_row(session, index).bank_id

    def batch_indices(self) -> list[int]:
        """Indices of every committed batch entry, ascending."""
        with self._sessions() as session:
            rows = session.execute(
                sa.select(LedgerBatch.entry_idx)
                .join(LedgerEntry, LedgerEntry.idx == LedgerBatch.entry_idx)
                .where(LedgerEntry.pending_run.is_(None))
                .order_by(LedgerBatch.entry_idx)
            ).scalars()
            return [int(i) for i in rows]

    def record_path(self, index: int, leaf: int) -> RecordPath:
        """Leaf ``leaf`` of batch ``index`` with its inclusion proof to the batch root."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    LedgerBatch.record_count, LedgerBatch.chunk_leaves, LedgerBatch.chunk_roots
                )
                .join(LedgerEntry, LedgerEntry.idx == LedgerBatch.entry_idx)
                .where(LedgerBatch.entry_idx == index, LedgerEntry.pending_run.is_(None))
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"entry {index} is not a batch")
            size, width = int(row.record_count), int(row.chunk_leaves)
            if not 0 <= leaf < size:
                raise NotFoundError(f"batch {index} has no leaf {leaf}")
            number = leaf // width
            chunk = conn.scalar(
                sa.select(LedgerBatchChunk.leaf_hashes).where(
                    LedgerBatchChunk.entry_idx == index, LedgerBatchChunk.chunk_no == number
                )
            )
        roots = bytes(row.chunk_roots)
        if chunk is None:
            raise NotFoundError(f"batch {index} lost chunk {number}")
        inner = MerkleTree.from_leaf_hashes(bytes(chunk))
        top = self._chunk_trees.get(index)
        if top is None or top.leaf_hashes() != roots:
            top = MerkleTree.from_leaf_hashes(roots)
            if len(self._chunk_trees) >= 16:
                self._chunk_trees.pop(next(iter(self._chunk_trees)))
            self._chunk_trees[index] = top
        proof = inner.inclusion_proof(leaf - number * width) + top.inclusion_proof(number)
        return RecordPath(inner.leaf_hash(leaf - number * width), size, top.root(), tuple(proof))

    def locate(self, tx_id: str) -> list[tuple[int, int]]:
        """``(entry index, leaf index)`` of every committed record with ``tx_id``."""
        bucket = int(tx_buckets(pa.array([tx_id], pa.string()))[0])
        with self.engine.connect() as session:
            rows = session.execute(
                sa.select(LedgerTxBucket.entry_idx, LedgerTxBucket.data)
                .join(LedgerEntry, LedgerEntry.idx == LedgerTxBucket.entry_idx)
                .where(LedgerTxBucket.bucket == bucket, LedgerEntry.pending_run.is_(None))
                .order_by(LedgerTxBucket.entry_idx)
            ).all()
        places: list[tuple[int, int]] = []
        for index, data in rows:
            positions, ids = _unpack_bucket(bytes(data))
            for hit in np.flatnonzero(np.asarray(pc.equal(ids, tx_id))):
                places.append((int(index), int(positions[hit])))
        return places

    def seen(self, bank_id: str, tx_ids: pa.Array) -> set[str]:
        """The subset of ``tx_ids`` already in committed batches of ``bank_id``."""
        if not len(tx_ids):
            return set()
        wanted = tx_ids.cast(pa.string())
        buckets = sorted({int(b) for b in tx_buckets(wanted)})
        found: set[str] = set()
        with self._sessions() as session:
            for start in range(0, len(buckets), 500):
                rows = session.execute(
                    sa.select(LedgerTxBucket.data)
                    .join(LedgerBatch, LedgerBatch.entry_idx == LedgerTxBucket.entry_idx)
                    .join(LedgerEntry, LedgerEntry.idx == LedgerTxBucket.entry_idx)
                    .where(
                        LedgerBatch.bank_id == bank_id,
                        LedgerEntry.pending_run.is_(None),
                        LedgerTxBucket.bucket.in_(buckets[start : start + 500]),
                    )
                ).scalars()
                for data in rows:
                    _, ids = _unpack_bucket(bytes(data))
                    hits = pc.is_in(wanted, value_set=ids)
                    found.update(wanted.filter(hits).to_pylist())
        return found

    def next_seqs(self) -> dict[str, int]:
        """The stored next sequence number of every bank."""
        with self._sessions() as session:
            rows = session.execute(sa.select(LedgerBankSequence)).scalars()
            return {r.bank_id: int(r.next_seq) for r in rows}

    # --- checkpoints -------------------------------------------------------------------------

    def put_checkpoint(self, size: int, note: bytes) -> None:
        """Store (or replace) the checkpoint of ``size`` and its cosignature rows."""
        parsed = parse_note(note)
        origin = Checkpoint.parse(parsed.text).origin
        with self._sessions.begin() as session:
            session.execute(sa.delete(LedgerCosignature).where(LedgerCosignature.size == size))
            row = session.get(LedgerCheckpoint, size)
            if row is None:
                session.add(LedgerCheckpoint(size=size, note=note, published_at=_now()))
            else:
                row.note = note
            session.flush()
            lines = {s.name: s.line() for s in parsed.signatures if s.name != origin}
            for witness, line in lines.items():
                session.add(LedgerCosignature(size=size, witness=witness, line=line))

    def checkpoint(self, size: int) -> bytes | None:
        """The stored checkpoint of ``size``, if any."""
        with self.engine.connect() as session:
            note = session.scalar(
                sa.select(LedgerCheckpoint.note).where(LedgerCheckpoint.size == size)
            )
        return None if note is None else bytes(note)

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        """The newest stored checkpoint, ``(size, note)``, in one query."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(LedgerCheckpoint.size, LedgerCheckpoint.note)
                .order_by(LedgerCheckpoint.size.desc())
                .limit(1)
            ).one_or_none()
        return None if row is None else (int(row.size), bytes(row.note))

    def checkpoint_sizes(self) -> list[int]:
        """Sizes with a stored checkpoint, ascending."""
        with self._sessions() as session:
            rows = session.execute(
                sa.select(LedgerCheckpoint.size).order_by(LedgerCheckpoint.size)
            ).scalars()
            return [int(s) for s in rows]

    def last_cosigned(self, witness: str, *, before: int) -> int:
        """The largest checkpoint size below ``before`` that ``witness`` cosigned (0: none)."""
        with self._sessions() as session:
            size = session.scalar(
                sa.select(sa.func.max(LedgerCosignature.size)).where(
                    LedgerCosignature.witness == witness, LedgerCosignature.size < before
                )
            )
        return int(size or 0)

    def cosigners(self, size: int) -> dict[str, str]:
        """Witness name -> cosignature line recorded for the checkpoint of ``size``."""
        with self._sessions() as session:
            rows = session.execute(
                sa.select(LedgerCosignature.witness, LedgerCosignature.line).where(
                    LedgerCosignature.size == size
                )
            ).all()
        return {str(w): str(line) for w, line in rows}

    # --- checking derived data ----------------------------------------------------------------

    def derived_problems(self, next_seq: Mapping[str, int]) -> list[tuple[str, str, str]]:
        """Check what the store derives from the entries: per batch the chunk roots and the
        tx-id index, the bank sequence numbers (against ``next_seq`` from replay) and the
        cosignature rows (against the stored notes)."""
        problems: list[tuple[str, str, str]] = []
        for index in self.batch_indices():
            try:
                problems += self._batch_derived(index)
            except (FlowbureauError, ValueError, struct.error, pa.ArrowException) as exc:
                problems.append(("batch", str(index), f"stored batch data unreadable: {exc}"))
        stored = self.next_seqs()
        for bank in sorted(set(stored) | set(next_seq)):
            if stored.get(bank) != next_seq.get(bank):
                problems.append(
                    (
                        "sequence",
                        bank,
                        f"stored next sequence {stored.get(bank)}, the entries give "
                        f"{next_seq.get(bank)}",
                    )
                )
        for size in self.checkpoint_sizes():
            note = self.checkpoint(size) or b""
            try:
                lines = {s.line() for s in parse_note(note).signatures}
            except FlowbureauError:
                continue  # the checkpoint itself is named by the checkpoint checks
            for witness, line in self.cosigners(size).items():
                if line not in lines:
                    problems.append(
                        (
                            "checkpoint",
                            str(size),
                            f"cosignature row of {witness} is not in the note",
                        )
                    )
        return problems

    def _batch_derived(self, index: int) -> list[tuple[str, str, str]]:
        with self._sessions() as session:
            row = self._batch_row(session, index)
            leaves = self._batch_leaves(session, index)
            buckets = session.execute(
                sa.select(LedgerTxBucket.bucket, LedgerTxBucket.data).where(
                    LedgerTxBucket.entry_idx == index
                )
            ).all()
            roots, width = bytes(row.chunk_roots), int(row.chunk_leaves)
        problems: list[tuple[str, str, str]] = []
        if chunk_roots(leaves, width) != roots:
            problems.append(("batch", str(index), "stored chunk roots differ from the leaves"))
        for bucket, data in buckets:
            try:
                _, names = _unpack_bucket(bytes(data))
                sound = not (tx_buckets(names) != bucket).any()
            except (ValueError, struct.error, pa.ArrowException):
                sound = False
            if not sound:
                problems.append(("batch", str(index), f"tx-id index bucket {bucket} is corrupt"))
        return problems


def _kind(data: bytes) -> str:
    """The entry's ``kind`` for SQL inspection (the entry bytes stay the only truth)."""
    try:
        kind = json.loads(data).get("kind")
    except (ValueError, AttributeError):
        return "unknown"
    return kind if isinstance(kind, str) and len(kind) <= 16 else "unknown"


def _bucket_rows(index: int, ids: pa.Array) -> list[dict[str, object]]:
    """One ``ledger_tx_index`` row per non-empty bucket: ``u32 count || positions (>u4) ||
    u32 count || int32 offsets (count + 1, from 0) || UTF-8 ids`` (``pack_strings`` of the
    bucket's ids after its leaf positions).

    Every blob is built at once: each of the five pieces is a binary array over one buffer
    (one element per bucket), joined element-wise by Arrow - no per-bucket Python work.
    """
    buckets = tx_buckets(ids)
    order = np.argsort(buckets, kind="stable")
    sorted_buckets = buckets[order]
    ordered_ids = ids.cast(pa.string()).take(pa.array(order))
    if ordered_ids.null_count:
        raise StorageError("ids stored by the ledger cannot be null")
    total = len(order)
    if not total:
        return []
    offsets = np.frombuffer(
        ordered_ids.buffers()[1], dtype=np.int32, count=total + 1, offset=4 * ordered_ids.offset
    ).astype(np.int64)
    edges = np.flatnonzero(np.diff(sorted_buckets)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [total]])
    counts = ends - starts
    # each bucket's ids' offsets, rebased to 0: count + 1 values per bucket
    widths = counts + 1
    first = np.repeat(starts, widths)
    rank = np.arange(int(widths.sum())) - np.repeat(np.cumsum(widths) - widths, widths)
    rebased = offsets[first + rank] - offsets[first]

    def pieces(data: bytes | pa.Buffer | None, bounds: np.ndarray[Any, Any]) -> pa.Array:
        buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(data or b"")
        return pa.Array.from_buffers(
            pa.binary(), len(starts), [None, pa.py_buffer(bounds.astype(np.int32)), buffer]
        )

    count_field = pieces(counts.astype(">u4").tobytes(), 4 * np.arange(len(starts) + 1))
    blobs = pc.binary_join_element_wise(
        count_field,
        pieces(order.astype(">u4").tobytes(), 4 * np.concatenate([[0], ends])),
        count_field,
        pieces(rebased.astype("<i4").tobytes(), 4 * np.concatenate([[0], np.cumsum(widths)])),
        pieces(ordered_ids.buffers()[2], np.concatenate([offsets[starts], [offsets[-1]]])),
        b"",
    )
    return [
        {"bucket": bucket, "entry_idx": index, "data": data}
        for bucket, data in zip(sorted_buckets[starts].tolist(), blobs.to_pylist(), strict=True)
    ]


def _ordered_ids(buckets: Sequence[bytes], count: int) -> pa.Array:
    """The tx ids of a batch in leaf order, from its index buckets (each leaf exactly once)."""
    positions: list[np.ndarray[Any, Any]] = []
    names: list[pa.Array] = []
    for blob in buckets:
        where, ids = _unpack_bucket(blob)
        positions.append(where.astype(np.int64))
        names.append(ids)
    if not names:
        if count:
            raise ValueError(f"no tx ids indexed for {count} leaves")
        return pa.array([], pa.string())
    order = np.concatenate(positions)
    if len(order) != count or not np.array_equal(np.sort(order), np.arange(count)):
        raise ValueError("the tx-id index does not cover every leaf exactly once")
    return pa.concat_arrays(names).take(pa.array(np.argsort(order)))


def _unpack_bucket(blob: bytes) -> tuple[np.ndarray[Any, Any], pa.Array]:
    (count,) = struct.unpack_from(">I", blob)
    positions = np.frombuffer(blob, dtype=">u4", count=count, offset=4)
    return positions, unpack_strings(blob[4 + 4 * count :])


class SqlWitnessState:
    """A witness's :class:`~flowbureau.ledger.witness.WitnessStateStore` in the database.

    The compare-and-swap is one conditional ``UPDATE`` (or an ``INSERT`` refused by the primary
    key when another process stored first), so two concurrent requests cannot roll it back.
    """

    def __init__(self, engine: sa.Engine, witness: str) -> None:
        self._sessions = session_factory(engine)
        self.witness = witness

    def load(self, origin: str) -> bytes | None:
        """The latest cosigned note for ``origin``, or ``None``."""
        with self._sessions() as session:
            note = session.scalar(
                sa.select(LedgerWitnessState.note).where(
                    LedgerWitnessState.witness == self.witness,
                    LedgerWitnessState.origin == origin,
                )
            )
        return None if note is None else bytes(note)

    def compare_and_swap(self, origin: str, old_size: int, note: bytes, new_size: int) -> bool:
        """Store ``note`` if the stored size is still ``old_size`` (0 when none); else False."""
        try:
            with self._sessions.begin() as session:
                if old_size == 0 and self.load(origin) is None:
                    session.add(
                        LedgerWitnessState(
                            witness=self.witness, origin=origin, size=new_size, note=note
                        )
                    )
                    return True
                result = session.execute(
                    sa.update(LedgerWitnessState)
                    .where(
                        LedgerWitnessState.witness == self.witness,
                        LedgerWitnessState.origin == origin,
                        LedgerWitnessState.size == old_size,
                    )
                    .values(size=new_size, note=note)
                    .execution_options(synchronize_session=False)
                )
                return bool(result.rowcount == 1)  # type: ignore[attr-defined]
        except sa.exc.IntegrityError:
            return False
