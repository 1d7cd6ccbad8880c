"""C2SP signed notes (c2sp.org/signed-note) and verifier keys, Ed25519 only.

Rules (exact bytes; the spec is normative, this is a summary):
- A note is UTF-8 text ending in a newline, a blank line, then one or more signature lines
  ``"— " + key name + " " + base64(4-byte key ID || signature) + "\\n"`` (U+2014 em dash).
  No ASCII control characters but newline. The text may contain blank lines; it ends at the
  *last* blank line.
- Key names are non-empty, without Unicode spaces or ``+``.
- Two signature types are used here, both Ed25519 (RFC 8032):
  ``0x01`` plain note signatures (the operator's log key signs checkpoints), key ID
  ``SHA-256(name || "\\n" || 0x01 || public key)[:4]``, signed message = the note text;
  ``0x04`` timestamped cosignatures (c2sp.org/tlog-cosignature, cosignature/v1), key ID with
  ``0x04``, signature = 8-byte big-endian POSIX timestamp || Ed25519 signature over
  ``"cosignature/v1\\ntime <ts>\\n" || note text``.
- Verifier keys are ``name + "+" + hex(key ID) + "+" + base64(type || public key)``.
- Verification: signatures whose (name, key ID) match no trusted key are ignored; a known key
  whose signature fails rejects the whole note; a note with no verified signature is rejected.
  Parsing is strict: base64 must be canonical (a re-encoding gives the same characters), so
  no two distinct byte strings parse to the same signed note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from flowbureau.errors import InputError, IntegrityError

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "MAX_SIGNATURES",
    "CosignatureSigner",
    "Ed25519NoteSigner",
    "InvalidNoteError",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerificationError",
    "NoteVerifier",
    "cosigned_message",
    "format_note",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
]

ED25519 = 0x01
"""Signature type of plain Ed25519 note signatures."""
COSIGNATURE_V1 = 0x04
"""Signature type of timestamped Ed25519 checkpoint cosignatures (cosignature/v1)."""
MAX_SIGNATURES = 100
"""Most signature lines accepted in one note (the spec asks for at least 16)."""

_EM_DASH = "\u2014"
_NAME = re.compile(r"[^\s+]+")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")


class InvalidNoteError(InputError):
    """A signed note, verifier key or checkpoint is not well formed."""


class NoteVerificationError(IntegrityError):
    """A note has no valid signature from a trusted key, or a trusted key's signature fails."""


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """``SHA-256(name || "\\n" || type || public key)[:4]``, the key ID of signed-note."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _b64decode_strict(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidNoteError(f"{what} is not valid base64: {text!r}") from None
    if base64.b64encode(raw).decode() != text:
        raise InvalidNoteError(f"{what} is not canonical base64: {text!r}")
    return raw


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidNoteError(f"key name {name!r} is empty or contains a space or '+'")


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and the signature bytes after it."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, newline included."""
        payload = base64.b64encode(self.key_id + self.signature).decode()
        return f"{_EM_DASH} {self.name} {payload}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A note's text (ending in newline) and its signatures, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]


class NoteSigner(Protocol):
    """Something that signs note texts under a name and key ID."""

    @property
    def name(self) -> str:
        """Key name written in the signature line."""
        ...

    @property
    def key_id(self) -> bytes:
        """4-byte key ID."""
        ...

    def sign(self, text: str) -> bytes:
        """The signature bytes (after the key ID) for ``text``."""
        ...


class Ed25519NoteSigner:
    """Signs notes with an Ed25519 key, signature type ``0x01``."""

    sig_type = ED25519

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self._name = name
        self._key = private_key
        self._public = private_key.public_key().public_bytes_raw()
        self._key_id = key_id(name, self.sig_type, self._public)

    @property
    def name(self) -> str:
        """Key name written in the signature line."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """4-byte key ID."""
        return self._key_id

    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return NoteVerifier(self._name, self.sig_type, self._public)

    def sign(self, text: str) -> bytes:
        """Ed25519 signature over the note text."""
        return self._key.sign(text.encode())


class CosignatureSigner:
    """Cosigns checkpoints with an Ed25519 key (type ``0x04``, cosignature/v1).

    ``clock`` returns the POSIX time written into each cosignature (default: now).
    """

    sig_type = COSIGNATURE_V1

    def __init__(
        self,
        name: str,
        private_key: Ed25519PrivateKey,
        *,
        clock: Callable[[], int] = lambda: int(time.time()),
    ) -> None:
        _check_name(name)
        self._name = name
        self._key = private_key
        self._public = private_key.public_key().public_bytes_raw()
        self._key_id = key_id(name, self.sig_type, self._public)
        self._clock = clock

    @property
    def name(self) -> str:
        """Key name written in the signature line."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """4-byte key ID."""
        return self._key_id

    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return NoteVerifier(self._name, self.sig_type, self._public)

    def sign(self, text: str) -> bytes:
        """8-byte timestamp followed by the Ed25519 signature of the cosigned message."""
        timestamp = self._clock()
        if not 0 <= timestamp < 2**63:
            raise ValueError(f"cosignature timestamp {timestamp} out of range")
        return struct.pack(">Q", timestamp) + self._key.sign(cosigned_message(text, timestamp))


def cosigned_message(text: str, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: header line, time line, then the note text."""
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A trusted public key: name, signature type (0x01 or 0x04) and 32-byte Ed25519 key."""

    name: str
    sig_type: int
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.sig_type not in (ED25519, COSIGNATURE_V1):
            raise InvalidNoteError(f"unsupported signature type 0x{self.sig_type:02x}")
        if len(self.public_key) != 32:
            raise InvalidNoteError(
                f"Ed25519 public key must be 32 bytes, not {len(self.public_key)}"
            )

    @property
    def key_id(self) -> bytes:
        """4-byte key ID."""
        return key_id(self.name, self.sig_type, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key string ``name+hex(id)+base64(type||key)``."""
        material = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key string; its key ID must match the key it carries."""
        parts = vkey.split("+", 2)  # base64 key material may itself contain '+'
        if len(parts) != 3:
            raise InvalidNoteError(f"verifier key {vkey!r} does not have three '+'-separated parts")
        name, hex_id, material = parts
        if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise InvalidNoteError(f"verifier key ID {hex_id!r} is not 8 lowercase hex digits")
        raw = _b64decode_strict(material, "verifier key material")
        if not raw:
            raise InvalidNoteError("verifier key material is empty")
        verifier = cls(name, raw[0], raw[1:])
        if verifier.key_id.hex() != hex_id:
            raise InvalidNoteError(f"verifier key ID {hex_id} does not match its key")
        return verifier

    def verify(self, text: str, signature: bytes) -> bool:
        """True when ``signature`` (bytes after the key ID) is valid for ``text``."""
        public = Ed25519PublicKey.from_public_bytes(self.public_key)
        if self.sig_type == ED25519:
            message, raw = text.encode(), signature
        else:
            if len(signature) != 8 + 64:
                return False
            (timestamp,) = struct.unpack(">Q", signature[:8])
            if timestamp >= 2**63:
                return False
            message, raw = cosigned_message(text, timestamp), signature[8:]
        if len(raw) != 64:
            return False
        try:
            public.verify(raw, message)
        except InvalidSignature:
            return False
        return True

    def timestamp(self, signature: bytes) -> int | None:
        """The POSIX time inside a cosignature (``None`` for plain signatures)."""
        if self.sig_type != COSIGNATURE_V1 or len(signature) < 8:
            return None
        return int(struct.unpack(">Q", signature[:8])[0])


def parse_note(data: bytes | str) -> Note:
    """Split a signed note into text and signature lines, rejecting anything malformed."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidNoteError(f"note is not valid UTF-8: {exc}") from None
    if _CONTROL.search(data):
        raise InvalidNoteError("note contains an ASCII control character other than newline")
    split = data.rfind("\n\n")
    if split < 0:
        raise InvalidNoteError("note has no blank line before its signatures")
    text, block = data[: split + 1], data[split + 2 :]
    if not block.endswith("\n"):
        raise InvalidNoteError("note does not end with a newline after its last signature")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise InvalidNoteError(f"note has more than {MAX_SIGNATURES} signatures")
    signatures: list[NoteSignature] = []
    for number, line in enumerate(lines, start=1):
        prefix = f"{_EM_DASH} "
        fields = line[len(prefix) :].split(" ") if line.startswith(prefix) else []
        if len(fields) != 2:
            raise InvalidNoteError(f"signature line {number} is malformed: {line!r}")
        name, payload = fields
        _check_name(name)
        raw = _b64decode_strict(payload, f"signature line {number}")
        if len(raw) < 5:
            raise InvalidNoteError(f"signature line {number} is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return Note(text, tuple(signatures))


def format_note(note: Note) -> bytes:
    """The note's bytes: text, blank line, signature lines."""
    if not note.text.endswith("\n"):
        raise InvalidNoteError("note text must end with a newline")
    if not note.signatures:
        raise InvalidNoteError("a signed note needs at least one signature")
    return (note.text + "\n" + "".join(s.line() for s in note.signatures)).encode()


def sign_note(
    text: str, signers: Iterable[NoteSigner], *, existing: Sequence[NoteSignature] = ()
) -> Note:
    """Sign ``text`` with every signer, after ``existing`` signatures (cosigning adds lines)."""
    if not text.endswith("\n"):
        raise InvalidNoteError("note text must end with a newline")
    if _CONTROL.search(text):
        raise InvalidNoteError("note text contains an ASCII control character other than newline")
    added = [NoteSignature(s.name, s.key_id, s.sign(text)) for s in signers]
    return Note(text, (*existing, *added))


def open_note(
    data: bytes | str | Note, verifiers: Iterable[NoteVerifier], *, strict: bool = False
) -> tuple[Note, list[tuple[NoteVerifier, NoteSignature]]]:
    """Parse and verify a note; return it with the (verifier, signature) pairs that verified.

    Unknown signatures are ignored, as the spec requires, unless ``strict`` (used when checking
    notes this node stored itself, where every line must be one of ours and verify).
    """
    note = data if isinstance(data, Note) else parse_note(data)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[tuple[NoteVerifier, NoteSignature]] = []
    seen: set[tuple[str, bytes]] = set()
    for signature in note.signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None:
            if strict:
                raise NoteVerificationError(f"signature by unknown key {signature.name!r}")
            continue
        if not verifier.verify(note.text, signature.signature):
            raise NoteVerificationError(f"signature by {signature.name!r} does not verify")
        if (signature.name, signature.key_id) in seen:
            raise NoteVerificationError(f"key {signature.name!r} signed the note twice")
        seen.add((signature.name, signature.key_id))
        verified.append((verifier, signature))
    if not verified:
        raise NoteVerificationError("no signature from a trusted key")
    return note, verified
