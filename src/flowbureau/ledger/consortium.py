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

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowbureau.ledger.checkpoint import TrustPolicy
from flowbureau.ledger.contract import (
    DEFAULT_CONTRACT,
    Contract,
    ContractRejectedError,
    TxHistory,
)
from flowbureau.ledger.log import ConsortiumLog, LogStore, VerifyReport, WitnessClient, verify_log
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
from flowbureau.ledger.witness import FileWitnessState, Witness
from flowbureau.transport.bundle import BundleLimits, PackedBundle, pack_bundle
from flowbureau.transport.keys import BankKeys, Keystore, raw_public

__all__ = ["DEFAULT_ORIGIN", "BankNode", "Ledger", "majority", "member_keys"]

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
    """Facade over the consortium log for the embedded default (all nodes in this process)."""

    def __init__(
        self,
        store: LogStore,
        keystore: Keystore,
        *,
        origin: str = DEFAULT_ORIGIN,
        contract: Contract = DEFAULT_CONTRACT,
        limits: BundleLimits | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.keystore = keystore
        self._origin = origin
        self._contract = contract
        self._limits = limits
        self._clock = clock
        self._log: ConsortiumLog | None = None
        if store.size():
            self._log = self._open_log()

    # --- set-up ------------------------------------------------------------------------------

    def _open_log(self) -> ConsortiumLog:
        platform = self.keystore.platform()
        log = ConsortiumLog(
            self.store, log_key=platform.log, box_key=platform.box, limits=self._limits
        )
        for member in log.membership.active(log.size):
            if self.keystore.has_bank(member.bank_id):  # remote members run their own witness
                log.witnesses[member.bank_id] = self._witness(member.bank_id, log.membership.origin)
        return log

    def _witness(self, bank_id: str, origin: str) -> WitnessClient:
        keys = self.keystore.bank(bank_id)
        platform = self.keystore.platform()
        log_verifier = NoteVerifier(origin, ED25519, raw_public(platform.log))
        state = FileWitnessState(self.keystore.root / "banks" / bank_id / "witness-state")
        return Witness(witness_name(origin, bank_id), keys.witness, log_verifier, state=state)

    def found(self, bank_ids: Sequence[str], *, names: dict[str, str] | None = None) -> Receipt:
        """Create the consortium with these founding banks (keys created as needed)."""
        if self._log is not None:
            raise GovernanceError("the consortium already exists")
        if not bank_ids:
            raise GovernanceError("a consortium needs at least one founding bank")
        platform = self.keystore.platform()
        members = tuple(self._new_member(b, (names or {}).get(b)) for b in bank_ids)
        quorum = majority(len(members))
        genesis = Genesis(
            origin=self._origin,
            log_key=raw_public(platform.log),
            platform_box_key=raw_public(platform.box),
            members=members,
            approval_quorum=quorum,
            witness_quorum=quorum,
            contract=self._contract.description(),
            created_at=self._clock(),
        )
        approvals = [genesis.approve(b, self.keystore.bank(b).signing) for b in bank_ids]
        witnesses = {b: self._witness(b, self._origin) for b in bank_ids}
        self._log = ConsortiumLog.create(
            self.store,
            genesis,
            approvals,
            log_key=platform.log,
            box_key=platform.box,
            witnesses=witnesses,
            limits=self._limits,
        )
        return self._log.receipt(0)

    def _new_member(self, bank_id: str, name: str | None, role: Role = Role.BANK) -> Member:
        if not BANK_ID_PATTERN.fullmatch(bank_id):
            raise GovernanceError(f"bank id {bank_id!r} is not allowed (letters, digits, . _ -)")
        return Member(bank_id, name or bank_id, role, member_keys(self.keystore.bank(bank_id)))

    @property
    def log(self) -> ConsortiumLog:
        """The platform's log (after the consortium exists)."""
        if self._log is None:
            raise GovernanceError("the consortium has not been founded yet")
        return self._log

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

        The bank founds the consortium or joins it on first use.
        """
        if self._log is None:
            self.found([bank_id])
        log = self.log
        if log.membership.member(bank_id, log.size) is None:
            self.join(bank_id)
        node = BankNode(bank_id, self.keystore.bank(bank_id))
        seq = log.next_seq(bank_id)
        packed = node.prepare(
            records,
            statements,
            seq=seq,
            contract=log.membership.contract,
            platform_box_key=log.membership.platform_box_key,
            history=self.store,
            created_at=created_at or self._clock(),
        )
        return log.admit(packed.data, source=f"batch of {bank_id} #{seq}")

    # --- reading -----------------------------------------------------------------------------

    def keys(self) -> TrustPolicy:
        """What a verifier needs: the log key, witness keys and the quorum."""
        return self.log.policy()

    def checkpoint(self) -> bytes:
        """The latest cosigned checkpoint (a signed note)."""
        return self.log.latest_checkpoint()

    def prove(self, tx_id: str, *, bank_id: str | None = None) -> RecordProof:
        """Proof that a stored record is in the log."""
        return self.log.prove(tx_id, bank_id=bank_id)

    def consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """Proof that the log of ``new_size`` extends the log of ``old_size``."""
        return self.log.consistency(old_size, new_size)

    def verify(
        self, *, records: Iterable[pa.Table] = (), statements: Iterable[pa.Table] = ()
    ) -> VerifyReport:
        """Recompute everything from storage (and the given warehouse rows)."""
        return verify_log(self.store, records=records, statements=statements)
