"""Node keys: Ed25519 for signing, X25519 for sealing, kept in files only their owner can read.

Rules:
- A bank node has three keys: ``signing`` (Ed25519; signs bundle manifests and governance
  approvals), ``witness`` (Ed25519; cosigns checkpoints - a separate key so a witness can run
  on its own host and be rotated on its own, and because c2sp cosignature/v1 messages do not
  commit to the signer's name), and ``box`` (X25519; what others seal messages to). The platform
  has ``log`` (Ed25519; signs checkpoints) and ``box`` (X25519; banks seal bundles to it).
- Private keys are PKCS#8 PEM files, mode 0600 in a 0700 directory, written atomically
  (temporary file + rename) and never overwritten. With a passphrase they are encrypted
  (PKCS#8 with the library's best available scheme). Loading refuses a file that group or others
  can read or write, and a wrong or missing passphrase, naming the file.
- Public keys travel as raw 32-byte keys in base64 (``public.json`` beside the private ones).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from flowbureau.errors import InputError
from flowbureau.ledger.canonical import b64

__all__ = [
    "BankKeys",
    "KeyFileError",
    "Keystore",
    "PlatformKeys",
    "raw_public",
    "x25519_public",
]

PrivateKey = Ed25519PrivateKey | X25519PrivateKey


class KeyFileError(InputError):
    """A key file is missing, unreadable, too widely readable, or its passphrase is wrong."""


def raw_public(key: PrivateKey) -> bytes:
    """The raw 32-byte public key of a private key."""
    return key.public_key().public_bytes_raw()


def x25519_public(raw: bytes) -> X25519PublicKey:
    """An X25519 public key from its 32 raw bytes."""
    return X25519PublicKey.from_public_bytes(raw)


def _write_private(path: Path, key: PrivateKey, passphrase: bytes | None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _write_atomic(path, pem)


def _write_atomic(path: Path, data: bytes) -> None:
    if path.exists():
        raise KeyFileError("refusing to overwrite an existing key file", file=path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_private(path: Path, kind: type[PrivateKey], passphrase: bytes | None) -> PrivateKey:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError("key file not found", file=path) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
            "run chmod 600 on it",
            file=path,
        )
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        raise KeyFileError(
            "key file is encrypted: a passphrase is needed"
            if not passphrase
            else "key file is not encrypted but a passphrase was given",
            file=path,
        ) from None
    except ValueError:
        raise KeyFileError(
            "cannot decrypt or parse the key (wrong passphrase?)", file=path
        ) from None
    if not isinstance(key, kind):
        raise KeyFileError(f"key file holds a {type(key).__name__}, not {kind.__name__}", file=path)
    return key


@dataclass(frozen=True)
class _KeySet:
    """Shared file handling of a node's named keys (subclasses declare the names and kinds)."""

    KINDS: ClassVar[Mapping[str, type[PrivateKey]]]

    @classmethod
    def generate(cls) -> Self:
        """Fresh random keys."""
        return cls(**{name: kind.generate() for name, kind in cls.KINDS.items()})

    def public(self) -> dict[str, bytes]:
        """Raw 32-byte public keys by name."""
        return {name: raw_public(getattr(self, name)) for name in self.KINDS}

    def save(self, directory: Path, *, passphrase: bytes | None = None) -> None:
        """Write ``<name>.key`` files (0600) and ``public.json`` into ``directory`` (0700)."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        for name in self.KINDS:
            _write_private(directory / f"{name}.key", getattr(self, name), passphrase)
        public = {name: b64(raw) for name, raw in self.public().items()}
        _write_atomic(directory / "public.json", (json.dumps(public, indent=2) + "\n").encode())

    @classmethod
    def load(cls, directory: Path, *, passphrase: bytes | None = None) -> Self:
        """Read the keys saved by :meth:`save`."""
        keys: dict[str, Any] = {
            name: _read_private(directory / f"{name}.key", kind, passphrase)
            for name, kind in cls.KINDS.items()
        }
        return cls(**keys)

    @classmethod
    def exists(cls, directory: Path) -> bool:
        """True when every key file of this set is present in ``directory``."""
        return all((directory / f"{name}.key").exists() for name in cls.KINDS)


@dataclass(frozen=True)
class BankKeys(_KeySet):
    """A bank node's keys: manifest/governance signing, checkpoint witnessing, sealing."""

    KINDS: ClassVar[Mapping[str, type[PrivateKey]]] = {
        "signing": Ed25519PrivateKey,
        "witness": Ed25519PrivateKey,
        "box": X25519PrivateKey,
    }
    signing: Ed25519PrivateKey
    witness: Ed25519PrivateKey
    box: X25519PrivateKey


@dataclass(frozen=True)
class PlatformKeys(_KeySet):
    """The platform's keys: checkpoint signing (the log key) and bundle sealing."""

    KINDS: ClassVar[Mapping[str, type[PrivateKey]]] = {
        "log": Ed25519PrivateKey,
        "box": X25519PrivateKey,
    }
    log: Ed25519PrivateKey
    box: X25519PrivateKey


class Keystore:
    """Key directories under one root: ``platform/`` and ``banks/<bank_id>/``.

    ``platform()``/``bank(id)`` load a node's keys, creating them on first use.
    """

    def __init__(self, root: Path, *, passphrase: bytes | None = None) -> None:
        self.root = root
        self._passphrase = passphrase

    def platform(self) -> PlatformKeys:
        """The platform's keys (created when absent)."""
        return self._load_or_create(PlatformKeys, self.root / "platform")

    def bank(self, bank_id: str) -> BankKeys:
        """A bank node's keys (created when absent)."""
        if not bank_id or "/" in bank_id or bank_id.startswith("."):
            raise KeyFileError(f"not a usable bank id for a key directory: {bank_id!r}")
        return self._load_or_create(BankKeys, self.root / "banks" / bank_id)

    def has_bank(self, bank_id: str) -> bool:
        """True when keys for ``bank_id`` exist."""
        return BankKeys.exists(self.root / "banks" / bank_id)

    def _load_or_create(self, kind: type[_S], directory: Path) -> _S:
        if kind.exists(directory):
            return kind.load(directory, passphrase=self._passphrase)
        if not self.root.exists():  # the whole tree is the owner's alone
            self.root.mkdir(parents=True, mode=0o700)
            os.chmod(self.root, 0o700)
        keys = kind.generate()
        keys.save(directory, passphrase=self._passphrase)
        return keys


_S = TypeVar("_S", BankKeys, PlatformKeys)
