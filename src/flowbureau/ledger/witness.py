"""Witnesses: member nodes that cosign the log's checkpoints after checking consistency.

Rules (the add-checkpoint semantics of c2sp.org/tlog-witness):
- A witness trusts one log key and keeps, per origin, the latest checkpoint it cosigned.
- A request carries the old size the log believes the witness is at, a consistency proof from
  that size, and the new checkpoint signed by the log. The witness refuses, and does not
  cosign, when: the log signature is missing or bad (403); the old size is above the new size
  (400); the old size is not the size it last cosigned (409, telling its size); the proof does
  not verify, the sizes are equal with different roots, or a size-0 checkpoint is not the
  empty root (422).
- A 422 from a validly signed checkpoint is evidence of a split view or a rewritten log: the
  :class:`SplitViewError` carries both signed checkpoints so anyone can check the fork.
- Check and update are one atomic step (compare-and-swap on the stored size) so two
  concurrent requests cannot roll the witness back.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowbureau.errors import LedgerError
from flowbureau.ledger.checkpoint import Checkpoint
from flowbureau.ledger.merkle import EMPTY_ROOT, InvalidProofError, verify_consistency
from flowbureau.ledger.note import (
    CosignatureSigner,
    InvalidNoteError,
    Note,
    NoteSignature,
    NoteVerificationError,
    NoteVerifier,
    format_note,
    open_note,
    parse_note,
)

__all__ = [
    "MAX_PROOF_LINES",
    "AddCheckpointRequest",
    "FileWitnessState",
    "InMemoryWitnessState",
    "SplitViewError",
    "StaleOldSizeError",
    "Witness",
    "WitnessRefusedError",
    "WitnessStateStore",
]

MAX_PROOF_LINES = 63
"""Most consistency proof lines a request may carry (tlog-witness)."""


class WitnessRefusedError(LedgerError):
    """A witness did not cosign; ``status`` is the tlog-witness HTTP status it maps to."""

    def __init__(self, message: str, *, status: int, witness: str) -> None:
        self.status = status
        self.witness = witness
        super().__init__(f"witness {witness} refused ({status}): {message}")


class StaleOldSizeError(WitnessRefusedError):
    """The request's old size is not what the witness last cosigned (409)."""

    def __init__(self, *, witness: str, expected: int, got: int) -> None:
        self.expected = expected
        super().__init__(
            f"old size {got} does not match its latest cosigned size {expected}",
            status=409,
            witness=witness,
        )


class SplitViewError(WitnessRefusedError):
    """The log signed a checkpoint inconsistent with one the witness cosigned before (422).

    ``previous`` and ``offending`` are the two notes, both carrying the log's signature: the
    evidence of misbehaviour to hand to the consortium.
    """

    def __init__(self, message: str, *, witness: str, previous: bytes, offending: bytes) -> None:
        self.previous = previous
        self.offending = offending
        super().__init__(message, status=422, witness=witness)


class WitnessStateStore(Protocol):
    """Where a witness keeps the latest checkpoint note it cosigned, per origin."""

    def load(self, origin: str) -> bytes | None:
        """The latest cosigned note for ``origin``, or ``None``."""
        ...

    def compare_and_swap(self, origin: str, old_size: int, note: bytes, new_size: int) -> bool:
        """Store ``note`` if the stored size is still ``old_size`` (0 when none); else False."""
        ...


class InMemoryWitnessState:
    """A :class:`WitnessStateStore` in a dict, guarded by a lock."""

    def __init__(self) -> None:
        self._notes: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()

    def load(self, origin: str) -> bytes | None:
        """The latest cosigned note for ``origin``, or ``None``."""
        with self._lock:
            entry = self._notes.get(origin)
        return None if entry is None else entry[1]

    def compare_and_swap(self, origin: str, old_size: int, note: bytes, new_size: int) -> bool:
        """Store ``note`` if the stored size is still ``old_size``; else False."""
        with self._lock:
            current = self._notes.get(origin, (0, b""))[0]
            if current != old_size:
                return False
            self._notes[origin] = (new_size, note)
            return True


class FileWitnessState:
    """A :class:`WitnessStateStore` in files (one per origin) under ``directory``.

    Each update is written to a temporary file, synced, then renamed over the old one, under an
    exclusive ``flock`` so two processes cannot interleave a check and an update.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, origin: str) -> Path:
        return self.directory / (hashlib.sha256(origin.encode()).hexdigest()[:32] + ".note")

    def load(self, origin: str) -> bytes | None:
        """The latest cosigned note for ``origin``, or ``None``."""
        path = self._path(origin)
        return path.read_bytes() if path.exists() else None

    def compare_and_swap(self, origin: str, old_size: int, note: bytes, new_size: int) -> bool:
        """Store ``note`` if the stored note's size is still ``old_size``; else False."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.directory / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.load(origin)
            size = 0 if current is None else Checkpoint.parse(parse_note(current).text).size
            if size != old_size:
                return False
            path = self._path(origin)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as out:
                out.write(note)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
            return True


@dataclass(frozen=True, slots=True)
class AddCheckpointRequest:
    """The body of a tlog-witness ``add-checkpoint`` request."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: bytes

    def to_bytes(self) -> bytes:
        """``old N`` line, proof lines (base64), a blank line, then the signed checkpoint."""
        lines = [
            f"old {self.old_size}\n",
            *(base64.b64encode(p).decode() + "\n" for p in self.proof),
        ]
        return "".join(lines).encode() + b"\n" + self.checkpoint

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpointRequest:
        """Parse a request body strictly (raises :class:`InvalidNoteError`)."""
        head, sep, checkpoint = body.partition(b"\n\n")
        if not sep:
            raise InvalidNoteError("add-checkpoint request has no blank line before the checkpoint")
        lines = head.decode("ascii", errors="replace").split("\n")
        first = lines[0]
        if not first.startswith("old ") or not (
            first[4:] == "0" or (first[4:].isdigit() and not first[4:].startswith("0"))
        ):
            raise InvalidNoteError(f"add-checkpoint old size line is malformed: {first!r}")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise InvalidNoteError(f"more than {MAX_PROOF_LINES} consistency proof lines")
        proof: list[bytes] = []
        for line in lines[1:]:
            try:
                node = base64.b64decode(line, validate=True)
            except ValueError:
                raise InvalidNoteError(f"proof line {line!r} is not base64") from None
            if base64.b64encode(node).decode() != line:
                raise InvalidNoteError(f"proof line {line!r} is not canonical base64")
            proof.append(node)
        return cls(int(first[4:]), tuple(proof), checkpoint)


class Witness:
    """A member's witness: verifies consistency, then cosigns (cosignature/v1).

    ``name`` is the witness key name; ``log`` the log's verifier key (its name is the origin).
    """

    def __init__(
        self,
        name: str,
        private_key: Ed25519PrivateKey,
        log: NoteVerifier,
        *,
        state: WitnessStateStore | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.name = name
        self.log = log
        self._signer = (
            CosignatureSigner(name, private_key)
            if clock is None
            else CosignatureSigner(name, private_key, clock=clock)
        )
        self._state: WitnessStateStore = state or InMemoryWitnessState()

    @property
    def verifier(self) -> NoteVerifier:
        """This witness's cosignature verifier key."""
        return self._signer.verifier()

    def latest(self) -> Checkpoint | None:
        """The latest checkpoint this witness cosigned, if any."""
        note = self._state.load(self.log.name)
        return None if note is None else Checkpoint.parse(parse_note(note).text)

    def add_checkpoint(
        self, old_size: int, proof: Sequence[bytes], checkpoint: bytes
    ) -> NoteSignature:
        """Handle one add-checkpoint request; return the cosignature or raise a refusal."""
        try:
            note, _ = open_note(checkpoint, [self.log])
            new = Checkpoint.parse(note.text)
        except (InvalidNoteError, NoteVerificationError) as exc:
            raise WitnessRefusedError(str(exc), status=403, witness=self.name) from None
        if new.origin != self.log.name:
            raise WitnessRefusedError(
                f"unknown origin {new.origin!r}", status=404, witness=self.name
            )
        if old_size > new.size:
            raise WitnessRefusedError(
                f"old size {old_size} above checkpoint size {new.size}",
                status=400,
                witness=self.name,
            )
        previous_note = self._state.load(self.log.name)
        previous = (
            None if previous_note is None else Checkpoint.parse(parse_note(previous_note).text)
        )
        latest_size = 0 if previous is None else previous.size
        if old_size != latest_size:
            raise StaleOldSizeError(witness=self.name, expected=latest_size, got=old_size)
        self._check_consistency(previous, previous_note, new, proof, checkpoint)
        signature = self._signer.sign(note.text)
        cosignature = NoteSignature(self._signer.name, self._signer.key_id, signature)
        # store only the log's own signature lines: the evidence a later fork is checked against
        own = tuple(s for s in note.signatures if s.name == self.log.name)
        stored = format_note(Note(note.text, own))
        if not self._state.compare_and_swap(self.log.name, latest_size, stored, new.size):
            latest = self.latest()
            raise StaleOldSizeError(
                witness=self.name, expected=0 if latest is None else latest.size, got=old_size
            )
        return cosignature

    def _check_consistency(
        self,
        previous: Checkpoint | None,
        previous_note: bytes | None,
        new: Checkpoint,
        proof: Sequence[bytes],
        offending: bytes,
    ) -> None:
        def fork(message: str) -> SplitViewError:
            return SplitViewError(
                message, witness=self.name, previous=previous_note or b"", offending=offending
            )

        if new.size == 0 and new.root_hash != EMPTY_ROOT:
            raise fork("a size-0 checkpoint must carry the empty root")
        if previous is None or previous.size == 0:
            if proof:
                raise WitnessRefusedError(
                    "proof must be empty from size 0", status=422, witness=self.name
                )
            return
        if previous.size == new.size:
            if proof or previous.root_hash != new.root_hash:
                raise fork(f"two different roots signed for size {new.size}")
            return
        try:
            verify_consistency(previous.size, new.size, previous.root_hash, new.root_hash, proof)
        except InvalidProofError as exc:
            raise fork(
                f"checkpoint {new.size} is not consistent with cosigned {previous.size}: {exc}"
            ) from None
