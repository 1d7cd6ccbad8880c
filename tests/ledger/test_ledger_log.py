"""The consortium log end to end: one path in, receipts and proofs, verification, tampering."""

from __future__ import annotations

import base64
import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from flowbureau.ledger.checkpoint import Checkpoint, TrustPolicy, open_checkpoint
from flowbureau.ledger.consortium import Ledger
from flowbureau.ledger.contract import ContractRejectedError
from flowbureau.ledger.entry import BatchEntry, parse_entry
from flowbureau.ledger.log import CheckpointNotFinalError, InMemoryLogStore, VerifyReport
from flowbureau.ledger.merkle import InvalidProofError
from flowbureau.ledger.note import NoteVerificationError, parse_note
from flowbureau.ledger.receipts import ConsistencyProof, ProofMismatchError, Receipt, RecordProof
from flowbureau.ledger.sample import sample_batch
from flowbureau.ledger.witness import SplitViewError
from flowbureau.transport.keys import Keystore

NOW = datetime(2024, 3, 1, tzinfo=UTC)


class World:
    """An embedded consortium with a few batches, and the warehouse rows it admitted."""

    def __init__(self, root: Path) -> None:
        self.store = InMemoryLogStore()
        self.ledger = Ledger(self.store, Keystore(root / "keys"), clock=lambda: NOW)
        self.records: list[pa.Table] = []
        self.statements: list[pa.Table] = []
        for bank, seed in (("BANK01", 1), ("BANK02", 2), ("BANK01", 3)):
            records, statements = sample_batch(bank, records=12, accounts=2, seed=seed)
            self.ledger.submit(bank, records, statements)
            self.records.append(records)
            self.statements.append(statements)

    def verify(self) -> VerifyReport:
        return self.ledger.verify(records=self.records, statements=self.statements)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_one_path_in_builds_the_expected_log(world: World) -> None:
    kinds = [json.loads(e)["kind"] for e in world.store.entry_bytes]
    # BANK01 founds; BANK02 joins (add_member, then quorum to the majority of 2)
    assert kinds == ["genesis", "batch", "governance", "governance", "batch", "batch"]
    assert world.store.checkpoint_sizes() == [1, 2, 3, 4, 5, 6]
    assert world.verify().ok
    policy = world.ledger.keys()
    assert policy.quorum == 2
    assert len(policy.witnesses) == 2
    final = open_checkpoint(world.ledger.checkpoint(), policy)
    assert final.final
    assert final.checkpoint.size == 6
    # personal data never reaches the log: no record value appears in any entry
    log_bytes = b"".join(world.store.entry_bytes)
    for value in ("上海申华贸易有限公司", world.records[0]["account_id"][0].as_py(), "REF1-0"):
        assert value.encode() not in log_bytes


def test_keys_json_is_all_a_verifier_needs(world: World) -> None:
    published = json.loads(json.dumps(world.ledger.keys().to_json()))
    assert set(published) == {"log", "witnesses", "quorum"}
    policy = TrustPolicy.from_json(published)
    tx_id = world.records[2]["tx_id"][5].as_py()
    proof_json = json.loads(json.dumps(world.ledger.prove(tx_id).to_json()))
    assert set(proof_json) == {"leaf_hash", "batch", "entry", "log", "checkpoint"}
    assert set(proof_json["batch"]) == {"index", "size", "root", "proof"}
    assert set(proof_json["log"]) == {"index", "size", "root", "proof"}
    checkpoint = Checkpoint.parse(parse_note(proof_json["checkpoint"].encode()).text)
    assert bytes.fromhex(proof_json["log"]["root"]) == checkpoint.root_hash
    proof = RecordProof.from_json(proof_json)
    receipt = Receipt.from_json(json.loads(json.dumps(proof.receipt.to_json())))
    assert receipt == proof.receipt
    assert receipt.verify(policy).checkpoint.size == 6
    entry = proof.verify(policy, record=world.records[2].slice(5, 1))
    assert entry.manifest.bank_id == "BANK01"
    assert entry.manifest.seq == 2
    with pytest.raises(ProofMismatchError, match="leaf hash differs"):
        proof.verify(policy, record=world.records[2].slice(6, 1))


def test_proofs_fail_when_any_part_is_forged(world: World) -> None:
    policy = world.ledger.keys()
    proof = world.ledger.prove(world.records[1]["tx_id"][0].as_py())
    flipped = bytes([proof.batch_proof[0][0] ^ 1]) + proof.batch_proof[0][1:]
    with pytest.raises(InvalidProofError):
        replace(proof, batch_proof=(flipped, *proof.batch_proof[1:])).verify(policy)
    other = parse_entry(world.store.entry(1))
    assert isinstance(other, BatchEntry)
    forged_receipt = replace(proof.receipt, entry=world.store.entry(1))
    with pytest.raises(ProofMismatchError, match="batch root"):
        replace(proof, receipt=forged_receipt).verify(policy)
    note = parse_note(proof.receipt.checkpoint)
    unsigned = (
        proof.receipt.checkpoint.split(b"\n\n")[0] + b"\n\n" + note.signatures[0].line().encode()
    )
    with pytest.raises(NoteVerificationError, match="0 cosignatures"):
        replace(proof, receipt=replace(proof.receipt, checkpoint=unsigned)).verify(policy)


def test_consistency_proofs_between_checkpoints(world: World) -> None:
    proof = world.ledger.consistency(2, 6)
    data = json.loads(json.dumps(proof.to_json()))
    assert set(data) == {"old_size", "new_size", "old_root", "new_root", "proof"}
    ConsistencyProof.from_json(data).verify()
    old = Checkpoint.parse(parse_note(world.store.checkpoint(2) or b"").text)
    assert old.root_hash.hex() == data["old_root"]
    with pytest.raises(InvalidProofError):
        replace(proof, old_root=bytes(32)).verify()


def test_a_batch_breaking_the_contract_is_refused_at_the_bank(world: World) -> None:
    records, statements = sample_batch("BANK02", records=5, seed=9)
    bad = records.set_column(
        records.schema.get_field_index("currency"), "currency", pa.array(["ABC"] * 5)
    )
    size = world.store.size()
    with pytest.raises(ContractRejectedError) as info:
        world.ledger.submit("BANK02", bad, statements)
    assert {v.rule for v in info.value.violations} >= {"currency/v2"}
    assert info.value.file == "batch of BANK02 #2"
    assert world.store.size() == size
    # a batch repeating tx ids the bank already contributed is a cross-batch duplicate
    with pytest.raises(ContractRejectedError, match="already contributed"):
        world.ledger.submit("BANK01", world.records[0], world.statements[0])


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    offset = rng.randrange(len(data))
    return data[:offset] + bytes([data[offset] ^ rng.randrange(1, 256)]) + data[
        offset + 1 :
    ], offset


def _edit_cell(table: pa.Table, rng: random.Random) -> tuple[pa.Table, str]:
    """Change one byte of one non-null value of one row; return the table and the row's key
    (after the edit: the key itself may be what changed)."""
    key = "tx_id" if "tx_id" in table.column_names else "statement_id"
    while True:
        row = rng.randrange(table.num_rows)
        name = rng.choice(table.column_names)
        value = table[name][row].as_py()
        if value is None or value == []:
            continue
        if isinstance(value, str | list):
            text = value if isinstance(value, str) else value[0]
            i = rng.randrange(len(text)) if text else 0
            changed = text[:i] + ("x" if text[i : i + 1] != "x" else "y") + text[i + 1 :]
            new: Any = changed if isinstance(value, str) else [changed, *value[1:]]
        elif isinstance(value, bool):
            new = not value
        elif isinstance(value, int):
            new = value ^ (1 << (8 * rng.randrange(6)))
        elif isinstance(value, datetime):
            new = value + timedelta(microseconds=1 << (8 * rng.randrange(3)))
        else:
            new = value + timedelta(days=1)
        if new == value:
            continue
        rows = table.to_pylist()
        rows[row][name] = new
        return pa.Table.from_pylist(rows, schema=table.schema), rows[row][key]


def test_random_single_byte_edits_are_all_detected_and_named(world: World) -> None:
    rng = random.Random(20241122)
    trials = detected = 0
    pristine_entries = list(world.store.entry_bytes)
    pristine_checkpoints = dict(world.store.checkpoints)
    pristine_batches = dict(world.store.batches)
    for trial in range(160):
        target = ("entry", "checkpoint", "leaves", "record", "statement")[trial % 5]
        records, statements = list(world.records), list(world.statements)
        if target == "entry":
            index = rng.randrange(len(pristine_entries))
            world.store.entry_bytes[index], _ = _flip(pristine_entries[index], rng)
            expected = ("entry", str(index))
        elif target == "checkpoint":
            size = rng.choice(sorted(pristine_checkpoints))
            world.store.checkpoints[size], _ = _flip(pristine_checkpoints[size], rng)
            expected = ("checkpoint", str(size))
        elif target == "leaves":
            index = rng.choice(sorted(pristine_batches))
            batch = pristine_batches[index]
            if rng.random() < 0.5:
                leaves, _ = _flip(batch.leaf_hashes, rng)
                world.store.batches[index] = replace(batch, leaf_hashes=leaves)
            else:
                leaves, _ = _flip(batch.statement_leaf_hashes, rng)
                world.store.batches[index] = replace(batch, statement_leaf_hashes=leaves)
            expected = ("batch", str(index))
        elif target == "record":
            which = rng.randrange(len(records))
            records[which], ident = _edit_cell(records[which], rng)
            expected = ("record", f"tx_id={ident}")
        else:
            which = rng.randrange(len(statements))
            statements[which], ident = _edit_cell(statements[which], rng)
            expected = ("statement", f"statement_id={ident}")
        report = world.ledger.verify(records=records, statements=statements)
        trials += 1
        named = {(p.kind, p.ref) for p in report.problems}
        if not report.ok and expected in named:
            detected += 1
        else:
            pytest.fail(f"edit of {expected} not detected/named: {report.problems}")
        world.store.entry_bytes[:] = pristine_entries
        world.store.checkpoints.clear()
        world.store.checkpoints.update(pristine_checkpoints)
        world.store.batches.clear()
        world.store.batches.update(pristine_batches)
    print(f"single-byte edits detected and named: {detected}/{trials} = {detected / trials:.0%}")
    assert detected == trials
    assert world.verify().ok


def test_dropped_reordered_and_missing_things_are_named(world: World) -> None:
    entries = list(world.store.entry_bytes)
    world.store.entry_bytes[:] = entries[:-1]  # drop the last entry
    report = world.verify()
    assert ("checkpoint", "6") in {(p.kind, p.ref) for p in report.problems}
    world.store.entry_bytes[:] = [*entries[:4], entries[5], entries[4]]  # reorder two batches
    report = world.verify()
    named = {(p.kind, p.ref) for p in report.problems}
    # the first moved entry, both batches whose stored records no longer fit, both checkpoints
    assert {("entry", "4"), ("batch", "4"), ("batch", "5")} <= named
    assert {("checkpoint", "5"), ("checkpoint", "6")} <= named
    world.store.entry_bytes[:] = entries
    records = [world.records[0].slice(1), *world.records[1:]]
    report = world.ledger.verify(records=records, statements=world.statements)
    assert [(p.kind, p.ref) for p in report.problems] == [("batch", "1")]
    assert "1 committed records are missing" in report.problems[0].message


def test_witnesses_refuse_a_forked_log(world: World) -> None:
    """An operator that rewrites the last entry is caught: witnesses keep their state."""
    fork = InMemoryLogStore()
    for index, data in enumerate(world.store.entry_bytes[:-1]):
        batch = world.store.batches.get(index)
        fork.append(index, data, batch)
    forked = Ledger(fork, world.ledger.keystore, clock=lambda: NOW)
    records, statements = sample_batch("BANK01", records=4, seed=42)
    with pytest.raises(CheckpointNotFinalError) as info:
        forked.submit("BANK01", records, statements)
    refusals = info.value.refusals
    assert len(refusals) == 2
    assert all(isinstance(r, SplitViewError) for r in refusals)
    evidence = refusals[0]
    assert isinstance(evidence, SplitViewError)
    policy = world.ledger.keys()
    previous = open_checkpoint(evidence.previous, policy, require_final=False)
    offending = open_checkpoint(evidence.offending, policy, require_final=False)
    assert previous.checkpoint.size == offending.checkpoint.size == 6
    assert (
        previous.checkpoint.root_hash != offending.checkpoint.root_hash
    )  # same log key, two roots


def test_stored_entry_bytes_are_the_documented_canonical_json(world: World) -> None:
    entry = parse_entry(world.store.entry(1))
    assert isinstance(entry, BatchEntry)
    assert entry.to_bytes() == world.store.entry(1)
    data = json.loads(world.store.entry(1))
    assert set(data) == {"kind", "v", "manifest", "signature"}
    assert len(base64.b64decode(data["signature"])) == 64
    assert (
        data["manifest"]["records"]["root"]
        == world.ledger.prove(world.records[0]["tx_id"][0].as_py()).batch_root.hex()
    )
