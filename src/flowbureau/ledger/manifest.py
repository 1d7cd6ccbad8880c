"""The manifest of one contributed batch: what a bank signs and the log records.

Rules:
- A manifest names the bank, its per-bank sequence number (1, 2, 3, ... with no gaps), the period
  the batch covers, the record and statement counts and Merkle roots (the record root is the
  batch root), the contract version and hash the bank checked the batch against, the sizes of
  the bundle's payload (plain Arrow IPC, zstd-compressed, HPKE-sealed), the SHA-256 of the
  sealed payload and the creation time (UTC, whole seconds, ``YYYY-MM-DDTHH:MM:SSZ``).
- Its bytes are canonical JSON (:mod:`flowbureau.ledger.canonical`); the bank's Ed25519
  signature is over ``"flowbureau/manifest/v1\\n" || those bytes`` - the prefix keeps a manifest
  signature from ever being valid as any other message the same key signs.
- Parsing is strict: exactly the documented keys, each of the documented type and form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flowbureau.ledger.canonical import (
    NonCanonicalError,
    canonical_json,
    require_date,
    require_hash,
    require_int,
    require_object,
    require_str,
)

__all__ = [
    "BANK_ID_PATTERN",
    "MANIFEST_DOMAIN",
    "Manifest",
    "format_time",
    "parse_time",
]

MANIFEST_DOMAIN = b"flowbureau/manifest/v1\n"
"""Prefix of the message a bank signs for a manifest."""

BANK_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Allowed bank ids: they appear in key names and paths, so no spaces, '+' or '/'."""

_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def format_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` of an aware datetime (sub-seconds dropped)."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be time-zone aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, *, path: str = "created_at") -> datetime:
    """Inverse of :func:`format_time`."""
    if not _TIME.fullmatch(text):
        raise NonCanonicalError(f"time {text!r} is not YYYY-MM-DDTHH:MM:SSZ", path=path)
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise NonCanonicalError(f"time {text!r} is not a valid date and time", path=path) from None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A batch's manifest. Roots and hashes are raw bytes; sizes are bytes of the payload."""

    bank_id: str
    seq: int
    period_start: date
    period_end: date
    record_count: int
    record_root: bytes
    statement_count: int
    statement_root: bytes
    contract_version: str
    contract_hash: bytes
    plain_size: int
    compressed_size: int
    sealed_size: int
    sealed_sha256: bytes
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object (hashes in lowercase hex)."""
        return {
            "v": 1,
            "bank_id": self.bank_id,
            "seq": self.seq,
            "period": {
                "start": self.period_start.isoformat(),
                "end": self.period_end.isoformat(),
            },
            "records": {"count": self.record_count, "root": self.record_root.hex()},
            "statements": {"count": self.statement_count, "root": self.statement_root.hex()},
            "contract": {"version": self.contract_version, "hash": self.contract_hash.hex()},
            "sizes": {
                "plain": self.plain_size,
                "compressed": self.compressed_size,
                "sealed": self.sealed_size,
            },
            "sealed_sha256": self.sealed_sha256.hex(),
            "created_at": format_time(self.created_at),
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes."""
        return canonical_json(self.to_json())

    def signing_message(self) -> bytes:
        """The exact bytes the bank signs."""
        return MANIFEST_DOMAIN + self.to_bytes()

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        """The bank's Ed25519 signature of this manifest."""
        return key.sign(self.signing_message())

    def verify(self, public_key: bytes, signature: bytes) -> bool:
        """True when ``signature`` is the holder of ``public_key`` signing this manifest."""
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, self.signing_message())
        except (InvalidSignature, ValueError):
            return False
        return True

    @classmethod
    def from_json(cls, data: Any, *, path: str = "manifest") -> Manifest:
        """Parse the JSON object strictly (raises :class:`NonCanonicalError` naming the field)."""
        obj = require_object(
            data,
            path,
            {
                "v",
                "bank_id",
                "seq",
                "period",
                "records",
                "statements",
                "contract",
                "sizes",
                "sealed_sha256",
                "created_at",
            },
        )
        if obj["v"] != 1:
            raise NonCanonicalError(f"unsupported manifest version {obj['v']!r}", path=f"{path}.v")
        bank_id = require_str(obj, "bank_id", path)
        if not BANK_ID_PATTERN.fullmatch(bank_id):
            raise NonCanonicalError(f"bank id {bank_id!r} is not allowed", path=f"{path}.bank_id")
        period = require_object(obj["period"], f"{path}.period", {"start", "end"})
        records = require_object(obj["records"], f"{path}.records", {"count", "root"})
        statements = require_object(obj["statements"], f"{path}.statements", {"count", "root"})
        contract = require_object(obj["contract"], f"{path}.contract", {"version", "hash"})
        sizes = require_object(obj["sizes"], f"{path}.sizes", {"plain", "compressed", "sealed"})
        version = require_str(contract, "version", f"{path}.contract")
        if not _VERSION.fullmatch(version):
            raise NonCanonicalError(f"contract version {version!r}", path=f"{path}.contract")
        return cls(
            bank_id=bank_id,
            seq=require_int(obj, "seq", path, minimum=1),
            period_start=require_date(period, "start", f"{path}.period"),
            period_end=require_date(period, "end", f"{path}.period"),
            record_count=require_int(records, "count", f"{path}.records"),
            record_root=require_hash(records, "root", f"{path}.records"),
            statement_count=require_int(statements, "count", f"{path}.statements"),
            statement_root=require_hash(statements, "root", f"{path}.statements"),
            contract_version=version,
            contract_hash=require_hash(contract, "hash", f"{path}.contract"),
            plain_size=require_int(sizes, "plain", f"{path}.sizes"),
            compressed_size=require_int(sizes, "compressed", f"{path}.sizes"),
            sealed_size=require_int(sizes, "sealed", f"{path}.sizes"),
            sealed_sha256=require_hash(obj, "sealed_sha256", path),
            created_at=parse_time(require_str(obj, "created_at", path), path=f"{path}.created_at"),
        )
