"""Encryption of personal data at rest, and keyed lookups of it.

Rules:
- Phones and account numbers are sealed with the platform's one AES-256-GCM primitive,
  :class:`flowbureau.storage.vault.VaultCipher` (key from ``settings.vault_key`` by HKDF-SHA256,
  a fresh 96-bit nonce per value, the associated data binding the ciphertext to where it
  belongs). The warehouse vault binds to an account pseudonym; the service binds to the
  column (e.g. ``users.phone``): a ciphertext copied into another column or table fails to
  open instead of silently reading as someone else's data.
- A stored value is ``version byte || 12-byte nonce || ciphertext+tag``.
- Equality lookups use a keyed HMAC-SHA256 (:meth:`Vault.lookup`), never the clear value; its
  key is derived from the same secret under another HKDF label (:func:`derive_key`), so the
  lookup key can never decrypt.
- A ciphertext that fails authentication raises :class:`~flowbureau.errors.IntegrityError`.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flowbureau.errors import IntegrityError
from flowbureau.storage.vault import VaultCipher

__all__ = ["Vault", "derive_key"]

_VERSION = 2  # 1 was the service's own AES-GCM key (before the shared VaultCipher)
_NONCE_BYTES = 12
_TAG_BYTES = 16


def derive_key(secret: str, label: str, length: int = 32) -> bytes:
    """Derive a ``length``-byte key for ``label`` from ``secret`` with HKDF-SHA256."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=b"flowbureau",
        info=f"flowbureau/{label}".encode(),
    ).derive(secret.encode("utf-8"))


class Vault:
    """Seals, opens and computes lookup HMACs of personal data with keys from one secret."""

    def __init__(self, secret: str) -> None:
        self._cipher = VaultCipher(secret)
        self._lookup_key = derive_key(secret, "pii/lookup-hmac/v1")

    def encrypt(self, plaintext: str, *, context: str) -> bytes:
        """Seal ``plaintext`` bound to ``context`` (the column it is stored in)."""
        nonce, sealed = self._cipher.seal(context, plaintext)
        return bytes([_VERSION]) + nonce + sealed

    def decrypt(self, blob: bytes, *, context: str) -> str:
        """Open a value written by :meth:`encrypt` for the same ``context``."""
        if len(blob) < 1 + _NONCE_BYTES + _TAG_BYTES or blob[0] != _VERSION:
            raise IntegrityError(f"{context}: not a flowbureau vault ciphertext")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        return self._cipher.open(context, nonce, sealed)

    def lookup(self, value: str, *, context: str) -> str:
        """A keyed HMAC-SHA256 (hex) of ``value`` for equality lookups within ``context``."""
        message = context.encode() + b"\x00" + value.encode("utf-8")
        return hmac.new(self._lookup_key, message, hashlib.sha256).hexdigest()
