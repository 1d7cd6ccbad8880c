"""The log in the service database: same log as in memory, runs, recovery, bulk layout, proofs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from ledger_db import migrated_engine

from flowbureau.errors import ConflictError, NotFoundError
from flowbureau.ledger.checkpoint import open_checkpoint
from flowbureau.ledger.consortium import Ledger
from flowbureau.ledger.log import InMemoryLogStore
from flowbureau.ledger.merkle import MerkleTree
from flowbureau.ledger.models import (
    CHUNK_LEAVES,
    LedgerBatchChunk,
    LedgerCosignature,
    LedgerEntry,
    LedgerTxBucket,
)
from flowbureau.ledger.records import RECORD_LEAF
from flowbureau.ledger.sample import sample_batch
from flowbureau.ledger.store import (
    SqlLogStore,
    SqlWitnessState,
    _bucket_rows,
    pack_strings,
    tx_buckets,
    unpack_strings,
)
from flowbureau.transport.keys import Keystore

NOW = datetime(2024, 3, 1, tzinfo=UTC)


def _world(store: SqlLogStore | InMemoryLogStore, keys: Path) -> tuple[Ledger, list[pa.Table]]:
    ledger = Ledger(store, Keystore(keys), clock=lambda: NOW)
    records = []
    for bank, seed, size in (("BANK01", 1, 2500), ("BANK02", 2, 7), ("BANK01", 3, 30)):
        rows, statements = sample_batch(bank, records=size, accounts=2, seed=seed)
        ledger.submit(bank, rows, statements)
        records.append(rows)
    return ledger, records


@pytest.fixture
def sqlite_store(tmp_path: Path) -> SqlLogStore:
    return SqlLogStore(migrated_engine(f"sqlite:///{tmp_path / 'ledger.db'}"))


def test_strings_round_trip_through_the_blob_format() -> None:
    values = pa.array(["", "a", "上海", "x" * 300], pa.string())
    assert unpack_strings(pack_strings(values)).to_pylist() == values.to_pylist()
    assert unpack_strings(pack_strings(values.slice(1, 2))).to_pylist() == ["a", "上海"]
    buckets = tx_buckets(pa.array(["0ab", "fff1", "a", ""], pa.string()))
    assert buckets.tolist() == [0x0AB, 0xFFF, 0xA00, 0]


def test_the_sql_store_holds_the_same_log_as_memory(
    tmp_path: Path, sqlite_store: SqlLogStore
) -> None:
    memory = InMemoryLogStore()
    _world(memory, tmp_path / "keys-a")
    ledger, records = _world(sqlite_store, tmp_path / "keys-b")
    assert sqlite_store.size() == memory.size() == 6
    assert [json.loads(e)["kind"] for e in sqlite_store.entries()] == [
        json.loads(e)["kind"] for e in memory.entries()
    ]
    assert sqlite_store.checkpoint_sizes() == [1, 2, 3, 4, 5, 6]
    report = ledger.verify(records=records, statements=[])
    assert [p for p in report.problems if p.kind != "batch"] == []
    # every committed record of the first (3-chunk) batch proves against the batch root
    big = records[0]
    tree = MerkleTree.from_leaf_hashes(RECORD_LEAF.leaf_hashes(big))
    policy = ledger.keys()
    for leaf in (0, 1, CHUNK_LEAVES - 1, CHUNK_LEAVES, 2 * CHUNK_LEAVES, 2047, 2048, 2499):
        tx_id = big["tx_id"][leaf].as_py()
        proof = ledger.prove(tx_id)
        assert (proof.batch_index, proof.batch_size) == (leaf, 2500)
        assert list(proof.batch_proof) == tree.inclusion_proof(leaf)
        assert proof.verify(policy, record=big.slice(leaf, 1)).manifest.bank_id == "BANK01"
    # a second process opening the same database replays the same log
    reopened = Ledger(SqlLogStore(sqlite_store.engine), ledger.keystore, clock=lambda: NOW)
    assert reopened.keys().to_json() == policy.to_json()
    assert reopened.prove(big["tx_id"][7].as_py()) == ledger.prove(big["tx_id"][7].as_py())
    assert sqlite_store.next_seqs() == {"BANK01": 3, "BANK02": 2}
    with pytest.raises(NotFoundError):
        ledger.prove("0" * 32)


def test_a_batch_is_stored_in_chunks_and_buckets_not_per_record(
    tmp_path: Path, sqlite_store: SqlLogStore
) -> None:
    _world(sqlite_store, tmp_path / "keys")
    with sqlite_store.engine.connect() as conn:
        chunks = conn.execute(
            sa.select(sa.func.count())
            .select_from(LedgerBatchChunk)
            .where(LedgerBatchChunk.entry_idx == 1)
        ).scalar_one()
        buckets = conn.execute(
            sa.select(sa.func.count())
            .select_from(LedgerTxBucket)
            .where(LedgerTxBucket.entry_idx == 1)
        ).scalar_one()
    assert chunks == -(-2500 // CHUNK_LEAVES)  # one row per chunk of leaves
    assert 0 < buckets <= 2500
    assert buckets < 2500  # random hex ids share buckets


def test_a_run_is_invisible_until_committed_and_recovery_follows_the_warehouse(
    tmp_path: Path, sqlite_store: SqlLogStore
) -> None:
    ledger = Ledger(sqlite_store, Keystore(tmp_path / "keys"), clock=lambda: NOW)
    ledger.found(["BANK01"])
    records, statements = sample_batch("BANK01", records=20, seed=5)
    run = ledger.run()
    admitted = run.contribute("BANK01", records, statements, warehouse_batch="wb-1")
    tx_id = records["tx_id"][0].as_py()
    published: set[str] = set()

    def crash() -> None:
        # the pending entry is stored but no reader sees it
        assert sqlite_store.size() == 1
        assert sqlite_store.pending_runs() == {run._run.run_id: ["wb-1"]}  # type: ignore[union-attr]
        assert sqlite_store.locate(tx_id) == []
        raise RuntimeError("warehouse commit failed")

    with pytest.raises(RuntimeError):
        run.commit(crash, is_published=published.__contains__)
    assert sqlite_store.size() == 1
    assert sqlite_store.pending_runs() == {}
    # a publish that raised after the warehouse did commit keeps the entry
    run = ledger.run()
    run.contribute("BANK01", records, statements, warehouse_batch="wb-2")

    def commit_then_fail() -> None:
        published.add("wb-2")
        raise OSError("fsync of the directory failed after the rename")

    with pytest.raises(OSError, match="fsync"):
        run.commit(commit_then_fail, is_published=published.__contains__)
    assert sqlite_store.size() == 2
    assert sqlite_store.locate(tx_id) == [(1, 0)]
    assert admitted.batch.seq == 1
    # recovery settles what a killed process left: published -> committed, else discarded
    for seed, batch_id, expected in ((8, "wb-3", 3), (9, "wb-4", 3)):
        rows, st = sample_batch("BANK01", records=3, seed=seed)
        item = ledger.run().contribute("BANK01", rows, st, warehouse_batch=batch_id)
        sqlite_store.append_run(
            f"run-{seed}", sqlite_store.size(), [(item.entry.to_bytes(), item.batch)]
        )
        if batch_id == "wb-3":
            published.add(batch_id)
        recovered = sqlite_store.recover(published.__contains__)
        assert (recovered.committed, recovered.discarded) == (
            ((f"run-{seed}",), ()) if batch_id in published else ((), (f"run-{seed}",))
        )
        assert sqlite_store.size() == expected
        assert sqlite_store.pending_runs() == {}


def test_the_store_refuses_a_second_append_at_an_index_and_a_replayed_sequence(
    tmp_path: Path, sqlite_store: SqlLogStore
) -> None:
    _world(sqlite_store, tmp_path / "keys")
    entry = sqlite_store.entry(5)
    batch = sqlite_store.batch(5)
    with pytest.raises(ConflictError, match="append at 5"):
        sqlite_store.append(5, entry, batch)
    with pytest.raises(ConflictError, match="replayed"):
        sqlite_store.append(6, entry, batch)  # same bank and sequence number again
    assert sqlite_store.size() == 6


def test_cosignature_rows_follow_the_stored_notes(
    tmp_path: Path, sqlite_store: SqlLogStore
) -> None:
    ledger, _ = _world(sqlite_store, tmp_path / "keys")
    final = open_checkpoint(ledger.checkpoint(), ledger.keys())
    rows = sqlite_store.cosigners(6)
    assert sorted(rows) == sorted(final.cosigners)
    assert sqlite_store.last_cosigned(next(iter(rows)), before=6) == 5
    with sqlite_store.engine.begin() as conn:
        conn.execute(sa.delete(LedgerCosignature).where(LedgerCosignature.size == 6))
    assert sqlite_store.cosigners(6) == {}


def test_witness_state_is_a_compare_and_swap(sqlite_store: SqlLogStore) -> None:
    state = SqlWitnessState(sqlite_store.engine, "origin/witness/BANK01")
    assert state.load("origin") is None
    assert state.compare_and_swap("origin", 0, b"note-3", 3)
    assert not state.compare_and_swap("origin", 0, b"other", 4)
    assert not state.compare_and_swap("origin", 2, b"other", 4)
    assert state.compare_and_swap("origin", 3, b"note-5", 5)
    assert state.load("origin") == b"note-5"
    assert SqlWitnessState(sqlite_store.engine, "other").load("origin") is None


def test_an_edited_row_of_the_sql_store_is_named(tmp_path: Path, sqlite_store: SqlLogStore) -> None:
    ledger, records = _world(sqlite_store, tmp_path / "keys")
    assert ledger.verify(records=records).ok
    with sqlite_store.engine.begin() as conn:
        data = conn.execute(sa.select(LedgerEntry.data).where(LedgerEntry.idx == 4)).scalar_one()
        edited = data.replace(b'"seq":1', b'"seq":2')
        conn.execute(sa.update(LedgerEntry).where(LedgerEntry.idx == 4).values(data=edited))
    named = {(p.kind, p.ref) for p in ledger.verify(records=records).problems}
    assert ("entry", "4") in named
    with sqlite_store.engine.begin() as conn:
        conn.execute(sa.update(LedgerEntry).where(LedgerEntry.idx == 4).values(data=data))
        chunk = conn.execute(
            sa.select(LedgerBatchChunk.leaf_hashes).where(
                LedgerBatchChunk.entry_idx == 1, LedgerBatchChunk.chunk_no == 1
            )
        ).scalar_one()
        flipped = bytes([chunk[0] ^ 1]) + chunk[1:]
        conn.execute(
            sa.update(LedgerBatchChunk)
            .where(LedgerBatchChunk.entry_idx == 1, LedgerBatchChunk.chunk_no == 1)
            .values(leaf_hashes=flipped)
        )
    named = {(p.kind, p.ref) for p in ledger.verify(records=records).problems}
    assert ("batch", "1") in named


@pytest.mark.postgres
def test_the_log_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    store = SqlLogStore(migrated_engine(postgres_url))
    ledger, records = _world(store, tmp_path / "keys")
    assert ledger.verify(records=records).ok
    tx_id = records[0]["tx_id"][1500].as_py()
    assert ledger.prove(tx_id).verify(ledger.keys(), record=records[0].slice(1500, 1))
    with pytest.raises(ConflictError):
        store.append(6, store.entry(5), store.batch(5))
    store.engine.dispose()


@pytest.mark.parametrize(
    "ids",
    [
        ["0a1", "0a2", "fff", "0a1x", "", "上海", "zz", "0A1", "abc", "e\u0301"],
        [f"{n:032x}" for n in range(0, 2**128, 2**128 // 5000)],
        ["only"],
    ],
)
def test_tx_index_rows_are_each_buckets_positions_then_its_packed_ids(ids: list[str]) -> None:
    """Each bucket's blob, built for all buckets at once, is ``u32 count || leaf positions
    (>u4) || pack_strings(ids)`` of the ids in that bucket, in leaf order."""
    array = pa.array(ids, pa.string())
    buckets = tx_buckets(array).tolist()
    rows = _bucket_rows(7, array)
    assert [r["bucket"] for r in rows] == sorted(set(buckets))
    for row in rows:
        members = [i for i, b in enumerate(buckets) if b == row["bucket"]]
        expected = (
            len(members).to_bytes(4, "big")
            + b"".join(i.to_bytes(4, "big") for i in members)
            + pack_strings(pa.array([ids[i] for i in members], pa.string()))
        )
        assert row["data"] == expected
        assert row["entry_idx"] == 7
    assert _bucket_rows(7, pa.array([], pa.string())) == []
