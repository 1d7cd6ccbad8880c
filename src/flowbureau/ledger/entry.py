"""Log entries: the exact bytes appended to the consortium log (one Merkle leaf each).

Rules:
- An entry is canonical JSON (:mod:`flowbureau.ledger.canonical`) of one of four kinds:
  ``{"kind": "genesis", "v": 1, "genesis": {...}, "approvals": [...]}`` (entry 0 only),
  ``{"kind": "governance", "v": 1, "proposal": {...}, "approvals": [...], "possession": B64|null}``,
  ``{"kind": "batch", "v": 1, "manifest": {...}, "signature": B64}`` and
  ``{"kind": "anchor", "v": 1, "anchor": {"source", "seq", "hash", "at"}}``.
- An anchor entry pins the head of another hash chain kept by the platform (the service's audit
  log: ``source = "audit"``, its last ``seq`` and ``hash``). It needs no signature of its own:
  the log key signs, and the witnesses cosign, the checkpoint it is under.
- A batch entry is the bank's signed manifest: the manifest carries the batch root (the Merkle
  root of the record leaves), the statement root and the contract hash, so the bank's signature
  covers all three. No record, name or account appears - only counts, hashes and sizes.
- The log leaf of an entry is ``SHA-256(0x00 || entry bytes)``. Parsing refuses anything that is
  not the canonical encoding of a well-formed entry, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowbureau.ledger.canonical import (
    NonCanonicalError,
    b64,
    canonical_json,
    parse_canonical,
    require_hash,
    require_int,
    require_object,
    require_str,
    unb64,
)
from flowbureau.ledger.manifest import Manifest, format_time, parse_time
from flowbureau.ledger.membership import Approval, Genesis, Proposal, approvals_from_json

__all__ = [
    "AnchorEntry",
    "BatchEntry",
    "Entry",
    "GenesisEntry",
    "GovernanceEntry",
    "parse_entry",
]


def _signature(text: str, path: str) -> bytes:
    try:
        return unb64(text, size=64, what="signature")
    except ValueError as exc:
        raise NonCanonicalError(str(exc), path=path) from None


@dataclass(frozen=True)
class GenesisEntry:
    """The founding document with every founder's approval."""

    genesis: Genesis
    approvals: tuple[Approval, ...]

    def to_json(self) -> dict[str, Any]:
        """The entry's JSON object."""
        return {
            "kind": "genesis",
            "v": 1,
            "genesis": self.genesis.to_json(),
            "approvals": [a.to_json() for a in self.approvals],
        }

    def to_bytes(self) -> bytes:
        """Canonical bytes (the log leaf's data)."""
        return canonical_json(self.to_json())


@dataclass(frozen=True)
class GovernanceEntry:
    """An approved proposal (with the new key's possession proof where one is needed)."""

    proposal: Proposal
    approvals: tuple[Approval, ...]
    possession: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        """The entry's JSON object."""
        return {
            "kind": "governance",
            "v": 1,
            "proposal": self.proposal.to_json(),
            "approvals": [a.to_json() for a in self.approvals],
            "possession": None if self.possession is None else b64(self.possession),
        }

    def to_bytes(self) -> bytes:
        """Canonical bytes (the log leaf's data)."""
        return canonical_json(self.to_json())


@dataclass(frozen=True)
class BatchEntry:
    """A contributed batch: the manifest and the bank's signature over it."""

    manifest: Manifest
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        """The entry's JSON object."""
        return {
            "kind": "batch",
            "v": 1,
            "manifest": self.manifest.to_json(),
            "signature": b64(self.signature),
        }

    def to_bytes(self) -> bytes:
        """Canonical bytes (the log leaf's data)."""
        return canonical_json(self.to_json())


@dataclass(frozen=True)
class AnchorEntry:
    """The head of an external hash chain (``source``), pinned in the log."""

    source: str
    seq: int
    head: bytes
    at: datetime

    def to_json(self) -> dict[str, Any]:
        """The entry's JSON object."""
        return {
            "kind": "anchor",
            "v": 1,
            "anchor": {
                "source": self.source,
                "seq": self.seq,
                "hash": self.head.hex(),
                "at": format_time(self.at),
            },
        }

    def to_bytes(self) -> bytes:
        """Canonical bytes (the log leaf's data)."""
        return canonical_json(self.to_json())


Entry = GenesisEntry | GovernanceEntry | BatchEntry | AnchorEntry


def parse_entry(data: bytes, *, where: str = "entry") -> Entry:
    """Parse an entry's bytes strictly; ``where`` names it in errors (e.g. ``entry 12``)."""
    obj = parse_canonical(data, what=where)
    if not isinstance(obj, dict) or obj.get("v") != 1:
        raise NonCanonicalError(f"{where} is not a version 1 entry", path=where)
    kind = obj.get("kind")
    if kind == "batch":
        obj = require_object(obj, where, {"kind", "v", "manifest", "signature"})
        manifest = Manifest.from_json(obj["manifest"], path=f"{where}.manifest")
        return BatchEntry(manifest, _signature(require_str(obj, "signature", where), where))
    if kind == "governance":
        obj = require_object(obj, where, {"kind", "v", "proposal", "approvals", "possession"})
        possession = obj["possession"]
        if possession is not None and not isinstance(possession, str):
            raise NonCanonicalError("expected base64 or null", path=f"{where}.possession")
        return GovernanceEntry(
            Proposal.from_json(obj["proposal"], f"{where}.proposal"),
            approvals_from_json(obj["approvals"], f"{where}.approvals"),
            None if possession is None else _signature(possession, f"{where}.possession"),
        )
    if kind == "genesis":
        obj = require_object(obj, where, {"kind", "v", "genesis", "approvals"})
        return GenesisEntry(
            Genesis.from_json(obj["genesis"], f"{where}.genesis"),
            approvals_from_json(obj["approvals"], f"{where}.approvals"),
        )
    if kind == "anchor":
        obj = require_object(obj, where, {"kind", "v", "anchor"})
        path = f"{where}.anchor"
        anchor = require_object(obj["anchor"], path, {"source", "seq", "hash", "at"})
        return AnchorEntry(
            require_str(anchor, "source", path),
            require_int(anchor, "seq", path),
            require_hash(anchor, "hash", path),
            parse_time(require_str(anchor, "at", path), path=f"{path}.at"),
        )
    raise NonCanonicalError(f"unknown entry kind {kind!r}", path=f"{where}.kind")
