"""The embedded consortium: bank nodes, the platform and member witnesses in one process.

Rules:
- There is one path in. :meth:`Ledger.submit` runs exactly what the networked set-up runs: the
  bank node checks the batch against the contract in force, packs, seals and signs a bundle
  (:mod:`flowbureau.transport.bundle`); the platform opens it, runs the contract again, appends
  the batch entry and publishes a checkpoint that every member's witness cosigns after checking
  consistency. Only the transport differs (a function call instead of HTTP).
- Keys live in a :class:`~flowbureau.transport.keys.Keystore` and are created on first use. The
  first bank seen founds the consortium (genesis); a bank seen later joins through an
  ``add_member`` proposal that the local members approve, followed, when the member count
  changes the majority, by a ``set_quorum`` change keeping both quorums at a majority.
- Witness state (the last checkpoint each witness cosigned) is kept in files beside each bank's
  keys, so a restarted witness still refuses a rewritten log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowbureau.ledger.checkpoint import TrustPolicy, open_checkpoint
from flowbureau.ledger.contract import (
    DEFAULT_CONTRACT,
    Contract,
    ContractRejectedError,
    TxHistory,
)
from flowbureau.ledger.log import (
    AdmittedBatch,
    CheckpointNotFinalError,
    ConsortiumLog,
    LogRun,
    LogStore,
    RunOutcome,
    VerifyReport,
    WitnessClient,
    verify_log,
)
from flowbureau.ledger.manifest import BANK_ID_PATTERN
from flowbureau.ledger.membership import (
    Action,
    Approval,
    Genesis,
    GovernanceError,
    Member,
    MemberKeys,
    Proposal,
    Role,
    witness_name,
)
from flowbureau.ledger.note import ED25519, NoteVerifier
from flowbureau.ledger.receipts import ConsistencyProof, Receipt, RecordProof
from flowbureau.ledger.witness import FileWitnessState, Witness, WitnessStateStore
from flowbureau.transport.bundle import BundleLimits, PackedBundle, pack_bundle
from flowbureau.transport.keys import BankKeys, Keystore, raw_public

__all__ = ["DEFAULT_ORIGIN", "BankNode", "EmbeddedRun", "Ledger", "majority", "member_keys"]

DEFAULT_ORIGIN = "flowbureau.local/consortium"
"""The log origin (and operator key name) of an embedded consortium."""


def majority(count: int) -> int:
    """The smallest number of members that is more than half of ``count``."""
    return count // 2 + 1


def member_keys(keys: BankKeys) -> MemberKeys:
    """The public half of a bank's keys, as the member list records it."""
    public = keys.public()
    return MemberKeys(public["signing"], public["witness"], public["box"])


class BankNode:
    """A bank's node: checks a batch with the contract, then packs, seals and signs it."""

    def __init__(self, bank_id: str, keys: BankKeys) -> None:
        self.bank_id = bank_id
        self.keys = keys

    def prepare(
        self,
        records: pa.Table,
        statements: pa.Table,
        *,
        seq: int,
        contract: Contract,
        platform_box_key: bytes,
        history: TxHistory,
        created_at: datetime | None = None,
    ) -> PackedBundle:
        """A signed bundle, or :class:`ContractRejectedError` before anything is sent.

        ``history`` answers which tx ids this bank contributed before (the contract's
        cross-batch duplicate rule).
        """
        packed = pack_bundle(
            records,
            statements,
            bank_id=self.bank_id,
            seq=seq,
            contract=contract,
            signing_key=self.keys.signing,
            platform_box_key=platform_box_key,
            created_at=created_at,
        )
        violations = contract.check(
            records,
            statements,
            packed.manifest,
            history,
            record_leaf_hashes=packed.record_leaf_hashes,
        )
        if violations:
            raise ContractRejectedError(violations, source=f"batch of {self.bank_id} #{seq}")
        return packed


class Ledger:
    """Facade over the consortium log for the embedded default (all nodes in this process).

    ``witness_state(bank_id)`` says where a local bank's witness keeps its state (default: files
    beside the bank's keys); ``remote_witnesses`` are members' witnesses reached over HTTP (the
    platform process); ``lock`` serialises appends between processes sharing ``store``.
    """

    def __init__(
        self,
        store: LogStore,
        keystore: Keystore,
        *,
        origin: str = DEFAULT_ORIGIN,
        contract: Contract = DEFAULT_CONTRACT,
        limits: BundleLimits | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lock: Callable[[], AbstractContextManager[object]] | None = None,
        witness_state: Callable[[str], WitnessStateStore] | None = None,
        remote_witnesses: Mapping[str, WitnessClient] | None = None,
        quorum: int | None = None,
    ) -> None:
        self.store = store
        self.keystore = keystore
        self._origin = origin
        self._contract = contract
        self._limits = limits
        self._clock = clock
        self._lock = lock
        self._witness_state = witness_state
        self.remote_witnesses: dict[str, WitnessClient] = dict(remote_witnesses or {})
        self._quorum = quorum
        self._log: ConsortiumLog | None = None

    # --- set-up ------------------------------------------------------------------------------

    def _open_log(self) -> ConsortiumLog:
        platform = self.keystore.platform()
        log = ConsortiumLog(
            self.store,
            log_key=platform.log,
            box_key=platform.box,
            limits=self._limits,
            clock=self._clock,
            lock=self._lock,
        )
        self._attach_witnesses(log)
        return log

    def _attach_witnesses(self, log: ConsortiumLog) -> None:
        """Reach every active member's witness: over HTTP when configured, else in process for
        banks whose keys are local (a member with neither cannot cosign from here)."""
        for member in log.membership.active(log.size):
            if member.bank_id in log.witnesses:
                continue
            remote = self.remote_witnesses.get(member.bank_id)
            if remote is not None:
                log.witnesses[member.bank_id] = remote
            elif self.keystore.has_bank(member.bank_id):
                log.witnesses[member.bank_id] = self._witness(member.bank_id, log.membership.origin)

    def _witness(self, bank_id: str, origin: str) -> WitnessClient:
        keys = self.keystore.bank(bank_id)
        platform = self.keystore.platform()
        log_verifier = NoteVerifier(origin, ED25519, raw_public(platform.log))
        state = (
            self._witness_state(bank_id)
            if self._witness_state is not None
            else FileWitnessState(self.keystore.root / "banks" / bank_id / "witness-state")
        )
        return Witness(witness_name(origin, bank_id), keys.witness, log_verifier, state=state)

    def draft_genesis(self, members: Sequence[Member], *, quorum: int | None = None) -> Genesis:
        """The founding document for ``members`` (quorum default: a majority), to be approved by
        every founder (:meth:`Genesis.approve`) and appended with :meth:`found_with`."""
        platform = self.keystore.platform()
        wanted = quorum or self._quorum or majority(len(members))
        return Genesis(
            origin=self._origin,
            log_key=raw_public(platform.log),
            platform_box_key=raw_public(platform.box),
            members=tuple(members),
            approval_quorum=wanted,
            witness_quorum=wanted,
            contract=self._contract.description(),
            created_at=self._clock(),
        )

    def found_with(self, genesis: Genesis, approvals: Sequence[Approval]) -> Receipt:
        """Append an approved genesis document as entry 0 (the store must be empty)."""
        if self._log is not None or self.store.size():
            raise GovernanceError("the consortium already exists")
        platform = self.keystore.platform()
        witnesses: dict[str, WitnessClient] = {}
        for member in genesis.members:
            remote = self.remote_witnesses.get(member.bank_id)
            if remote is not None:
                witnesses[member.bank_id] = remote
            elif self.keystore.has_bank(member.bank_id):
                witnesses[member.bank_id] = self._witness(member.bank_id, genesis.origin)
        self._log = ConsortiumLog.create(
            self.store,
            genesis,
            approvals,
            log_key=platform.log,
            box_key=platform.box,
            witnesses=witnesses,
            limits=self._limits,
            lock=self._lock,
        )
        return self._log.receipt(0)

    def found(
        self,
        bank_ids: Sequence[str],
        *,
        names: dict[str, str] | None = None,
        quorum: int | None = None,
    ) -> Receipt:
        """Create the consortium with these founding banks (keys created as needed)."""
        if self._log is not None or self.store.size():
            raise GovernanceError("the consortium already exists")
        if not bank_ids:
            raise GovernanceError("a consortium needs at least one founding bank")
        members = tuple(self._new_member(b, (names or {}).get(b)) for b in bank_ids)
        genesis = self.draft_genesis(members, quorum=quorum)
        approvals = [genesis.approve(b, self.keystore.bank(b).signing) for b in bank_ids]
        return self.found_with(genesis, approvals)

    def _new_member(self, bank_id: str, name: str | None, role: Role = Role.BANK) -> Member:
        if not BANK_ID_PATTERN.fullmatch(bank_id):
            raise GovernanceError(f"bank id {bank_id!r} is not allowed (letters, digits, . _ -)")
        return Member(bank_id, name or bank_id, role, member_keys(self.keystore.bank(bank_id)))

    @property
    def founded(self) -> bool:
        """True once the log has its genesis entry (here or in another process)."""
        return self._log is not None or self.store.size() > 0

    @property
    def log(self) -> ConsortiumLog:
        """The platform's log (after the consortium exists), caught up with the store and with
        every active member's witness attached."""
        log = self._reader()
        log.refresh()
        self._attach_witnesses(log)
        return log

    def _reader(self) -> ConsortiumLog:
        """The log object for reading (its methods catch up with the store themselves)."""
        if self._log is None:
            if not self.store.size():
                raise GovernanceError("the consortium has not been founded yet")
            self._log = self._open_log()
        return self._log

    def recover(
        self,
        is_published: Callable[[str], bool],
        *,
        refinalise: bool = False,
        checkpoint: bool = True,
    ) -> CheckpointNotFinalError | None:
        """Settle runs a crash left pending (see :meth:`LogStore.recover`), then (unless
        ``checkpoint`` is false, which replays nothing) publish a checkpoint if the newest
        entries have none - or, with ``refinalise``, if the newest is short of the quorum.
        Returns the refusal when that checkpoint is still not final."""
        lock = self._lock or nullcontext
        with lock():
            self.store.recover(is_published)
            if not checkpoint or not self.founded:
                return None
            log = self.log
            sizes = self.store.checkpoint_sizes()
            note = self.store.checkpoint(sizes[-1]) if sizes else None
            final = (
                note is not None
                and open_checkpoint(note, log.policy(sizes[-1]), require_final=False).final
            )
            if not sizes or sizes[-1] < log.size or (refinalise and not final):
                try:
                    log.publish_checkpoint()
                except CheckpointNotFinalError as exc:
                    return exc
            return None

    def _local_approvals(self, proposal: Proposal) -> list[Approval]:
        log = self.log
        return [
            proposal.approve(m.bank_id, self.keystore.bank(m.bank_id).signing)
            for m in log.membership.active(log.size)
            if self.keystore.has_bank(m.bank_id)
        ]

    def propose(
        self,
        action: Action,
        args: dict[str, Any],
        *,
        possession_key: Ed25519PrivateKey | None = None,
    ) -> Receipt:
        """Write a proposal for the current epoch, approve it with every local member's key and
        append it (raises :class:`GovernanceError` without enough approvals)."""
        log = self.log
        proposal = Proposal(action, log.membership.epoch, args, self._clock())
        possession = None if possession_key is None else possession_key.sign(proposal.message())
        return log.govern(proposal, self._local_approvals(proposal), possession)

    def join(self, bank_id: str, *, name: str | None = None, role: Role = Role.BANK) -> Receipt:
        """Add a member (its keys created locally) and keep the quorums at a majority."""
        log = self.log
        member = self._new_member(bank_id, name, role)
        receipt = self.propose(
            Action.ADD_MEMBER,
            {"member": member.to_json()},
            possession_key=self.keystore.bank(bank_id).signing,
        )
        log.witnesses[bank_id] = self._witness(bank_id, log.membership.origin)
        wanted = majority(len(log.membership.active(log.size)))
        if (log.membership.approval_quorum, log.membership.witness_quorum) != (wanted, wanted):
            receipt = self.propose(
                Action.SET_QUORUM, {"approval_quorum": wanted, "witness_quorum": wanted}
            )
        return receipt

    def apply(
        self, proposal: Proposal, approvals: Sequence[Approval], possession: bytes | None = None
    ) -> Receipt:
        """Append a proposal approved elsewhere (each member signing on its own host)."""
        return self.log.govern(proposal, approvals, possession)

    def ensure_member(self, bank_id: str) -> None:
        """Found the consortium with ``bank_id``, or add it, when it is not yet an active bank
        (its keys are created locally: the embedded default)."""
        if not self.founded:
            self.found([bank_id])
            return
        log = self.log
        if log.membership.member(bank_id, log.size) is None:
            self.join(bank_id)

    # --- contributing ------------------------------------------------------------------------

    def submit(
        self,
        bank_id: str,
        records: pa.Table,
        statements: pa.Table,
        *,
        created_at: datetime | None = None,
    ) -> Receipt:
        """Contribute a batch for ``bank_id`` through the one path in; return its receipt.

        The bank founds the consortium or joins it on first use. Raises
        :class:`CheckpointNotFinalError` (after appending) below the witness quorum.
        """
        run = self.run()
        run.contribute(bank_id, records, statements, created_at=created_at)
        outcome = run.commit()
        if outcome.not_final is not None:
            raise outcome.not_final
        return outcome.receipts[0]

    def run(self) -> EmbeddedRun:
        """A run of batches contributed together with one warehouse commit."""
        return EmbeddedRun(self)

    def anchor(self, source: str, seq: int, head: bytes) -> Receipt:
        """Pin the head of an external hash chain (e.g. the audit log) in the log."""
        return self.log.anchor(source, seq, head)

    # --- reading -----------------------------------------------------------------------------

    def keys(self) -> TrustPolicy:
        """What a verifier needs: the log key, witness keys and the quorum."""
        return self.log.policy()

    def checkpoint(self) -> bytes:
        """The latest cosigned checkpoint (a signed note)."""
        return self.log.latest_checkpoint()

    def prove(self, tx_id: str, *, bank_id: str | None = None) -> RecordProof:
        """Proof that a stored record is in the log."""
        return self._reader().prove(tx_id, bank_id=bank_id)

    def consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """Proof that the log of ``new_size`` extends the log of ``old_size``."""
        return self._reader().consistency(old_size, new_size)

    def verify(
        self,
        *,
        records: Iterable[pa.Table] | None = None,
        statements: Iterable[pa.Table] | None = None,
    ) -> VerifyReport:
        """Recompute everything from storage (and the given warehouse rows)."""
        return verify_log(self.store, records=records, statements=statements)


class EmbeddedRun:
    """Batches of one ingest run, each taken through the bank node and the platform in process.

    :meth:`contribute` is the bank node (contract, bundle) followed by the platform's admission
    (open, contract again) - nothing is stored; :meth:`commit` appends them around the
    warehouse commit (:meth:`flowbureau.ledger.log.LogRun.commit`).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._run: LogRun | None = None

    @property
    def batches(self) -> list[AdmittedBatch]:
        """The batches admitted so far."""
        return [] if self._run is None else list(self._run.batches)

    def contribute(
        self,
        bank_id: str,
        records: pa.Table,
        statements: pa.Table,
        *,
        warehouse_batch: str | None = None,
        history: TxHistory | None = None,
        created_at: datetime | None = None,
    ) -> AdmittedBatch:
        """Check, pack, seal, sign, open and check again one batch of ``bank_id``.

        ``history`` answers the duplicate rule's "contributed before?" (default: the log store).
        Raises :class:`ContractRejectedError` or a ``BundleError``; stores nothing.
        """
        ledger = self.ledger
        ledger.ensure_member(bank_id)
        log = ledger.log
        if self._run is None:
            self._run = log.run()
        run = self._run
        seq = run.next_seq(bank_id)
        membership = run.state.require_membership()
        node = BankNode(bank_id, ledger.keystore.bank(bank_id))
        packed = node.prepare(
            records,
            statements,
            seq=seq,
            contract=membership.contract,
            platform_box_key=membership.platform_box_key,
            history=history if history is not None else ledger.store,
            created_at=created_at or ledger._clock(),
        )
        return run.admit(
            packed.data,
            source=f"batch of {bank_id} #{seq}",
            history=history,
            warehouse_batch=warehouse_batch,
        )

    def commit(
        self,
        publish: Callable[[], object] = lambda: None,
        *,
        is_published: Callable[[str], bool] | None = None,
    ) -> RunOutcome:
        """Append the batches pending, ``publish`` (the warehouse commit), then commit them."""
        if self._run is None:
            publish()
            return RunOutcome((), (), None)
        return self._run.commit(publish, is_published=is_published)
