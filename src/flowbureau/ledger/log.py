"""The consortium log: admission, appending, checkpoints, proofs - over a pluggable store.

Rules:
- The log is an append-only list of entries (:mod:`flowbureau.ledger.entry`); entry ``i`` is leaf
  ``i`` of an RFC 9162 tree. Entry 0 is the genesis; every later entry is checked against the
  state replayed from the entries before it (:class:`LogState`): governance entries need their
  quorum, batch entries need an active bank's valid signature, the contract in force, and the
  bank's next sequence number; anchors need increasing sequence numbers per source. The same
  replay runs when appending and when verifying.
- A :class:`LogStore` keeps the entry bytes, per batch the record leaf hashes, tx ids and
  statement ids, and the signed checkpoints. One ``append`` is atomic (entry + its batch index);
  the store refuses an append at any index but the next one. :class:`InMemoryLogStore` serves
  tests and benchmarks; :class:`flowbureau.ledger.store.SqlLogStore` the service database.
- Batches enter in *runs* (:class:`LogRun`): each bundle is opened and checked against the
  contract as it arrives (nothing stored), then at the end the run's entries are stored pending,
  the caller's warehouse commit runs, and the entries are committed - so a run that fails
  leaves no entry, and a crash between the steps is settled by the store's recovery (committed
  exactly when the warehouse published). Appends and checkpoints of all processes sharing a
  store are serialised by the ``lock`` given to :class:`ConsortiumLog`; every append first
  catches up with entries other processes appended (:meth:`ConsortiumLog.refresh`).
- After each append the operator signs a checkpoint of the new size and asks every active
  member's witness to cosign it with a consistency proof from the size that witness last
  cosigned; the checkpoint (with all cosignatures gathered) is stored, and is final at the
  witness quorum. A refusal is reported, never papered over. Checkpoints never cover pending
  entries, so no witness can be asked to cosign an entry that may still be rolled back.
- :func:`verify_log` trusts nothing it reads: it re-parses and replays every entry, recomputes
  every batch root from the stored leaves and every record leaf from the given warehouse rows,
  rebuilds the whole tree, and checks every stored checkpoint strictly (every signature line must
  be a trusted key's and verify); it names each broken record, entry and checkpoint.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from flowbureau.errors import (
    ConflictError,
    FlowbureauError,
    IntegrityError,
    LedgerError,
    NotFoundError,
)
from flowbureau.ledger.checkpoint import (
    Checkpoint,
    TrustPolicy,
    VerifiedCheckpoint,
    add_cosignatures,
    open_checkpoint,
    sign_checkpoint,
)
from flowbureau.ledger.contract import ContractRejectedError, TxHistory
from flowbureau.ledger.entry import (
    AnchorEntry,
    BatchEntry,
    Entry,
    GenesisEntry,
    GovernanceEntry,
    parse_entry,
)
from flowbureau.ledger.membership import Approval, Genesis, Membership, Proposal, Role
from flowbureau.ledger.merkle import HASH_SIZE, MerkleTree, merkle_root
from flowbureau.ledger.note import (
    Ed25519NoteSigner,
    InvalidNoteError,
    NoteSignature,
    NoteVerificationError,
    format_note,
    parse_note,
)
from flowbureau.ledger.receipts import ConsistencyProof, Receipt, RecordProof
from flowbureau.ledger.records import RECORD_LEAF, STATEMENT_LEAF, LeafFormat
from flowbureau.ledger.witness import StaleOldSizeError, WitnessRefusedError
from flowbureau.storage.faults import pause_point
from flowbureau.transport.bundle import BundleLimits, open_bundle
from flowbureau.transport.keys import raw_public

__all__ = [
    "AdmittedBatch",
    "BatchIndex",
    "CheckpointNotFinalError",
    "ConsortiumLog",
    "EntryRejectedError",
    "InMemoryLogStore",
    "LogRun",
    "LogState",
    "LogStore",
    "Problem",
    "RecordPath",
    "RunOutcome",
    "VerifyReport",
    "WitnessClient",
    "verify_log",
]


class EntryRejectedError(LedgerError):
    """An entry does not follow from the log before it (bad signature, sequence, quorum...)."""


class CheckpointNotFinalError(LedgerError):
    """The entry is appended but too few witnesses cosigned the new checkpoint."""

    def __init__(self, message: str, *, refusals: Sequence[WitnessRefusedError]) -> None:
        self.refusals = tuple(refusals)
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class BatchIndex:
    """What the store keeps beside a batch entry to prove and verify its records.

    ``warehouse_batch`` names the warehouse batch that stored the rows (recovery uses it to
    tell whether a pending run's warehouse commit happened).
    """

    bank_id: str
    seq: int
    tx_ids: tuple[str, ...]
    leaf_hashes: bytes
    statement_ids: tuple[str, ...]
    statement_leaf_hashes: bytes
    warehouse_batch: str | None = None


@dataclass(frozen=True, slots=True)
class RecordPath:
    """A record leaf of a batch with its inclusion proof to the batch root."""

    leaf_hash: bytes
    size: int
    root: bytes
    proof: tuple[bytes, ...]


class LogStore(Protocol):
    """Durable storage of the log (see the module rules; readers see committed entries only)."""

    def size(self) -> int:
        """Number of committed entries."""
        ...

    def entry(self, index: int) -> bytes:
        """The bytes of committed entry ``index``."""
        ...

    def entries(self, start: int = 0) -> Iterator[bytes]:
        """Committed entry bytes from ``start`` to the end, in order."""
        ...

    def append(self, index: int, entry: bytes, batch: BatchIndex | None) -> None:
        """Store ``entry`` (and its batch) committed at ``index``, which must be the size."""
        ...

    def append_run(
        self, run_id: str, start: int, items: Sequence[tuple[bytes, BatchIndex | None]]
    ) -> None:
        """Store a run's entries pending at ``start, start + 1, ...`` (one transaction)."""
        ...

    def commit_run(self, run_id: str) -> None:
        """Commit a run's pending entries."""
        ...

    def discard_run(self, run_id: str) -> None:
        """Delete a run's pending entries."""
        ...

    def batch(self, index: int) -> BatchIndex:
        """The batch index stored with batch entry ``index``."""
        ...

    def batch_indices(self) -> list[int]:
        """Indices of the committed batch entries, ascending."""
        ...

    def batch_bank(self, index: int) -> str:
        """The bank of batch entry ``index``."""
        ...

    def batch_entry(self, bank_id: str, seq: int) -> int | None:
        """The index of the bank's committed batch ``seq``, if any."""
        ...

    def record_path(self, index: int, leaf: int) -> RecordPath:
        """Leaf ``leaf`` of batch ``index`` and its inclusion proof to the batch root."""
        ...

    def locate(self, tx_id: str) -> list[tuple[int, int]]:
        """``(entry index, leaf index)`` of every record with ``tx_id``."""
        ...

    def seen(self, bank_id: str, tx_ids: pa.Array) -> set[str]:
        """The subset of ``tx_ids`` (a string array) already contributed by ``bank_id``."""
        ...

    def put_checkpoint(self, size: int, note: bytes) -> None:
        """Store (or replace, when cosignatures were added) the checkpoint of ``size``."""
        ...

    def checkpoint(self, size: int) -> bytes | None:
        """The stored checkpoint of ``size``, if any."""
        ...

    def checkpoint_sizes(self) -> list[int]:
        """Sizes with a stored checkpoint, ascending."""
        ...

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        """The newest stored checkpoint, ``(size, note)``."""
        ...

    def last_cosigned(self, witness: str, *, before: int) -> int:
        """The largest checkpoint size below ``before`` cosigned by ``witness`` (0: none)."""
        ...

    def recover(self, is_published: Callable[[str], bool]) -> object:
        """Commit each pending run whose warehouse batches are all published; discard others."""
        ...


def new_run_id() -> str:
    """A fresh run identifier."""
    return "run-" + secrets.token_hex(8)


class InMemoryLogStore:
    """A :class:`LogStore` in memory. Its attributes are plain containers so tests can tamper."""

    def __init__(self) -> None:
        self.entry_bytes: list[bytes] = []
        self.batches: dict[int, BatchIndex] = {}
        self.checkpoints: dict[int, bytes] = {}
        self.pending: dict[str, list[tuple[int, bytes, BatchIndex | None]]] = {}
        self._where: dict[str, list[tuple[int, int]]] = {}
        self._seen: dict[str, set[str]] = {}
        self._trees: dict[int, tuple[int, MerkleTree]] = {}
        self._lock = threading.Lock()

    def size(self) -> int:
        """Number of committed entries."""
        return len(self.entry_bytes)

    def entry(self, index: int) -> bytes:
        """The bytes of entry ``index``."""
        return self.entry_bytes[index]

    def entries(self, start: int = 0) -> Iterator[bytes]:
        """Entry bytes from ``start`` on."""
        return iter(self.entry_bytes[start:])

    def _next_index(self) -> int:
        return len(self.entry_bytes) + sum(len(items) for items in self.pending.values())

    def append(self, index: int, entry: bytes, batch: BatchIndex | None) -> None:
        """Store the entry at ``index`` (must be the current size)."""
        with self._lock:
            if index != self._next_index():
                raise ConflictError(f"append at {index} but the log has {self._next_index()}")
            self._commit([(index, entry, batch)])

    def append_run(
        self, run_id: str, start: int, items: Sequence[tuple[bytes, BatchIndex | None]]
    ) -> None:
        """Keep a run's entries pending."""
        with self._lock:
            if start != self._next_index():
                raise ConflictError(f"append at {start} but the log has {self._next_index()}")
            self.pending[run_id] = [(start + i, e, b) for i, (e, b) in enumerate(items)]

    def commit_run(self, run_id: str) -> None:
        """Commit a pending run."""
        with self._lock:
            self._commit(self.pending.pop(run_id, []))

    def discard_run(self, run_id: str) -> None:
        """Forget a pending run."""
        with self._lock:
            self.pending.pop(run_id, None)

    def recover(self, is_published: Callable[[str], bool]) -> list[str]:
        """Commit pending runs whose warehouse batches are published, forget the others."""
        committed: list[str] = []
        for run_id, items in sorted(self.pending.items()):
            names = [b.warehouse_batch for _, _, b in items if b is not None]
            if names and all(n is not None and is_published(n) for n in names):
                self.commit_run(run_id)
                committed.append(run_id)
            else:
                self.discard_run(run_id)
        return committed

    def _commit(self, items: Sequence[tuple[int, bytes, BatchIndex | None]]) -> None:
        for index, entry, batch in items:
            self.entry_bytes.append(entry)
            if batch is not None:
                self.batches[index] = batch
                for leaf, tx_id in enumerate(batch.tx_ids):
                    self._where.setdefault(tx_id, []).append((index, leaf))
                self._seen.setdefault(batch.bank_id, set()).update(batch.tx_ids)

    def batch(self, index: int) -> BatchIndex:
        """The batch index of entry ``index``."""
        try:
            return self.batches[index]
        except KeyError:
            raise NotFoundError(f"entry {index} is not a batch") from None

    def batch_bank(self, index: int) -> str:
        """The bank of batch entry ``index``."""
        return self.batch(index).bank_id

    def batch_entry(self, bank_id: str, seq: int) -> int | None:
        """The index of the bank's committed batch ``seq``, if any."""
        for index in self.batch_indices():
            batch = self.batches[index]
            if (batch.bank_id, batch.seq) == (bank_id, seq):
                return index
        return None

    def batch_indices(self) -> list[int]:
        """Indices of the batch entries."""
        return sorted(i for i in self.batches if i < len(self.entry_bytes))

    def record_path(self, index: int, leaf: int) -> RecordPath:
        """Leaf ``leaf`` of batch ``index`` with its proof (batch trees cached)."""
        batch = self.batch(index)
        cached = self._trees.get(index)
        if cached is None or cached[0] != id(batch):
            cached = (id(batch), MerkleTree.from_leaf_hashes(batch.leaf_hashes))
            self._trees[index] = cached
        tree = cached[1]
        if not 0 <= leaf < tree.size:
            raise NotFoundError(f"batch {index} has no leaf {leaf}")
        return RecordPath(
            tree.leaf_hash(leaf), tree.size, tree.root(), tuple(tree.inclusion_proof(leaf))
        )

    def locate(self, tx_id: str) -> list[tuple[int, int]]:
        """Where ``tx_id`` is."""
        return list(self._where.get(tx_id, ()))

    def seen(self, bank_id: str, tx_ids: pa.Array) -> set[str]:
        """Which of ``tx_ids`` the bank contributed before."""
        known = self._seen.get(bank_id, set())
        return {t for t in tx_ids.to_pylist() if t in known}

    def put_checkpoint(self, size: int, note: bytes) -> None:
        """Store the checkpoint of ``size``."""
        with self._lock:
            self.checkpoints[size] = note

    def checkpoint(self, size: int) -> bytes | None:
        """The checkpoint of ``size``."""
        return self.checkpoints.get(size)

    def checkpoint_sizes(self) -> list[int]:
        """Sizes with a checkpoint."""
        return sorted(self.checkpoints)

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        """The newest checkpoint."""
        if not self.checkpoints:
            return None
        size = max(self.checkpoints)
        return size, self.checkpoints[size]

    def last_cosigned(self, witness: str, *, before: int) -> int:
        """The largest checkpoint size below ``before`` that ``witness`` cosigned."""
        for size in reversed(self.checkpoint_sizes()):
            if size >= before:
                continue
            note = self.checkpoints[size]
            if any(s.name == witness for s in parse_note(note).signatures):
                return size
        return 0


class WitnessClient(Protocol):
    """How the log reaches a witness (in process here, over HTTP between nodes)."""

    @property
    def name(self) -> str:
        """The witness's key name."""
        ...

    def add_checkpoint(
        self, old_size: int, proof: Sequence[bytes], checkpoint: bytes
    ) -> NoteSignature:
        """Submit a checkpoint with a consistency proof from ``old_size``; get a cosignature."""
        ...


@dataclass
class LogState:
    """The consortium state after replaying entries ``0..size-1``."""

    size: int = 0
    membership: Membership | None = None
    next_seq: dict[str, int] = field(default_factory=dict)
    anchors: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    def copy(self) -> LogState:
        """An independent copy (memberships are never mutated in place)."""
        return LogState(self.size, self.membership, dict(self.next_seq), dict(self.anchors))

    def require_membership(self) -> Membership:
        """The membership (raises before genesis)."""
        if self.membership is None:
            raise EntryRejectedError("the log has no genesis entry")
        return self.membership

    def admit(self, entry: Entry) -> None:
        """Check ``entry`` as entry number ``self.size``; apply it or raise, changing nothing."""
        index = self.size
        if isinstance(entry, GenesisEntry):
            if index != 0:
                raise EntryRejectedError(f"entry {index}: a genesis entry can only be entry 0")
            self.membership = Membership.from_genesis(entry.genesis, entry.approvals)
        elif index == 0:
            raise EntryRejectedError("entry 0 must be the genesis")
        elif isinstance(entry, GovernanceEntry):
            membership = self.require_membership()
            self.membership = membership.apply(
                entry.proposal, entry.approvals, entry.possession, index=index
            )
        elif isinstance(entry, AnchorEntry):
            previous = self.anchors.get(entry.source)
            if entry.seq < 1 or (previous is not None and entry.seq <= previous[0]):
                raise EntryRejectedError(
                    f"entry {index}: anchor of {entry.source} at {entry.seq} does not move past "
                    f"the anchored {0 if previous is None else previous[0]}"
                )
            self.anchors[entry.source] = (entry.seq, entry.head)
        else:
            self._admit_batch(entry, index)
        self.size += 1

    def _admit_batch(self, entry: BatchEntry, index: int) -> None:
        membership = self.require_membership()
        manifest = entry.manifest
        member = membership.member(manifest.bank_id, index)
        if member is None or member.role is not Role.BANK:
            raise EntryRejectedError(f"entry {index}: {manifest.bank_id} is not an active bank")
        if not manifest.verify(member.keys.signing, entry.signature):
            raise EntryRejectedError(f"entry {index}: the bank's manifest signature is invalid")
        contract = membership.contract
        if (manifest.contract_hash, manifest.contract_version) != (contract.hash, contract.version):
            raise EntryRejectedError(
                f"entry {index}: checked against contract {manifest.contract_version} "
                f"({manifest.contract_hash.hex()[:12]}), {contract.version} "
                f"({contract.hash.hex()[:12]}) is in force"
            )
        expected = self.next_seq.get(manifest.bank_id, 1)
        if manifest.seq != expected:
            raise EntryRejectedError(
                f"entry {index}: sequence {manifest.seq} of {manifest.bank_id}, expected {expected}"
            )
        self.next_seq[manifest.bank_id] = expected + 1


@dataclass(frozen=True)
class AdmittedBatch:
    """A bundle that passed every platform check and the contract, not yet appended.

    ``records`` and ``statements`` are the rows decrypted from the bundle: exactly what the
    warehouse must store for this entry.
    """

    entry: BatchEntry
    batch: BatchIndex
    records: pa.Table
    statements: pa.Table


@dataclass(frozen=True)
class RunOutcome:
    """What committing a run did: the entries' indices, their receipts and the checkpoint.

    ``not_final`` is set when the entries are committed but fewer than the quorum of witnesses
    cosigned the new checkpoint (the records are stored; the checkpoint can be republished).
    """

    indices: tuple[int, ...]
    receipts: tuple[Receipt, ...]
    checkpoint_size: int | None
    not_final: CheckpointNotFinalError | None = None


class LogRun:
    """Batches admitted together with one warehouse commit (see the module rules).

    :meth:`admit` checks each bundle as it arrives against the state the run would leave (so a
    bank's second batch in the run carries the next sequence number); :meth:`commit` appends
    them pending, runs the warehouse commit, then commits them and publishes a checkpoint.
    """

    def __init__(self, log: ConsortiumLog, run_id: str | None = None) -> None:
        self.log = log
        self.run_id = run_id or new_run_id()
        self.batches: list[AdmittedBatch] = []
        self._state: LogState | None = None
        self._base = -1

    @property
    def state(self) -> LogState:
        """The consortium state as it will be once this run's batches are appended.

        Rebuilt on the log's latest state when entries were appended since (a member joined,
        an anchor), so later admissions see them; the run's batches are re-admitted on top.
        """
        self.log.refresh()
        if self._state is None or self._base != self.log.size:
            state = self.log.state.copy()
            for admitted in self.batches:
                state.admit(admitted.entry)
            self._state, self._base = state, self.log.size
        return self._state

    def next_seq(self, bank_id: str) -> int:
        """The sequence number the bank's next bundle in this run must carry."""
        return self.state.next_seq.get(bank_id, 1)

    def admit(
        self,
        bundle: bytes,
        *,
        source: str = "<bundle>",
        history: TxHistory | None = None,
        warehouse_batch: str | None = None,
    ) -> AdmittedBatch:
        """Open and check a bundle (no storage); raise a ``BundleError`` or
        :class:`ContractRejectedError` to refuse it. ``history`` answers the cross-batch
        duplicate rule (default: the log store)."""
        state = self.state
        membership = state.require_membership()

        def signing_key_of(bank_id: str) -> bytes | None:
            member = membership.member(bank_id, state.size)
            return member.keys.signing if member is not None and member.role is Role.BANK else None

        opened = open_bundle(
            bundle,
            box_key=self.log.box_key,
            signing_key_of=signing_key_of,
            next_seq=self.next_seq,
            limits=self.log.limits,
            source=source,
        )
        violations = membership.contract.check(
            opened.records,
            opened.statements,
            opened.manifest,
            history if history is not None else self.log.store,
            record_leaf_hashes=opened.record_leaf_hashes,
        )
        if violations:
            raise ContractRejectedError(violations, source=source)
        entry = BatchEntry(opened.manifest, opened.signature)
        trial = state.copy()
        trial.admit(entry)
        admitted = AdmittedBatch(
            entry,
            BatchIndex(
                opened.manifest.bank_id,
                opened.manifest.seq,
                tuple(opened.records.column("tx_id").to_pylist()),
                opened.record_leaf_hashes,
                tuple(opened.statements.column("statement_id").to_pylist()),
                opened.statement_leaf_hashes,
                warehouse_batch,
            ),
            opened.records,
            opened.statements,
        )
        self._state = trial
        self.batches.append(admitted)
        return admitted

    def commit(
        self,
        publish: Callable[[], object] = lambda: None,
        *,
        is_published: Callable[[str], bool] | None = None,
    ) -> RunOutcome:
        """Append the run's entries pending, run ``publish`` (the warehouse commit), commit.

        If ``publish`` raises, ``is_published`` (asked for each warehouse batch) decides whether
        the warehouse committed anyway (the entries are then committed too) before the error
        propagates; without it the entries are discarded.
        """
        return self.log.commit_run(self, publish, is_published)


class ConsortiumLog:
    """The platform's side of the log: admits bundles and governance, publishes checkpoints.

    ``witnesses`` maps bank ids to witness clients; the active members among them are asked to
    cosign every new checkpoint. ``lock`` serialises appends and checkpoints between processes
    sharing the store (default: this process only).
    """

    def __init__(
        self,
        store: LogStore,
        *,
        log_key: Ed25519PrivateKey,
        box_key: X25519PrivateKey,
        witnesses: Mapping[str, WitnessClient] | None = None,
        limits: BundleLimits | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lock: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        self.store = store
        self._log_key = log_key
        self.box_key = box_key
        self.witnesses: dict[str, WitnessClient] = dict(witnesses or {})
        self.limits = limits
        self._clock = clock
        self._lock = threading.RLock()
        self._append_lock = lock or nullcontext
        self.state = LogState()
        self.tree = MerkleTree()
        self._entries: list[bytes] = []
        self._verified: tuple[bytes, VerifiedCheckpoint] | None = None
        self._signer: Ed25519NoteSigner | None = None
        self.refresh()

    @classmethod
    def create(
        cls,
        store: LogStore,
        genesis: Genesis,
        approvals: Sequence[Approval],
        *,
        log_key: Ed25519PrivateKey,
        box_key: X25519PrivateKey,
        witnesses: Mapping[str, WitnessClient] | None = None,
        limits: BundleLimits | None = None,
        lock: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> ConsortiumLog:
        """Start a log with its genesis entry (the store must be empty)."""
        if store.size():
            raise ConflictError("the log store already has entries")
        log = cls(
            store, log_key=log_key, box_key=box_key, witnesses=witnesses, limits=limits, lock=lock
        )
        # appended even when the witnesses (remote ones, not running yet) cannot cosign: the
        # next checkpoint gathers their cosignatures
        with contextlib.suppress(CheckpointNotFinalError):
            log._append(GenesisEntry(genesis, tuple(approvals)), None)
        return log

    def refresh(self) -> None:
        """Catch up with entries appended to the store since (by this or another process)."""
        with self._lock:
            size = self.store.size()
            if size < self.tree.size:
                raise LedgerError(
                    f"the log store has {size} entries, fewer than the {self.tree.size} seen"
                )
            if size == self.tree.size:
                return
            for data in self.store.entries(self.tree.size):
                index = self.tree.size
                try:
                    self.state.admit(parse_entry(data, where=f"entry {index}"))
                except FlowbureauError as exc:
                    raise IntegrityError(
                        f"the stored log does not replay at entry {index} ({exc}); "
                        "run `flowbureau ledger verify`"
                    ) from None
                self.tree.append(data)
                self._entries.append(data)
            if self.state.membership is not None:
                self._check_keys(self.state.membership)

    def _check_keys(self, membership: Membership) -> None:
        if raw_public(self._log_key) != membership.log_key:
            raise LedgerError("this log key is not the one the genesis names")
        if raw_public(self.box_key) != membership.platform_box_key:
            raise LedgerError("this platform box key is not the one the genesis names")

    @property
    def membership(self) -> Membership:
        """The consortium state after the last entry."""
        return self.state.require_membership()

    @property
    def size(self) -> int:
        """Number of entries."""
        return self.tree.size

    def policy(self, size: int | None = None) -> TrustPolicy:
        """The trust policy in force for a checkpoint of ``size`` (default: now)."""
        return self.membership.trust_policy(self.size if size is None else size)

    def next_seq(self, bank_id: str) -> int:
        """The sequence number the bank's next bundle must carry."""
        return self.state.next_seq.get(bank_id, 1)

    # --- appending ----------------------------------------------------------------------------

    def run(self) -> LogRun:
        """A new run of batches to admit together with one warehouse commit."""
        return LogRun(self)

    def admit(self, bundle: bytes, *, source: str = "<bundle>") -> Receipt:
        """Open a bundle, run the contract, append the batch entry and publish a checkpoint.

        Raises :class:`CheckpointNotFinalError` (after appending) below the witness quorum.
        """
        with self._lock:
            run = self.run()
            run.admit(bundle, source=source)
            outcome = run.commit()
        if outcome.not_final is not None:
            raise outcome.not_final
        return outcome.receipts[0]

    def commit_run(
        self,
        run: LogRun,
        publish: Callable[[], object],
        is_published: Callable[[str], bool] | None,
    ) -> RunOutcome:
        """Append, publish, commit and checkpoint ``run`` (see :meth:`LogRun.commit`)."""
        with self._lock, self._append_lock():
            self.refresh()
            trial = self.state.copy()
            for admitted in run.batches:  # raises if another process changed what they rely on
                trial.admit(admitted.entry)
            start = self.tree.size
            items = [(b.entry.to_bytes(), b.batch) for b in run.batches]
            self.store.append_run(run.run_id, start, items)
            pause_point("ledger_pending")
            try:
                publish()
            except BaseException:
                names = [b.batch.warehouse_batch for b in run.batches]
                if (
                    is_published is not None
                    and names
                    and all(n is not None and is_published(n) for n in names)
                ):
                    self.store.commit_run(run.run_id)
                else:
                    self.store.discard_run(run.run_id)
                raise
            self.store.commit_run(run.run_id)
            pause_point("ledger_committed")
            self.state = trial
            self.tree.extend(data for data, _ in items)
            self._entries.extend(data for data, _ in items)
            indices = tuple(range(start, start + len(items)))
            if not items:
                return RunOutcome((), (), None)
            try:
                checkpoint = self._publish_checkpoint()
            except CheckpointNotFinalError as exc:
                receipts = tuple(self.receipt(i) for i in indices)
                return RunOutcome(indices, receipts, self.tree.size, exc)
            receipts = tuple(self._receipt(i, checkpoint) for i in indices)
            return RunOutcome(indices, receipts, checkpoint.checkpoint.size)

    def govern(
        self, proposal: Proposal, approvals: Sequence[Approval], possession: bytes | None = None
    ) -> Receipt:
        """Append an approved governance change and publish a checkpoint."""
        with self._lock:
            return self._append(GovernanceEntry(proposal, tuple(approvals), possession), None)

    def anchor(self, source: str, seq: int, head: bytes) -> Receipt:
        """Append the head (``seq``, ``head``) of an external hash chain and checkpoint it."""
        with self._lock:
            return self._append(AnchorEntry(source, seq, head, self._clock()), None)

    def _append(self, entry: Entry, batch: BatchIndex | None) -> Receipt:
        with self._lock, self._append_lock():
            self.refresh()
            data = entry.to_bytes()
            trial = self.state.copy()
            trial.admit(entry)  # raises (GovernanceError, EntryRejectedError) before storing
            if trial.membership is not None:
                self._check_keys(trial.membership)
            index = self.tree.size
            self.store.append(index, data, batch)
            self.state = trial
            self.tree.append(data)
            self._entries.append(data)
            checkpoint = self._publish_checkpoint()
            return self._receipt(index, checkpoint)

    # --- checkpoints --------------------------------------------------------------------------

    def _log_signer(self) -> Ed25519NoteSigner:
        if self._signer is None:
            self._signer = Ed25519NoteSigner(self.membership.origin, self._log_key)
        return self._signer

    def publish_checkpoint(self) -> VerifiedCheckpoint:
        """Sign a checkpoint of the current size, gather cosignatures, store it.

        Raises :class:`CheckpointNotFinalError` (after storing) below the witness quorum.
        """
        with self._lock, self._append_lock():
            self.refresh()
            return self._publish_checkpoint()

    def _publish_checkpoint(self) -> VerifiedCheckpoint:
        size = self.tree.size
        checkpoint = Checkpoint(self.membership.origin, size, self.tree.root())
        note = sign_checkpoint(checkpoint, self._log_signer())
        policy = self.policy(size)
        expected = {w.name for w in policy.witnesses}
        previous = self.store.checkpoint(size)
        kept = [] if previous is None else list(parse_note(previous).signatures)
        cosignatures: list[NoteSignature] = []
        refusals: list[WitnessRefusedError] = []
        for client in self.witnesses.values():
            if client.name not in expected:
                continue
            try:
                cosignatures.append(self._cosign(client, size, format_note(note)))
            except WitnessRefusedError as exc:
                refusals.append(exc)
            except FlowbureauError as exc:  # unreachable witness: a refusal for the report
                refusals.append(WitnessRefusedError(str(exc), status=503, witness=client.name))
        # a republished checkpoint keeps the cosignatures gathered for the same size before
        fresh = {s.name for s in cosignatures}
        earlier = [s for s in kept if s.name in expected and s.name not in fresh]
        cosigned = add_cosignatures(note, [*cosignatures, *earlier])
        self.store.put_checkpoint(size, format_note(cosigned))
        verified = open_checkpoint(format_note(cosigned), policy, require_final=False)
        if not verified.final:
            reasons = "; ".join(str(r) for r in refusals) or "no witness reachable"
            raise CheckpointNotFinalError(
                f"checkpoint {size} has {len(verified.cosigners)} of {policy.quorum} "
                f"cosignatures: {reasons}",
                refusals=refusals,
            )
        return verified

    def _cosign(self, client: WitnessClient, size: int, note: bytes) -> NoteSignature:
        old = self.store.last_cosigned(client.name, before=size)
        try:
            return client.add_checkpoint(old, self._consistency(old, size), note)
        except StaleOldSizeError as exc:  # the witness knows a different size: prove from it
            if exc.expected > size:
                raise
            return client.add_checkpoint(exc.expected, self._consistency(exc.expected, size), note)

    def _consistency(self, old: int, new: int) -> list[bytes]:
        return [] if old in (0, new) else self.tree.consistency_proof(old, new)

    def latest_checkpoint(self) -> bytes:
        """The newest stored checkpoint note."""
        latest = self.store.latest_checkpoint()
        if latest is None:
            raise NotFoundError("no checkpoint has been published")
        return latest[1]

    def _latest_verified(self) -> VerifiedCheckpoint:
        """The newest checkpoint, verified under the policy of its size (cached by its bytes)."""
        note = self.latest_checkpoint()
        if self._verified is not None and self._verified[0] == note:
            return self._verified[1]
        size = Checkpoint.parse(parse_note(note).text).size
        verified = open_checkpoint(note, self.policy(size), require_final=False)
        self._verified = (note, verified)
        return verified

    # --- proofs -------------------------------------------------------------------------------

    def _receipt(self, index: int, checkpoint: VerifiedCheckpoint) -> Receipt:
        size = checkpoint.checkpoint.size
        return Receipt(
            index,
            self._entries[index],
            size,
            self.tree.root(size),
            tuple(self.tree.inclusion_proof(index, size)),
            checkpoint.to_bytes(),
        )

    def receipt(self, index: int) -> Receipt:
        """A receipt for entry ``index`` under the latest checkpoint."""
        with self._lock:
            self.refresh()
            return self._latest_receipt(index)

    def _latest_receipt(self, index: int) -> Receipt:
        verified = self._latest_verified()
        if not 0 <= index < verified.checkpoint.size:
            raise NotFoundError(f"entry {index} is not under the latest checkpoint")
        return self._receipt(index, verified)

    def prove(self, tx_id: str, *, bank_id: str | None = None) -> RecordProof:
        """Prove a stored record is in the log (``bank_id`` picks one if tx ids collide)."""
        with self._lock:
            places = self.store.locate(tx_id)
            if bank_id is not None:
                places = [p for p in places if self.store.batch_bank(p[0]) == bank_id]
            if not places:
                raise NotFoundError(f"no record with tx_id {tx_id!r} is in the log")
            if len(places) > 1:
                raise ConflictError(f"tx_id {tx_id!r} is in {len(places)} batches; name the bank")
            index, leaf = places[0]
            path = self.store.record_path(index, leaf)
            self.refresh()
            return RecordProof(
                path.leaf_hash, leaf, path.size, path.root, path.proof, self._latest_receipt(index)
            )

    def consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """Prove the log of ``new_size`` (default: now) extends the log of ``old_size``."""
        with self._lock:
            self.refresh()
            new_size = self.tree.size if new_size is None else new_size
            return ConsistencyProof(
                old_size,
                new_size,
                self.tree.root(old_size),
                self.tree.root(new_size),
                tuple(self.tree.consistency_proof(old_size, new_size)),
            )


# --- verification -----------------------------------------------------------------------------

MAX_NAMED = 1000
"""Problems named per kind before the rest are counted in one line."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken thing: ``kind`` is record, statement, entry, batch or checkpoint."""

    kind: str
    ref: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} {self.ref}: {self.message}"


@dataclass
class VerifyReport:
    """What :func:`verify_log` checked and every problem it found."""

    entries: int = 0
    checkpoints: int = 0
    records: int = 0
    statements: int = 0
    problems: list[Problem] = field(default_factory=list)
    unnamed: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing is broken."""
        return not self.problems and not self.unnamed

    def add(self, kind: str, ref: str, message: str) -> None:
        """Record a problem (past :data:`MAX_NAMED` of a kind, only counted)."""
        if sum(p.kind == kind for p in self.problems) >= MAX_NAMED:
            self.unnamed[kind] = self.unnamed.get(kind, 0) + 1
            return
        self.problems.append(Problem(kind, ref, message))


class DerivedChecks(Protocol):
    """A store keeping derived data (indexes, sequence numbers) that verification can check."""

    def derived_problems(self, next_seq: Mapping[str, int]) -> list[tuple[str, str, str]]:
        """``(kind, ref, message)`` for every derived value that disagrees with the entries."""
        ...


def verify_log(
    store: LogStore,
    *,
    records: Iterable[pa.Table] | None = None,
    statements: Iterable[pa.Table] | None = None,
) -> VerifyReport:
    """Recompute and check everything in ``store`` and, when given, the warehouse rows.

    ``records`` / ``statements`` are every stored row (any number of tables, read lazily);
    ``None`` skips that check. A stored row matching no committed leaf, and a committed leaf no
    stored row matches, are both named.
    """
    report = VerifyReport()
    state = LogState()
    tree = MerkleTree()
    states: dict[int, Membership] = {}
    batch_entries: list[int] = []
    unreadable: set[int] = set()
    for index, data in enumerate(store.entries()):
        tree.append(data)
        report.entries += 1
        try:
            entry = parse_entry(data, where=f"entry {index}")
            state.admit(entry)
        except FlowbureauError as exc:
            report.add("entry", str(index), str(exc))
            state.size += 1
            continue
        if state.membership is not None:
            states[state.size] = state.membership
        if isinstance(entry, BatchEntry):
            batch_entries.append(index)
            if not _verify_batch(store, index, entry, report):
                unreadable.add(index)
    broken = {p.ref for p in report.problems if p.kind == "entry"}
    for index in sorted(set(store.batch_indices()) - set(batch_entries)):
        if str(index) not in broken:
            report.add("batch", str(index), "the store keeps records for an entry that is no batch")
    _verify_checkpoints(store, tree, states, report)
    derived = getattr(store, "derived_problems", None)
    if derived is not None:
        for kind, ref, message in derived(state.next_seq):
            report.add(kind, ref, message)
    # every readable stored batch takes part in matching the warehouse rows, even one whose
    # entry is broken (named above): its records are still where the leaves say
    indices = [i for i in store.batch_indices() if i not in unreadable]
    if records is not None:
        report.records = _verify_rows(
            "record",
            "tx_id",
            records,
            known=_committed(store, indices, statements=False),
            fmt=RECORD_LEAF,
            report=report,
        )
    if statements is not None:
        report.statements = _verify_rows(
            "statement",
            "statement_id",
            statements,
            known=_committed(store, indices, statements=True),
            fmt=STATEMENT_LEAF,
            report=report,
        )
    return report


def _verify_batch(store: LogStore, index: int, entry: BatchEntry, report: VerifyReport) -> bool:
    """Check a batch's stored leaves against its signed manifest; False when unreadable."""
    try:
        batch = store.batch(index)
    except NotFoundError:
        report.add("batch", str(index), "the store has no record leaves for this batch entry")
        return False
    except FlowbureauError as exc:
        report.add("batch", str(index), str(exc))
        return False
    manifest = entry.manifest
    count = len(batch.leaf_hashes) // HASH_SIZE
    if (
        len(batch.leaf_hashes) % HASH_SIZE
        or count != manifest.record_count
        or count != len(batch.tx_ids)
    ):
        report.add("batch", str(index), "stored leaves or tx ids do not match the record count")
    elif merkle_root(batch.leaf_hashes) != manifest.record_root:
        report.add("batch", str(index), "stored record leaves do not give the signed batch root")
    if (batch.bank_id, batch.seq) != (manifest.bank_id, manifest.seq):
        report.add("batch", str(index), "stored bank or sequence differs from the manifest")
    statements = len(batch.statement_leaf_hashes) // HASH_SIZE
    if statements != manifest.statement_count or statements != len(batch.statement_ids):
        report.add("batch", str(index), "stored statement leaves do not match the statement count")
    elif merkle_root(batch.statement_leaf_hashes) != manifest.statement_root:
        report.add("batch", str(index), "stored statement leaves do not give the signed root")
    return True


def _verify_checkpoints(
    store: LogStore, tree: MerkleTree, states: Mapping[int, Membership], report: VerifyReport
) -> None:
    """Check every stored checkpoint strictly against the replayed state and rebuilt tree.

    The first checkpoint whose signed root differs from the stored entries also names the
    entries since the last matching checkpoint: one of them was edited, moved or replaced.
    """
    sizes = store.checkpoint_sizes()
    if tree.size and tree.size not in sizes:
        report.add("checkpoint", str(tree.size), "no checkpoint covers the whole log")
    matched, diverged = 0, False
    for size in sizes:
        report.checkpoints += 1
        note = store.checkpoint(size) or b""
        membership = states.get(size)
        if size > tree.size:
            report.add("checkpoint", str(size), f"signs {size} entries, the log has {tree.size}")
            continue
        if membership is None:
            report.add("checkpoint", str(size), "the entries before it do not replay")
            continue
        try:
            verified = open_checkpoint(note, membership.trust_policy(size), strict=True)
        except (InvalidNoteError, NoteVerificationError) as exc:
            report.add("checkpoint", str(size), str(exc))
            continue
        if verified.checkpoint.size != size:
            report.add(
                "checkpoint", str(size), f"stored as {size}, signs {verified.checkpoint.size}"
            )
        elif verified.checkpoint.root_hash != tree.root(size):
            report.add("checkpoint", str(size), "signed root differs from the stored entries' root")
            if not diverged:
                diverged = True
                ref = str(matched) if size - matched == 1 else f"{matched}..{size - 1}"
                report.add(
                    "entry",
                    ref,
                    f"differs from what checkpoint {size} signed (edited, moved or replaced)",
                )
        elif not diverged:
            matched = size


def _hashes(leaves: bytes) -> pa.Array:
    """32-byte hashes as a binary array (one element per hash)."""
    count = len(leaves) // HASH_SIZE
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(HASH_SIZE), count, [None, pa.py_buffer(leaves)]
    )
    return fixed.cast(pa.binary())


def _committed(store: LogStore, indices: Sequence[int], *, statements: bool) -> pa.Table:
    """``(id, hash, entry, leaf)`` of every committed record (or statement) leaf."""
    parts: list[pa.Table] = []
    for index in indices:
        batch = store.batch(index)
        ids = batch.statement_ids if statements else batch.tx_ids
        leaves = batch.statement_leaf_hashes if statements else batch.leaf_hashes
        if len(leaves) != HASH_SIZE * len(ids):
            continue  # named by _verify_batch
        parts.append(
            pa.table(
                {
                    "id": pa.array(ids, pa.string()),
                    "hash": _hashes(leaves),
                    "entry": pa.array(np.full(len(ids), index, dtype=np.int64)),
                    "leaf": pa.array(np.arange(len(ids), dtype=np.int64)),
                }
            )
        )
    if not parts:
        return pa.table(
            {
                "id": pa.array([], pa.string()),
                "hash": pa.array([], pa.binary()),
                "entry": pa.array([], pa.int64()),
                "leaf": pa.array([], pa.int64()),
            }
        )
    return pa.concat_tables(parts)


def _verify_rows(
    kind: str,
    key: str,
    tables: Iterable[pa.Table],
    *,
    known: pa.Table,
    fmt: LeafFormat,
    report: VerifyReport,
) -> int:
    """Recompute each row's leaf and match it to a committed leaf by (id, hash); name every row
    that matches none and every committed leaf no row matches (vectorised joins). Returns the
    number of rows checked."""
    parts = [
        pa.table({"id": t.column(key).cast(pa.string()), "hash": _hashes(fmt.leaf_hashes(t))})
        for t in tables
        if t.num_rows
    ]
    empty = pa.table({"id": pa.array([], pa.string()), "hash": pa.array([], pa.binary())})
    actual = pa.concat_tables(parts) if parts else empty
    actual = actual.append_column("row", pa.array(np.arange(actual.num_rows, dtype=np.int64)))
    joined = actual.join(known, keys=["id", "hash"], join_type="left outer")
    found = pc.is_valid(joined.column("entry"))
    unmatched = joined.filter(pc.invert(found))
    if unmatched.num_rows:
        same_id = unmatched.select(["id"]).join(
            known.select(["id", "entry", "leaf"]), keys="id", join_type="inner"
        )
        where: dict[str, list[str]] = {}
        for row in same_id.to_pylist():
            where.setdefault(row["id"], []).append(f"entry {row['entry']} leaf {row['leaf']}")
        for ident in unmatched.column("id").to_pylist():
            places = where.get(ident)
            why = (
                f"differs from the committed leaf ({', '.join(places)})"
                if places
                else ("is not in the log")
            )
            report.add(kind, f"{key}={ident}", why)
    hits = joined.filter(found)
    twice = pc.value_counts(hits.column("id"))
    for item in twice.filter(pc.greater(twice.field("counts"), 1)).to_pylist():
        report.add(kind, f"{key}={item['values']}", f"is stored {item['counts']} times")
    missing = known.join(
        hits.select(["entry", "leaf"]), keys=["entry", "leaf"], join_type="left anti"
    )
    if missing.num_rows:
        counts = missing.group_by("entry").aggregate([("leaf", "count")])
        label = "records" if kind == "record" else "statements"
        for entry, count in sorted(
            zip(
                counts.column("entry").to_pylist(),
                counts.column("leaf_count").to_pylist(),
                strict=True,
            )
        ):
            report.add("batch", str(entry), f"{count} committed {label} are missing")
    return int(actual.num_rows)
