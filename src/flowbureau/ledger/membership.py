"""The governed member list: genesis, proposals, approvals, and replaying them from the log.

Rules:
- Members are banks (contribute batches, witness, vote) or witnesses (witness and vote only,
  e.g. a regulator). Each has three public keys: ``signing`` (Ed25519: manifests and votes),
  ``witness`` (Ed25519: cosignatures) and ``box`` (X25519: messages sealed to it).
- Validity is by log index, not wall-clock time, so it replays identically everywhere: a key
  version is valid for entries ``valid_from <= i < valid_to``. A change recorded in entry ``i``
  takes effect from entry ``i + 1``.
- Genesis (entry 0) fixes the origin, the log and platform keys, the founders, both quorums and
  the contract; every founder approves it. After that every change is a *proposal* (add a
  member, rotate a member's keys, revoke a member, upgrade the contract, change a quorum) that
  needs valid approvals from at least ``approval_quorum`` distinct active members. A proposal
  names the governance *epoch* it was written for (the number of governance entries so far), so
  its approvals cannot be replayed after any other change. Adding a member or rotating keys
  also needs a possession proof: the new signing key signs the proposal.
- A change that would leave a quorum unreachable (more approvals or cosignatures required than
  there are active members) is refused; lower the quorum first.
- Approvals sign ``"flowbureau/governance/v1\\n" || canonical JSON of the proposal`` (genesis:
  ``"flowbureau/genesis/v1\\n" || ...``); the prefixes separate them from manifest signatures.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flowbureau.errors import LedgerError
from flowbureau.ledger.canonical import (
    NonCanonicalError,
    b64,
    canonical_json,
    require_int,
    require_object,
    require_str,
    unb64,
)
from flowbureau.ledger.checkpoint import TrustPolicy
from flowbureau.ledger.contract import Contract, UnknownContractError
from flowbureau.ledger.manifest import BANK_ID_PATTERN, format_time, parse_time
from flowbureau.ledger.note import COSIGNATURE_V1, ED25519, NoteVerifier

__all__ = [
    "GENESIS_DOMAIN",
    "GOVERNANCE_DOMAIN",
    "Action",
    "Approval",
    "Genesis",
    "GovernanceError",
    "Member",
    "MemberKeys",
    "Membership",
    "Proposal",
    "Role",
    "approvals_from_json",
    "witness_name",
]

GOVERNANCE_DOMAIN = b"flowbureau/governance/v1\n"
"""Prefix of the message a member signs to approve a proposal."""
GENESIS_DOMAIN = b"flowbureau/genesis/v1\n"
"""Prefix of the message a founder signs to approve the genesis document."""


class GovernanceError(LedgerError):
    """A genesis document or proposal is invalid, stale, or lacks its quorum of approvals."""


class Role(enum.StrEnum):
    """What a member does: banks contribute, witness and vote; witnesses witness and vote."""

    BANK = "bank"
    WITNESS = "witness"


class Action(enum.StrEnum):
    """Kinds of governance change."""

    ADD_MEMBER = "add_member"
    ROTATE_KEYS = "rotate_keys"
    REVOKE_MEMBER = "revoke_member"
    UPGRADE_CONTRACT = "upgrade_contract"
    SET_QUORUM = "set_quorum"


_NEEDS_POSSESSION = frozenset({Action.ADD_MEMBER, Action.ROTATE_KEYS})


def witness_name(origin: str, bank_id: str) -> str:
    """The key name a member's witness cosigns under for the log ``origin``."""
    return f"{origin}/witness/{bank_id}"


def _verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _key(obj: Mapping[str, Any], name: str, path: str) -> bytes:
    try:
        return unb64(require_str(obj, name, path), size=32, what=name)
    except ValueError as exc:
        raise NonCanonicalError(str(exc), path=f"{path}.{name}") from None


@dataclass(frozen=True, slots=True)
class MemberKeys:
    """A member's raw 32-byte public keys."""

    signing: bytes
    witness: bytes
    box: bytes

    def to_json(self) -> dict[str, str]:
        """Keys in base64."""
        return {"signing": b64(self.signing), "witness": b64(self.witness), "box": b64(self.box)}

    @classmethod
    def from_json(cls, data: Any, path: str) -> MemberKeys:
        """Strict inverse of :meth:`to_json`."""
        obj = require_object(data, path, {"signing", "witness", "box"})
        return cls(_key(obj, "signing", path), _key(obj, "witness", path), _key(obj, "box", path))


@dataclass(frozen=True, slots=True)
class Member:
    """One key version of a member, valid for log entries ``valid_from <= i < valid_to``."""

    bank_id: str
    name: str
    role: Role
    keys: MemberKeys
    valid_from: int = 0
    valid_to: int | None = None

    def active_at(self, index: int) -> bool:
        """True when this key version is valid for the entry at ``index``."""
        return self.valid_from <= index and (self.valid_to is None or index < self.valid_to)

    def to_json(self) -> dict[str, Any]:
        """The member as the governance documents write it (without validity)."""
        return {
            "bank_id": self.bank_id,
            "name": self.name,
            "role": self.role.value,
            "keys": self.keys.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any, path: str) -> Member:
        """Strict inverse of :meth:`to_json`."""
        obj = require_object(data, path, {"bank_id", "name", "role", "keys"})
        bank_id = require_str(obj, "bank_id", path)
        if not BANK_ID_PATTERN.fullmatch(bank_id):
            raise NonCanonicalError(f"bank id {bank_id!r} is not allowed", path=f"{path}.bank_id")
        try:
            role = Role(require_str(obj, "role", path))
        except ValueError:
            raise NonCanonicalError(f"unknown role {obj['role']!r}", path=f"{path}.role") from None
        return cls(
            bank_id, require_str(obj, "name", path), role, MemberKeys.from_json(obj["keys"], path)
        )


@dataclass(frozen=True, slots=True)
class Approval:
    """A member's signature over a proposal (or a founder's over genesis)."""

    bank_id: str
    signature: bytes

    def to_json(self) -> dict[str, str]:
        """``{"bank_id", "signature"}`` with the signature in base64."""
        return {"bank_id": self.bank_id, "signature": b64(self.signature)}

    @classmethod
    def from_json(cls, data: Any, path: str) -> Approval:
        """Strict inverse of :meth:`to_json`."""
        obj = require_object(data, path, {"bank_id", "signature"})
        try:
            signature = unb64(require_str(obj, "signature", path), size=64, what="signature")
        except ValueError as exc:
            raise NonCanonicalError(str(exc), path=f"{path}.signature") from None
        return cls(require_str(obj, "bank_id", path), signature)


def approvals_from_json(data: Any, path: str) -> tuple[Approval, ...]:
    """Parse a JSON list of approvals strictly."""
    if not isinstance(data, list):
        raise NonCanonicalError("expected a list of approvals", path=path)
    return tuple(Approval.from_json(item, f"{path}[{i}]") for i, item in enumerate(data))


@dataclass(frozen=True)
class Genesis:
    """The founding document: origin, log and platform keys, founders, quorums, contract."""

    origin: str
    log_key: bytes
    platform_box_key: bytes
    members: tuple[Member, ...]
    approval_quorum: int
    witness_quorum: int
    contract: Mapping[str, Any]
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The document the founders sign."""
        return {
            "origin": self.origin,
            "log_key": b64(self.log_key),
            "platform_box_key": b64(self.platform_box_key),
            "members": [m.to_json() for m in self.members],
            "approval_quorum": self.approval_quorum,
            "witness_quorum": self.witness_quorum,
            "contract": dict(self.contract),
            "created_at": format_time(self.created_at),
        }

    def message(self) -> bytes:
        """The exact bytes each founder signs."""
        return GENESIS_DOMAIN + canonical_json(self.to_json())

    def approve(self, bank_id: str, key: Ed25519PrivateKey) -> Approval:
        """A founder's approval."""
        return Approval(bank_id, key.sign(self.message()))

    @classmethod
    def from_json(cls, data: Any, path: str = "genesis") -> Genesis:
        """Strict inverse of :meth:`to_json`."""
        keys = {
            "origin",
            "log_key",
            "platform_box_key",
            "members",
            "approval_quorum",
            "witness_quorum",
            "contract",
            "created_at",
        }
        obj = require_object(data, path, keys)
        members = obj["members"]
        if not isinstance(members, list) or not members:
            raise NonCanonicalError("expected a non-empty list of members", path=f"{path}.members")
        contract = obj["contract"]
        if not isinstance(contract, dict):
            raise NonCanonicalError("expected the contract description", path=f"{path}.contract")
        return cls(
            origin=require_str(obj, "origin", path),
            log_key=_key(obj, "log_key", path),
            platform_box_key=_key(obj, "platform_box_key", path),
            members=tuple(
                Member.from_json(m, f"{path}.members[{i}]") for i, m in enumerate(members)
            ),
            approval_quorum=require_int(obj, "approval_quorum", path, minimum=1),
            witness_quorum=require_int(obj, "witness_quorum", path, minimum=1),
            contract=contract,
            created_at=parse_time(require_str(obj, "created_at", path), path=f"{path}.created_at"),
        )


@dataclass(frozen=True)
class Proposal:
    """A governance change written for one epoch; ``args`` depend on the action.

    - ``add_member``: ``{"member": Member JSON}``
    - ``rotate_keys``: ``{"bank_id", "keys": MemberKeys JSON}``
    - ``revoke_member``: ``{"bank_id", "reason"}``
    - ``upgrade_contract``: ``{"contract": contract description}``
    - ``set_quorum``: ``{"approval_quorum", "witness_quorum"}``
    """

    action: Action
    epoch: int
    args: Mapping[str, Any]
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The proposal as members sign it."""
        return {
            "action": self.action.value,
            "epoch": self.epoch,
            "args": dict(self.args),
            "created_at": format_time(self.created_at),
        }

    def message(self) -> bytes:
        """The exact bytes an approval (or possession proof) signs."""
        return GOVERNANCE_DOMAIN + canonical_json(self.to_json())

    def approve(self, bank_id: str, key: Ed25519PrivateKey) -> Approval:
        """A member's approval of this proposal."""
        return Approval(bank_id, key.sign(self.message()))

    @classmethod
    def from_json(cls, data: Any, path: str = "proposal") -> Proposal:
        """Strict inverse of :meth:`to_json` (arguments are checked when applied)."""
        obj = require_object(data, path, {"action", "epoch", "args", "created_at"})
        try:
            action = Action(require_str(obj, "action", path))
        except ValueError:
            raise NonCanonicalError(
                f"unknown action {obj['action']!r}", path=f"{path}.action"
            ) from None
        if not isinstance(obj["args"], dict):
            raise NonCanonicalError("expected an object", path=f"{path}.args")
        return cls(
            action,
            require_int(obj, "epoch", path, minimum=1),
            obj["args"],
            parse_time(require_str(obj, "created_at", path), path=f"{path}.created_at"),
        )


@dataclass
class Membership:
    """The consortium's governed state after replaying the log up to some entry.

    ``versions`` keeps every key version of every member, so the members active at any past
    index remain known (old batches and checkpoints are verified against them).
    """

    origin: str
    log_key: bytes
    platform_box_key: bytes
    versions: dict[str, list[Member]]
    approval_quorum: int
    witness_quorum: int
    contract: Contract
    epoch: int = 1

    @classmethod
    def from_genesis(cls, genesis: Genesis, approvals: Sequence[Approval]) -> Membership:
        """Check the founding document and every founder's approval; start the state."""
        ids = [m.bank_id for m in genesis.members]
        if len(set(ids)) != len(ids):
            raise GovernanceError("genesis lists a member twice")
        message = genesis.message()
        signed = _check_approvals(
            approvals, {m.bank_id: m.keys.signing for m in genesis.members}, message
        )
        missing = sorted(set(ids) - signed)
        if missing:
            raise GovernanceError(f"genesis lacks the approval of founders {', '.join(missing)}")
        try:
            contract = Contract.from_description(genesis.contract)
        except UnknownContractError as exc:
            raise GovernanceError(f"genesis contract: {exc}") from None
        state = cls(
            origin=genesis.origin,
            log_key=genesis.log_key,
            platform_box_key=genesis.platform_box_key,
            versions={m.bank_id: [replace(m, valid_from=0)] for m in genesis.members},
            approval_quorum=genesis.approval_quorum,
            witness_quorum=genesis.witness_quorum,
            contract=contract,
        )
        NoteVerifier(genesis.origin, ED25519, genesis.log_key)  # origin must be a valid key name
        state._check_quorums()
        return state

    def member(self, bank_id: str, index: int) -> Member | None:
        """The key version of ``bank_id`` valid at ``index``, if any."""
        for version in self.versions.get(bank_id, ()):
            if version.active_at(index):
                return version
        return None

    def active(self, index: int) -> list[Member]:
        """Members with a key version valid at ``index``, in bank id order."""
        found = (self.member(bank_id, index) for bank_id in sorted(self.versions))
        return [m for m in found if m is not None]

    def trust_policy(self, index: int) -> TrustPolicy:
        """Log key, witness keys active at ``index`` and the witness quorum."""
        witnesses = tuple(
            NoteVerifier(witness_name(self.origin, m.bank_id), COSIGNATURE_V1, m.keys.witness)
            for m in self.active(index)
        )
        return TrustPolicy(
            NoteVerifier(self.origin, ED25519, self.log_key), witnesses, self.witness_quorum
        )

    def apply(
        self,
        proposal: Proposal,
        approvals: Sequence[Approval],
        possession: bytes | None,
        *,
        index: int,
    ) -> Membership:
        """Validate a governance entry at ``index``; return the state after it (self unchanged)."""
        if proposal.epoch != self.epoch:
            raise GovernanceError(
                f"proposal is for epoch {proposal.epoch}, the consortium is at epoch {self.epoch}"
            )
        voters = {m.bank_id: m.keys.signing for m in self.active(index)}
        signed = _check_approvals(approvals, voters, proposal.message())
        if len(signed) < self.approval_quorum:
            raise GovernanceError(
                f"{proposal.action.value} has {len(signed)} valid approvals, "
                f"{self.approval_quorum} needed"
            )
        trial = replace(self, versions={k: list(v) for k, v in self.versions.items()})
        try:
            trial._change(proposal, possession, index)
        except (NonCanonicalError, UnknownContractError, KeyError, TypeError, ValueError) as exc:
            raise GovernanceError(f"{proposal.action.value} arguments are invalid: {exc}") from None
        trial._check_quorums(at=index + 1)
        trial.epoch += 1
        return trial

    def _change(self, proposal: Proposal, possession: bytes | None, index: int) -> None:
        args, effective = proposal.args, index + 1
        if proposal.action is Action.ADD_MEMBER:
            member = Member.from_json(args["member"], "proposal.args.member")
            if member.bank_id in self.versions:
                raise GovernanceError(f"{member.bank_id} is or was a member; rotate keys instead")
            _check_possession(member.keys.signing, possession, proposal)
            self.versions[member.bank_id] = [replace(member, valid_from=effective)]
        elif proposal.action is Action.ROTATE_KEYS:
            current = self._current(str(args["bank_id"]), index)
            keys = MemberKeys.from_json(args["keys"], "proposal.args.keys")
            _check_possession(keys.signing, possession, proposal)
            history = self.versions[current.bank_id]
            history[-1] = replace(current, valid_to=effective)
            history.append(replace(current, keys=keys, valid_from=effective, valid_to=None))
        elif proposal.action is Action.REVOKE_MEMBER:
            current = self._current(str(args["bank_id"]), index)
            if not str(args["reason"]):
                raise GovernanceError("a revocation needs a reason")
            self.versions[current.bank_id][-1] = replace(current, valid_to=effective)
        elif proposal.action is Action.UPGRADE_CONTRACT:
            contract = Contract.from_description(args["contract"])
            if contract.hash == self.contract.hash:
                raise GovernanceError("the proposed contract is the one in force")
            self.contract = contract
        else:
            self.approval_quorum = int(args["approval_quorum"])
            self.witness_quorum = int(args["witness_quorum"])
        if proposal.action not in _NEEDS_POSSESSION and possession is not None:
            raise GovernanceError(f"{proposal.action.value} takes no possession proof")

    def _current(self, bank_id: str, index: int) -> Member:
        member = self.member(bank_id, index)
        if member is None:
            raise GovernanceError(f"{bank_id} is not an active member")
        return member

    def _check_quorums(self, at: int = 0) -> None:
        count = len(self.active(at))
        if not 1 <= self.approval_quorum <= count:
            raise GovernanceError(
                f"approval quorum {self.approval_quorum} is unreachable with {count} members"
            )
        if not 1 <= self.witness_quorum <= count:
            raise GovernanceError(
                f"witness quorum {self.witness_quorum} is unreachable with {count} witnesses"
            )


def _check_approvals(
    approvals: Iterable[Approval], keys: Mapping[str, bytes], message: bytes
) -> set[str]:
    """The set of approvers; raise on unknown, duplicate or invalid approvals."""
    signed: set[str] = set()
    for approval in approvals:
        if approval.bank_id in signed:
            raise GovernanceError(f"{approval.bank_id} approved twice")
        key = keys.get(approval.bank_id)
        if key is None:
            raise GovernanceError(f"{approval.bank_id} is not an active member and cannot approve")
        if not _verify(key, approval.signature, message):
            raise GovernanceError(f"the approval of {approval.bank_id} does not verify")
        signed.add(approval.bank_id)
    return signed


def _check_possession(signing_key: bytes, possession: bytes | None, proposal: Proposal) -> None:
    if possession is None or not _verify(signing_key, possession, proposal.message()):
        raise GovernanceError("the new signing key did not sign the proposal (possession proof)")
