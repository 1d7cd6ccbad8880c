"""The consortium log: admission, appending, checkpoints, proofs - over a pluggable store.

Rules:
- The log is an append-only list of entries (:mod:`flowbureau.ledger.entry`); entry ``i`` is leaf
  ``i`` of an RFC 9162 tree. Entry 0 is the genesis; every later entry is checked against the
  state replayed from the entries before it (:class:`LogState`): governance entries need their
  quorum, batch entries need an active bank's valid signature, the contract in force, and the
  bank's next sequence number. The same replay runs when appending and when verifying.
- A :class:`LogStore` keeps the entry bytes, per batch the record leaf hashes, tx ids and
  statement ids, and the signed checkpoints. One ``append`` is atomic (entry + its batch index);
  the store refuses an append at any index but the next one. :class:`InMemoryLogStore` is the
  store of tests and the embedded default until the service database store exists.
- After each append the operator signs a checkpoint of the new size and asks every active
  member's witness to cosign it with a consistency proof from the size that witness last
  cosigned; the checkpoint (with all cosignatures gathered) is stored, and is final at the
  witness quorum. A refusal is reported, never papered over.
- :func:`verify_log` trusts nothing it reads: it re-parses and replays every entry, recomputes
  every batch root from the stored leaves and every record leaf from the given warehouse rows,
  rebuilds the whole tree, and checks every stored checkpoint strictly (every signature line must
  be a trusted key's and verify); it names each broken record, entry and checkpoint.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from flowbureau.errors import ConflictError, FlowbureauError, LedgerError, NotFoundError
from flowbureau.ledger.checkpoint import (
    Checkpoint,
    TrustPolicy,
    VerifiedCheckpoint,
    add_cosignatures,
    open_checkpoint,
    sign_checkpoint,
)
from flowbureau.ledger.contract import ContractRejectedError
from flowbureau.ledger.entry import BatchEntry, Entry, GenesisEntry, GovernanceEntry, parse_entry
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
from flowbureau.transport.bundle import BundleLimits, open_bundle
from flowbureau.transport.keys import raw_public

__all__ = [
    "BatchIndex",
    "CheckpointNotFinalError",
    "ConsortiumLog",
    "EntryRejectedError",
    "InMemoryLogStore",
    "LogState",
    "LogStore",
    "Problem",
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
    """What the store keeps beside a batch entry to prove and verify its records."""

    bank_id: str
    seq: int
    tx_ids: tuple[str, ...]
    leaf_hashes: bytes
    statement_ids: tuple[str, ...]
    statement_leaf_hashes: bytes


class LogStore(Protocol):
    """Durable storage of the log (in memory here; the service database in production)."""

    def size(self) -> int:
        """Number of entries."""
        ...

    def entry(self, index: int) -> bytes:
        """The bytes of entry ``index``."""
        ...

    def entries(self, start: int = 0) -> Iterator[bytes]:
        """Entry bytes from ``start`` to the end, in order."""
        ...

    def append(self, index: int, entry: bytes, batch: BatchIndex | None) -> None:
        """Store ``entry`` (and its batch index) atomically at ``index``, which must be the size."""
        ...

    def batch(self, index: int) -> BatchIndex:
        """The batch index stored with batch entry ``index``."""
        ...

    def locate(self, tx_id: str) -> list[tuple[int, int]]:
        """``(entry index, leaf index)`` of every record with ``tx_id``."""
        ...

    def seen(self, bank_id: str, tx_ids: Sequence[str]) -> set[str]:
        """The subset of ``tx_ids`` already contributed by ``bank_id``."""
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


class InMemoryLogStore:
    """A :class:`LogStore` in memory. Its attributes are plain containers so tests can tamper."""

    def __init__(self) -> None:
        self.entry_bytes: list[bytes] = []
        self.batches: dict[int, BatchIndex] = {}
        self.checkpoints: dict[int, bytes] = {}
        self._where: dict[str, list[tuple[int, int]]] = {}
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def size(self) -> int:
        """Number of entries."""
        return len(self.entry_bytes)

    def entry(self, index: int) -> bytes:
        """The bytes of entry ``index``."""
        return self.entry_bytes[index]

    def entries(self, start: int = 0) -> Iterator[bytes]:
        """Entry bytes from ``start`` on."""
        return iter(self.entry_bytes[start:])

    def append(self, index: int, entry: bytes, batch: BatchIndex | None) -> None:
        """Store the entry at ``index`` (must be the current size)."""
        with self._lock:
            if index != len(self.entry_bytes):
                raise ConflictError(f"append at {index} but the log has {len(self.entry_bytes)}")
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

    def locate(self, tx_id: str) -> list[tuple[int, int]]:
        """Where ``tx_id`` is."""
        return list(self._where.get(tx_id, ()))

    def seen(self, bank_id: str, tx_ids: Sequence[str]) -> set[str]:
        """Which of ``tx_ids`` the bank contributed before."""
        known = self._seen.get(bank_id, set())
        return {t for t in tx_ids if t in known}

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


class ConsortiumLog:
    """The platform's side of the log: admits bundles and governance, publishes checkpoints.

    ``witnesses`` maps bank ids to witness clients; the active members among them are asked to
    cosign every new checkpoint.
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
    ) -> None:
        self.store = store
        self._log_key = log_key
        self._box_key = box_key
        self.witnesses: dict[str, WitnessClient] = dict(witnesses or {})
        self._limits = limits
        self._clock = clock
        self._lock = threading.RLock()
        self._trees: OrderedDict[int, MerkleTree] = OrderedDict()
        self.state = LogState()
        self.tree = MerkleTree()
        for index, data in enumerate(store.entries()):
            self.state.admit(parse_entry(data, where=f"entry {index}"))
            self.tree.append(data)
        if self.state.membership is not None:
            self._check_keys(self.state.membership)
        self._signer: Ed25519NoteSigner | None = None

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
    ) -> ConsortiumLog:
        """Start a log with its genesis entry (the store must be empty)."""
        if store.size():
            raise ConflictError("the log store already has entries")
        log = cls(store, log_key=log_key, box_key=box_key, witnesses=witnesses, limits=limits)
        log._append(GenesisEntry(genesis, tuple(approvals)), None)
        return log

    def _check_keys(self, membership: Membership) -> None:
        if raw_public(self._log_key) != membership.log_key:
            raise LedgerError("this log key is not the one the genesis names")
        if raw_public(self._box_key) != membership.platform_box_key:
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

    def _signing_key_of(self, bank_id: str) -> bytes | None:
        member = self.membership.member(bank_id, self.size)
        return member.keys.signing if member is not None and member.role is Role.BANK else None

    # --- appending ----------------------------------------------------------------------------

    def admit(self, bundle: bytes, *, source: str = "<bundle>") -> Receipt:
        """Open a bundle, run the contract, append the batch entry and publish a checkpoint."""
        with self._lock:
            opened = open_bundle(
                bundle,
                box_key=self._box_key,
                signing_key_of=self._signing_key_of,
                next_seq=self.next_seq,
                limits=self._limits,
                source=source,
            )
            contract = self.membership.contract
            violations = contract.check(
                opened.records,
                opened.statements,
                opened.manifest,
                self.store,
                record_leaf_hashes=opened.record_leaf_hashes,
            )
            if violations:
                raise ContractRejectedError(violations, source=source)
            batch = BatchIndex(
                opened.manifest.bank_id,
                opened.manifest.seq,
                tuple(opened.records.column("tx_id").to_pylist()),
                opened.record_leaf_hashes,
                tuple(opened.statements.column("statement_id").to_pylist()),
                opened.statement_leaf_hashes,
            )
            return self._append(BatchEntry(opened.manifest, opened.signature), batch)

    def govern(
        self, proposal: Proposal, approvals: Sequence[Approval], possession: bytes | None = None
    ) -> Receipt:
        """Append an approved governance change and publish a checkpoint."""
        with self._lock:
            return self._append(GovernanceEntry(proposal, tuple(approvals), possession), None)

    def _append(self, entry: Entry, batch: BatchIndex | None) -> Receipt:
        data = entry.to_bytes()
        trial = LogState(self.state.size, self.state.membership, dict(self.state.next_seq))
        trial.admit(entry)  # raises (GovernanceError, EntryRejectedError) before anything is stored
        if trial.membership is not None:
            self._check_keys(trial.membership)
        index = self.tree.size
        self.store.append(index, data, batch)
        self.state = trial
        self.tree.append(data)
        checkpoint = self.publish_checkpoint()
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
        with self._lock:
            size = self.tree.size
            checkpoint = Checkpoint(self.membership.origin, size, self.tree.root())
            note = sign_checkpoint(checkpoint, self._log_signer())
            policy = self.policy(size)
            expected = {w.name for w in policy.witnesses}
            cosignatures: list[NoteSignature] = []
            refusals: list[WitnessRefusedError] = []
            for client in self.witnesses.values():
                if client.name not in expected:
                    continue
                try:
                    cosignatures.append(self._cosign(client, size, format_note(note)))
                except WitnessRefusedError as exc:
                    refusals.append(exc)
            cosigned = add_cosignatures(note, cosignatures)
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
        old = self._last_cosigned(client.name, before=size)
        try:
            return client.add_checkpoint(old, self._consistency(old, size), note)
        except StaleOldSizeError as exc:  # the witness knows a different size: prove from it
            if exc.expected > size:
                raise
            return client.add_checkpoint(exc.expected, self._consistency(exc.expected, size), note)

    def _consistency(self, old: int, new: int) -> list[bytes]:
        return [] if old in (0, new) else self.tree.consistency_proof(old, new)

    def _last_cosigned(self, witness: str, *, before: int) -> int:
        for size in reversed(self.store.checkpoint_sizes()):
            if size >= before:
                continue
            note = self.store.checkpoint(size)
            if note is not None and any(s.name == witness for s in parse_note(note).signatures):
                return size
        return 0

    def latest_checkpoint(self) -> bytes:
        """The newest stored checkpoint note."""
        sizes = self.store.checkpoint_sizes()
        note = self.store.checkpoint(sizes[-1]) if sizes else None
        if note is None:
            raise NotFoundError("no checkpoint has been published")
        return note

    # --- proofs -------------------------------------------------------------------------------

    def _receipt(self, index: int, checkpoint: VerifiedCheckpoint) -> Receipt:
        size = checkpoint.checkpoint.size
        return Receipt(
            index,
            self.store.entry(index),
            size,
            self.tree.root(size),
            tuple(self.tree.inclusion_proof(index, size)),
            checkpoint.to_bytes(),
        )

    def receipt(self, index: int) -> Receipt:
        """A receipt for entry ``index`` under the latest checkpoint."""
        with self._lock:
            note = self.latest_checkpoint()
            size = Checkpoint.parse(parse_note(note).text).size
            verified = open_checkpoint(note, self.policy(size), require_final=False)
            if not 0 <= index < verified.checkpoint.size:
                raise NotFoundError(f"entry {index} is not under the latest checkpoint")
            return self._receipt(index, verified)

    def _batch_tree(self, index: int) -> MerkleTree:
        tree = self._trees.get(index)
        if tree is None:
            tree = MerkleTree.from_leaf_hashes(self.store.batch(index).leaf_hashes)
            self._trees[index] = tree
            while len(self._trees) > 8:
                self._trees.popitem(last=False)
        self._trees.move_to_end(index)
        return tree

    def prove(self, tx_id: str, *, bank_id: str | None = None) -> RecordProof:
        """Prove a stored record is in the log (``bank_id`` picks one if tx ids collide)."""
        with self._lock:
            places = self.store.locate(tx_id)
            if bank_id is not None:
                places = [p for p in places if self.store.batch(p[0]).bank_id == bank_id]
            if not places:
                raise NotFoundError(f"no record with tx_id {tx_id!r} is in the log")
            if len(places) > 1:
                raise ConflictError(f"tx_id {tx_id!r} is in {len(places)} batches; name the bank")
            index, leaf = places[0]
            tree = self._batch_tree(index)
            return RecordProof(
                tree.leaf_hash(leaf),
                leaf,
                tree.size,
                tree.root(),
                tuple(tree.inclusion_proof(leaf)),
                self.receipt(index),
            )

    def consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """Prove the log of ``new_size`` (default: now) extends the log of ``old_size``."""
        with self._lock:
            new_size = self.tree.size if new_size is None else new_size
            return ConsistencyProof(
                old_size,
                new_size,
                self.tree.root(old_size),
                self.tree.root(new_size),
                tuple(self.tree.consistency_proof(old_size, new_size)),
            )


# --- verification -----------------------------------------------------------------------------


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

    @property
    def ok(self) -> bool:
        """True when nothing is broken."""
        return not self.problems

    def add(self, kind: str, ref: str, message: str) -> None:
        """Record a problem."""
        self.problems.append(Problem(kind, ref, message))


def verify_log(
    store: LogStore,
    *,
    records: Iterable[pa.Table] = (),
    statements: Iterable[pa.Table] = (),
) -> VerifyReport:
    """Recompute and check everything in ``store`` (and the given warehouse rows); see module."""
    report = VerifyReport()
    state = LogState()
    tree = MerkleTree()
    states: dict[int, Membership] = {}
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
            _verify_batch(store, index, entry, report)
    _verify_checkpoints(store, tree, states, report)
    batches = {i: store.batch(i) for i in range(tree.size) if _is_batch(store, i)}
    _verify_warehouse(store, batches, records, statements, report)
    return report


def _is_batch(store: LogStore, index: int) -> bool:
    try:
        store.batch(index)
    except NotFoundError:
        return False
    return True


def _verify_batch(store: LogStore, index: int, entry: BatchEntry, report: VerifyReport) -> None:
    try:
        batch = store.batch(index)
    except NotFoundError:
        report.add("batch", str(index), "the store has no record leaves for this batch entry")
        return
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


def _verify_rows(
    kind: str,
    key: str,
    tables: Iterable[pa.Table],
    *,
    locate: Callable[[str], list[tuple[int, int]]],
    leaves_of: Callable[[int], bytes],
    fmt: LeafFormat,
    report: VerifyReport,
) -> dict[int, set[int]] | None:
    """Recompute each row's leaf and find it among the committed ones; name every mismatch.

    Returns, per batch entry, the leaf positions matched (``None`` when no rows were given).
    """
    matched: dict[int, set[int]] | None = None
    for table in tables:
        matched = matched if matched is not None else {}
        keys = table.column(key).to_pylist()
        leaves = fmt.leaf_hashes(table)
        for row, ident in enumerate(keys):
            leaf = leaves[row * HASH_SIZE : (row + 1) * HASH_SIZE]
            places = locate(ident)
            hit = next(
                (
                    (i, j)
                    for i, j in places
                    if leaves_of(i)[j * HASH_SIZE : (j + 1) * HASH_SIZE] == leaf
                ),
                None,
            )
            if hit is None:
                where = ", ".join(f"entry {i} leaf {j}" for i, j in places)
                why = (
                    f"differs from the committed leaf ({where})" if places else "is not in the log"
                )
                report.add(kind, f"{key}={ident}", why)
            else:
                matched.setdefault(hit[0], set()).add(hit[1])
    return matched


def _verify_warehouse(
    store: LogStore,
    batches: Mapping[int, BatchIndex],
    records: Iterable[pa.Table],
    statements: Iterable[pa.Table],
    report: VerifyReport,
) -> None:
    counted_records = _counting(records, report, "records")
    matched = _verify_rows(
        "record",
        "tx_id",
        counted_records,
        locate=lambda t: [p for p in store.locate(t) if p[0] in batches],
        leaves_of=lambda i: batches[i].leaf_hashes,
        fmt=RECORD_LEAF,
        report=report,
    )
    where: dict[str, list[tuple[int, int]]] = {}
    for index, batch in batches.items():
        for position, statement_id in enumerate(batch.statement_ids):
            where.setdefault(statement_id, []).append((index, position))
    matched_statements = _verify_rows(
        "statement",
        "statement_id",
        _counting(statements, report, "statements"),
        locate=lambda s: where.get(s, []),
        leaves_of=lambda i: batches[i].statement_leaf_hashes,
        fmt=STATEMENT_LEAF,
        report=report,
    )
    for label, found in (("records", matched), ("statements", matched_statements)):
        if found is None:
            continue
        for index, batch in batches.items():
            committed = len(batch.tx_ids if label == "records" else batch.statement_ids)
            missing = committed - len(found.get(index, ()))
            if missing:
                report.add("batch", str(index), f"{missing} committed {label} are missing")


def _counting(tables: Iterable[pa.Table], report: VerifyReport, what: str) -> Iterator[pa.Table]:
    for table in tables:
        setattr(report, what, getattr(report, what) + table.num_rows)
        yield table
