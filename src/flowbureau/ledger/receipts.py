"""Receipts and proofs that anyone can check with public keys only.

Rules:
- A :class:`Receipt` proves one log entry (a bank's batch, or a governance change) is in the log:
  the entry bytes, its index, an RFC 9162 inclusion proof and the cosigned checkpoint it leads
  to. It is valid when the proof leads to the checkpoint's root and the checkpoint is signed by
  the log and final under the trust policy (``{"log", "witnesses", "quorum"}``).
- A :class:`RecordProof` proves one stored record is in the log: its leaf hash is in its batch
  tree (inclusion proof to the batch root), the batch root is the one in the bank-signed
  manifest of the entry, and the entry is in the log under a final checkpoint. It reveals only
  hashes and that one bank's manifest - no other record and no other bank's data.
- A :class:`ConsistencyProof` proves a later log extends an earlier one (RFC 9162 §2.1.4).
- JSON forms use lowercase hex for hashes, lists of hex for proofs, base64 for entry bytes and
  the signed note as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from flowbureau.errors import IntegrityError
from flowbureau.ledger.canonical import b64, unb64
from flowbureau.ledger.checkpoint import TrustPolicy, VerifiedCheckpoint, open_checkpoint
from flowbureau.ledger.entry import BatchEntry, parse_entry
from flowbureau.ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from flowbureau.ledger.records import RECORD_LEAF

__all__ = ["ConsistencyProof", "ProofMismatchError", "Receipt", "RecordProof"]


class ProofMismatchError(IntegrityError):
    """Parts of a receipt or proof do not fit together (roots, sizes, entry contents)."""


def _hexes(values: Any) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(v) for v in values)


def _checkpoint_for(note: bytes, policy: TrustPolicy, size: int, root: bytes) -> VerifiedCheckpoint:
    verified = open_checkpoint(note, policy)
    if verified.checkpoint.size != size or verified.checkpoint.root_hash != root:
        raise ProofMismatchError(
            f"the proof is for a tree of {size} entries with root {root.hex()[:16]}..., the "
            f"checkpoint is for {verified.checkpoint.size} with a different root"
        )
    return verified


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that ``entry`` is log entry ``index`` under a cosigned checkpoint."""

    index: int
    entry: bytes
    size: int
    root: bytes
    proof: tuple[bytes, ...]
    checkpoint: bytes

    def to_json(self) -> dict[str, Any]:
        """``{"index", "entry", "log": {"size", "root", "proof"}, "checkpoint"}``."""
        return {
            "index": self.index,
            "entry": b64(self.entry),
            "log": {
                "size": self.size,
                "root": self.root.hex(),
                "proof": [p.hex() for p in self.proof],
            },
            "checkpoint": self.checkpoint.decode(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Receipt:
        """Inverse of :meth:`to_json`."""
        log = data["log"]
        return cls(
            int(data["index"]),
            unb64(data["entry"]),
            int(log["size"]),
            bytes.fromhex(log["root"]),
            _hexes(log["proof"]),
            str(data["checkpoint"]).encode(),
        )

    def verify(self, policy: TrustPolicy) -> VerifiedCheckpoint:
        """Check the receipt end to end; return the verified checkpoint or raise."""
        verify_inclusion(leaf_hash(self.entry), self.index, self.size, self.proof, self.root)
        return _checkpoint_for(self.checkpoint, policy, self.size, self.root)


@dataclass(frozen=True, slots=True)
class RecordProof:
    """Proof that a record with ``leaf_hash`` is in a batch that is in the log."""

    leaf_hash: bytes
    batch_index: int
    batch_size: int
    batch_root: bytes
    batch_proof: tuple[bytes, ...]
    receipt: Receipt

    def to_json(self) -> dict[str, Any]:
        """The shape ``flowbureau ledger prove TX_ID --json`` prints."""
        receipt = self.receipt
        return {
            "leaf_hash": self.leaf_hash.hex(),
            "batch": {
                "index": self.batch_index,
                "size": self.batch_size,
                "root": self.batch_root.hex(),
                "proof": [p.hex() for p in self.batch_proof],
            },
            "entry": b64(receipt.entry),
            "log": {
                "index": receipt.index,
                "size": receipt.size,
                "root": receipt.root.hex(),
                "proof": [p.hex() for p in receipt.proof],
            },
            "checkpoint": receipt.checkpoint.decode(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordProof:
        """Inverse of :meth:`to_json`."""
        batch, log = data["batch"], data["log"]
        receipt = Receipt(
            int(log["index"]),
            unb64(data["entry"]),
            int(log["size"]),
            bytes.fromhex(log["root"]),
            _hexes(log["proof"]),
            str(data["checkpoint"]).encode(),
        )
        return cls(
            bytes.fromhex(data["leaf_hash"]),
            int(batch["index"]),
            int(batch["size"]),
            bytes.fromhex(batch["root"]),
            _hexes(batch["proof"]),
            receipt,
        )

    def verify(self, policy: TrustPolicy, *, record: pa.Table | None = None) -> BatchEntry:
        """Check the proof end to end; return the batch entry (the bank's signed manifest).

        With ``record`` (a one-row table of the stored schema) the leaf is recomputed from the
        record itself, so the proof covers the record's content and not just a hash.
        """
        if record is not None:
            if record.num_rows != 1:
                raise ProofMismatchError("give exactly one record to check against the proof")
            if RECORD_LEAF.leaf_hashes(record) != self.leaf_hash:
                raise ProofMismatchError("the record's leaf hash differs from the proven one")
        verify_inclusion(
            self.leaf_hash, self.batch_index, self.batch_size, self.batch_proof, self.batch_root
        )
        entry = parse_entry(self.receipt.entry)
        if not isinstance(entry, BatchEntry):
            raise ProofMismatchError("the proven log entry is not a batch")
        manifest = entry.manifest
        if manifest.record_root != self.batch_root or manifest.record_count != self.batch_size:
            raise ProofMismatchError("the batch root or size differs from the entry's manifest")
        self.receipt.verify(policy)
        return entry


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """Proof that the log of ``new_size`` entries extends the one of ``old_size``."""

    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"old_size", "new_size", "old_root", "new_root", "proof"}``."""
        return {
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": self.old_root.hex(),
            "new_root": self.new_root.hex(),
            "proof": [p.hex() for p in self.proof],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConsistencyProof:
        """Inverse of :meth:`to_json`."""
        return cls(
            int(data["old_size"]),
            int(data["new_size"]),
            bytes.fromhex(data["old_root"]),
            bytes.fromhex(data["new_root"]),
            _hexes(data["proof"]),
        )

    def verify(self) -> None:
        """Raise unless the proof holds (RFC 9162 §2.1.4.2)."""
        verify_consistency(self.old_size, self.new_size, self.old_root, self.new_root, self.proof)
