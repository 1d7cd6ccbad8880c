"""Checkpoints (c2sp.org/tlog-checkpoint) signed by the log and cosigned by witnesses.

Rules:
- The note text is exactly: origin line, tree size in decimal without leading zeros, base64 of
  the 32-byte RFC 9162 root hash, then optional non-empty extension lines; each line ends in a
  newline. Parsing rejects anything else (leading zeros, non-canonical base64, a short hash).
- The log signs with Ed25519 (signature type 0x01) under a key named like the origin; witnesses
  add cosignature/v1 lines (type 0x04, see :mod:`flowbureau.ledger.note`).
- A checkpoint is *final* when at least ``quorum`` distinct trusted witnesses cosigned it. The
  trust policy (log key, witness keys, quorum) is all a verifier needs; it is published as
  ``{"log": VKEY, "witnesses": [VKEY, ...], "quorum": K}``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flowbureau.ledger.merkle import EMPTY_ROOT, HASH_SIZE
from flowbureau.ledger.note import (
    COSIGNATURE_V1,
    ED25519,
    InvalidNoteError,
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerificationError,
    NoteVerifier,
    format_note,
    open_note,
    parse_note,
    sign_note,
)

__all__ = [
    "Checkpoint",
    "TrustPolicy",
    "VerifiedCheckpoint",
    "add_cosignatures",
    "open_checkpoint",
    "sign_checkpoint",
]

_SIZE = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, size and root hash (plus rarely used extension lines)."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or any(ch.isspace() or ch == "+" for ch in self.origin):
            raise InvalidNoteError(f"checkpoint origin {self.origin!r} is empty or has a space/'+'")
        if self.size < 0:
            raise InvalidNoteError(f"checkpoint size {self.size} is negative")
        if len(self.root_hash) != HASH_SIZE:
            raise InvalidNoteError(f"checkpoint root hash is {len(self.root_hash)} bytes, not 32")
        if self.size == 0 and self.root_hash != EMPTY_ROOT:
            raise InvalidNoteError("a checkpoint of size 0 must carry the empty tree's root")
        if any(not line or "\n" in line for line in self.extensions):
            raise InvalidNoteError("checkpoint extension lines must be non-empty single lines")

    def text(self) -> str:
        """The note text (every line newline-terminated)."""
        root = base64.b64encode(self.root_hash).decode()
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text strictly."""
        if not text.endswith("\n"):
            raise InvalidNoteError("checkpoint text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise InvalidNoteError("checkpoint text has fewer than three lines")
        origin, size, root, *extensions = lines
        if not _SIZE.fullmatch(size):
            raise InvalidNoteError(
                f"checkpoint size {size!r} is not a decimal without leading zeros"
            )
        try:
            root_hash = base64.b64decode(root, validate=True)
        except ValueError:
            raise InvalidNoteError(f"checkpoint root {root!r} is not base64") from None
        if base64.b64encode(root_hash).decode() != root:
            raise InvalidNoteError(f"checkpoint root {root!r} is not canonical base64")
        return cls(origin, int(size), root_hash, tuple(extensions))


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """What a verifier trusts: the log's key, the witnesses' keys and how many must cosign."""

    log: NoteVerifier
    witnesses: tuple[NoteVerifier, ...]
    quorum: int

    def __post_init__(self) -> None:
        if self.log.sig_type != ED25519:
            raise InvalidNoteError("the log key must be a plain Ed25519 (0x01) verifier key")
        if any(w.sig_type != COSIGNATURE_V1 for w in self.witnesses):
            raise InvalidNoteError("witness keys must be cosignature/v1 (0x04) verifier keys")
        if len({(w.name, w.key_id) for w in self.witnesses}) != len(self.witnesses):
            raise InvalidNoteError("a witness key is listed twice")
        if not 1 <= self.quorum <= len(self.witnesses):
            raise InvalidNoteError(
                f"witness quorum {self.quorum} must be between 1 and {len(self.witnesses)}"
            )

    @property
    def origin(self) -> str:
        """The log's origin (its key name)."""
        return self.log.name

    def to_json(self) -> dict[str, Any]:
        """``{"log": VKEY, "witnesses": [VKEY, ...], "quorum": K}``."""
        return {
            "log": self.log.vkey,
            "witnesses": [w.vkey for w in self.witnesses],
            "quorum": self.quorum,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrustPolicy:
        """Inverse of :meth:`to_json`."""
        try:
            log = NoteVerifier.from_vkey(str(data["log"]))
            witnesses = tuple(NoteVerifier.from_vkey(str(v)) for v in data["witnesses"])
            quorum = int(data["quorum"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidNoteError(f"trust policy is malformed: {exc}") from None
        return cls(log, witnesses, quorum)


@dataclass(frozen=True, slots=True)
class VerifiedCheckpoint:
    """A checkpoint whose log signature verified, with the witnesses that cosigned it."""

    checkpoint: Checkpoint
    note: Note
    cosigners: tuple[str, ...]
    final: bool

    def to_bytes(self) -> bytes:
        """The signed note, as stored and published."""
        return format_note(self.note)


def sign_checkpoint(checkpoint: Checkpoint, log_signer: NoteSigner) -> Note:
    """Sign a checkpoint with the log's key (whose name must be the origin)."""
    if log_signer.name != checkpoint.origin:
        raise InvalidNoteError(
            f"log key {log_signer.name!r} does not match origin {checkpoint.origin!r}"
        )
    return sign_note(checkpoint.text(), [log_signer])


def add_cosignatures(note: Note, cosignatures: Iterable[NoteSignature]) -> Note:
    """Append cosignature lines to a signed checkpoint (skipping ones already present)."""
    present = {(s.name, s.key_id) for s in note.signatures}
    added = [s for s in cosignatures if (s.name, s.key_id) not in present]
    return Note(note.text, (*note.signatures, *added))


def open_checkpoint(
    data: bytes | str | Note,
    policy: TrustPolicy,
    *,
    require_final: bool = True,
    strict: bool = False,
) -> VerifiedCheckpoint:
    """Verify a signed checkpoint under ``policy``; raise unless the log signed it.

    With ``require_final`` fewer than ``policy.quorum`` cosignatures is an error. ``strict``
    refuses any signature line that is not from a trusted key (for notes we stored ourselves).
    """
    note = data if isinstance(data, Note) else parse_note(data)
    checkpoint = Checkpoint.parse(note.text)
    if checkpoint.origin != policy.origin:
        raise NoteVerificationError(
            f"checkpoint origin {checkpoint.origin!r} is not the trusted log {policy.origin!r}"
        )
    note, verified = open_note(note, [policy.log, *policy.witnesses], strict=strict)
    if not any(v == policy.log for v, _ in verified):
        raise NoteVerificationError("checkpoint is not signed by the log's key")
    cosigners = tuple(v.name for v, _ in verified if v != policy.log)
    final = len(cosigners) >= policy.quorum
    if require_final and not final:
        raise NoteVerificationError(
            f"checkpoint of size {checkpoint.size} has {len(cosigners)} cosignatures, "
            f"{policy.quorum} needed"
        )
    return VerifiedCheckpoint(checkpoint, note, cosigners, final)
