"""Membership governance: genesis, quorum-approved changes recorded on the log, replay."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowbureau.ledger.consortium import Ledger, member_keys
from flowbureau.ledger.contract import DEFAULT_CONTRACT, Contract, RuleSpec
from flowbureau.ledger.log import ConsortiumLog, EntryRejectedError, InMemoryLogStore
from flowbureau.ledger.membership import (
    Action,
    Approval,
    Genesis,
    GovernanceError,
    Member,
    Membership,
    Proposal,
    Role,
)
from flowbureau.ledger.sample import sample_batch
from flowbureau.transport.bundle import BundleSignatureError, UnknownBankError, pack_bundle
from flowbureau.transport.keys import BankKeys, Keystore

NOW = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(InMemoryLogStore(), Keystore(tmp_path / "keys"), clock=lambda: NOW)
    ledger.found(["A", "B", "C"])
    return ledger


def _proposal(ledger: Ledger, action: Action, args: dict[str, Any]) -> Proposal:
    return Proposal(action, ledger.log.membership.epoch, args, NOW)


def _approve(ledger: Ledger, proposal: Proposal, *banks: str) -> list[Approval]:
    return [proposal.approve(b, ledger.keystore.bank(b).signing) for b in banks]


def test_genesis_needs_every_founder(tmp_path: Path) -> None:
    keystore = Keystore(tmp_path / "keys")
    platform = keystore.platform()
    members = tuple(Member(b, b, Role.BANK, member_keys(keystore.bank(b))) for b in ("A", "B"))
    genesis = Genesis(
        "log.example/x",
        platform.public()["log"],
        platform.public()["box"],
        members,
        1,
        1,
        DEFAULT_CONTRACT.description(),
        NOW,
    )
    only_a = [genesis.approve("A", keystore.bank("A").signing)]
    with pytest.raises(GovernanceError, match="lacks the approval of founders B"):
        Membership.from_genesis(genesis, only_a)
    forged = [*only_a, Approval("B", only_a[0].signature)]
    with pytest.raises(GovernanceError, match="approval of B does not verify"):
        Membership.from_genesis(genesis, forged)
    both = [*only_a, genesis.approve("B", keystore.bank("B").signing)]
    state = Membership.from_genesis(genesis, both)
    assert [m.bank_id for m in state.active(0)] == ["A", "B"]


def test_changes_need_a_quorum_and_leave_nothing_when_refused(ledger: Ledger) -> None:
    log = ledger.log
    assert (log.membership.approval_quorum, log.membership.witness_quorum) == (2, 2)
    size = log.size
    newcomer = BankKeys.generate()
    member = Member("D", "Bank D", Role.BANK, member_keys(newcomer))
    proposal = _proposal(ledger, Action.ADD_MEMBER, {"member": member.to_json()})
    possession = newcomer.signing.sign(proposal.message())
    with pytest.raises(GovernanceError, match="1 valid approvals, 2 needed"):
        log.govern(proposal, _approve(ledger, proposal, "A"), possession)
    with pytest.raises(GovernanceError, match="approved twice"):
        log.govern(proposal, _approve(ledger, proposal, "A", "A"), possession)
    with pytest.raises(GovernanceError, match="possession"):
        log.govern(proposal, _approve(ledger, proposal, "A", "B"))
    outsider = Approval("Z", newcomer.signing.sign(proposal.message()))
    with pytest.raises(GovernanceError, match="Z is not an active member"):
        log.govern(proposal, [*_approve(ledger, proposal, "A"), outsider], possession)
    assert log.size == size == ledger.store.size()
    receipt = log.govern(proposal, _approve(ledger, proposal, "A", "C"), possession)
    assert receipt.index == size
    assert log.membership.member("D", receipt.index) is None  # effective from the next entry
    assert log.membership.member("D", receipt.index + 1) is not None
    receipt.verify(log.policy(receipt.size))
    # the same approvals cannot be replayed: the epoch moved on
    with pytest.raises(GovernanceError, match="epoch"):
        log.govern(proposal, _approve(ledger, proposal, "A", "C"), possession)


def test_rotated_keys_take_over_and_old_ones_stop_working(ledger: Ledger) -> None:
    log = ledger.log
    old = ledger.keystore.bank("B")
    new = BankKeys.generate()
    proposal = _proposal(
        ledger, Action.ROTATE_KEYS, {"bank_id": "B", "keys": member_keys(new).to_json()}
    )
    log.govern(proposal, _approve(ledger, proposal, "A", "B"), new.signing.sign(proposal.message()))
    records, statements = sample_batch("B", records=5)

    def bundle(keys: BankKeys) -> bytes:
        return pack_bundle(
            records,
            statements,
            bank_id="B",
            seq=1,
            contract=log.membership.contract,
            signing_key=keys.signing,
            platform_box_key=log.membership.platform_box_key,
            created_at=NOW,
        ).data

    with pytest.raises(BundleSignatureError):
        log.admit(bundle(old))
    receipt = log.admit(bundle(new))
    # history keeps the old key version valid for the entries before the rotation
    versions = log.membership.versions["B"]
    assert [v.keys.signing for v in versions] == [old.public()["signing"], new.public()["signing"]]
    assert versions[0].valid_to == versions[1].valid_from == receipt.index  # rotation + 1


def test_revocation_and_unreachable_quorum(ledger: Ledger) -> None:
    log = ledger.log
    proposal = _proposal(ledger, Action.REVOKE_MEMBER, {"bank_id": "C", "reason": "left"})
    log.govern(proposal, _approve(ledger, proposal, "A", "B"))
    assert [m.bank_id for m in log.membership.active(log.size)] == ["A", "B"]
    records, statements = sample_batch("C", records=3)
    packed = pack_bundle(
        records,
        statements,
        bank_id="C",
        seq=1,
        contract=log.membership.contract,
        signing_key=ledger.keystore.bank("C").signing,
        platform_box_key=log.membership.platform_box_key,
        created_at=NOW,
    )
    with pytest.raises(UnknownBankError):
        log.admit(packed.data)
    # removing B would leave 1 member under a quorum of 2: refused until the quorum is lowered
    again = _proposal(ledger, Action.REVOKE_MEMBER, {"bank_id": "B", "reason": "x"})
    with pytest.raises(GovernanceError, match="unreachable"):
        log.govern(again, _approve(ledger, again, "A", "B"))
    lower = _proposal(ledger, Action.SET_QUORUM, {"approval_quorum": 1, "witness_quorum": 1})
    log.govern(lower, _approve(ledger, lower, "A", "B"))
    assert log.policy().quorum == 1


def test_contract_upgrade_changes_what_batches_must_carry(ledger: Ledger) -> None:
    log = ledger.log
    old = log.membership.contract
    stricter = Contract(
        old.name,
        "1.2.0",
        tuple(
            RuleSpec(r.id, {"max_abs_minor": 10**9}) if r.id == "amount_range/v1" else r
            for r in old.rules
        ),
    )
    proposal = _proposal(ledger, Action.UPGRADE_CONTRACT, {"contract": stricter.description()})
    log.govern(proposal, _approve(ledger, proposal, "B", "C"))
    assert log.membership.contract.hash == stricter.hash
    records, statements = sample_batch("A", records=4)
    stale = pack_bundle(
        records,
        statements,
        bank_id="A",
        seq=1,
        contract=old,
        signing_key=ledger.keystore.bank("A").signing,
        platform_box_key=log.membership.platform_box_key,
        created_at=NOW,
    )
    size = log.size
    with pytest.raises(EntryRejectedError, match=r"contract 1\.2\.0"):
        log.admit(stale.data)
    assert log.size == size
    unknown = _proposal(
        ledger,
        Action.UPGRADE_CONTRACT,
        {
            "contract": {
                **stricter.description(),
                "version": "2.0.0",
                "rules": [{"id": "x/v1", "params": {}}],
            }
        },
    )
    with pytest.raises(GovernanceError, match="does not implement"):
        log.govern(unknown, _approve(ledger, unknown, "A", "B", "C"))


def test_replaying_the_log_rebuilds_the_same_state(ledger: Ledger) -> None:
    ledger.join("D")
    ledger.submit("A", *sample_batch("A", records=6))
    before = ledger.log.membership
    platform = ledger.keystore.platform()
    reopened = ConsortiumLog(ledger.store, log_key=platform.log, box_key=platform.box)
    after = reopened.membership
    assert after.epoch == before.epoch == 3  # genesis, add D, quorum to majority of 4
    assert after.versions == before.versions
    assert (after.approval_quorum, after.witness_quorum) == (3, 3)
    assert after.contract.hash == before.contract.hash
    assert reopened.tree.root() == ledger.log.tree.root()
    assert reopened.next_seq("A") == 2
    with pytest.raises(Exception, match="genesis names"):
        ConsortiumLog(ledger.store, log_key=BankKeys.generate().signing, box_key=platform.box)
