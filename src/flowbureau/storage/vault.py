"""The vault: clear account numbers, encrypted, by pseudonym.

Rules:
- The warehouse stores account numbers only as pseudonyms (keyed HMAC, see
  :func:`flowbureau.cleaning.identifiers.account_pseudonym`). The clear number is kept only
  here, sealed with AES-256-GCM: a fresh random 96-bit nonce per value, the pseudonym as
  associated data (a ciphertext moved to another pseudonym fails to open).
- The key is derived from ``settings.vault_key`` with HKDF-SHA256 (salt ``flowbureau-vault``,
  info ``flowbureau vault aes-256-gcm v1``); the key material itself is never stored.
- Vault rows are written in the same batch as the records that use them, so a failed ingest
  leaves no vault rows either. A pseudonym already in the vault is not written again.
- The vault is not one of the SQL views: user SQL cannot read it, not even as ciphertext.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import pyarrow as pa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flowbureau.config import get_settings
from flowbureau.errors import IntegrityError, NotFoundError
from flowbureau.storage.duckdb_engine import sql_string
from flowbureau.storage.warehouse import VAULT_SCHEMA, TablePart, Warehouse, new_batch_id

__all__ = ["VaultCipher", "get", "get_many", "new_entries_sql", "put", "seal"]

_NONCE_BYTES = 12


class VaultCipher:
    """AES-256-GCM with a key derived from the vault key material."""

    def __init__(self, key_material: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"flowbureau-vault",
            info=b"flowbureau vault aes-256-gcm v1",
        ).derive(key_material.encode("utf-8"))
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls) -> VaultCipher:
        """The cipher of the configured ``vault_key``."""
        return cls(get_settings().vault_key.get_secret_value())

    def seal(self, pseudonym: str, clear: str) -> tuple[bytes, bytes]:
        """Encrypt ``clear`` bound to ``pseudonym``; return ``(nonce, ciphertext)``."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, clear.encode("utf-8"), pseudonym.encode("utf-8"))

    def open(self, pseudonym: str, nonce: bytes, ciphertext: bytes) -> str:
        """Decrypt a value sealed for ``pseudonym``; :class:`IntegrityError` if tampered."""
        try:
            plain = self._aead.decrypt(nonce, ciphertext, pseudonym.encode("utf-8"))
        except InvalidTag:
            raise IntegrityError(
                f"vault entry {pseudonym} does not decrypt: wrong vault key or tampered data"
            ) from None
        return plain.decode("utf-8")


def seal(pairs: Mapping[str, str], *, cipher: VaultCipher | None = None) -> pa.Table:
    """Vault rows (:data:`VAULT_SCHEMA`) for ``{pseudonym: clear value}``."""
    cipher = cipher or VaultCipher.from_settings()
    now = datetime.now(UTC)
    pseudonyms = sorted(pairs)
    sealed = [cipher.seal(p, pairs[p]) for p in pseudonyms]
    return pa.table(
        {
            "pseudonym": pa.array(pseudonyms, pa.string()),
            "nonce": pa.array([n for n, _ in sealed], pa.binary()),
            "ciphertext": pa.array([c for _, c in sealed], pa.binary()),
            "created_at": pa.array([now] * len(pseudonyms), VAULT_SCHEMA.field("created_at").type),
        },
        schema=VAULT_SCHEMA,
    )


def new_entries_sql(vault_files: Iterable[str], candidates: str) -> str:
    """SQL selecting the rows of relation ``candidates`` whose pseudonym is not yet stored.

    ``vault_files`` are the absolute paths of the committed and staged vault files.
    """
    paths = [sql_string(p) for p in vault_files]
    if not paths:
        return f"SELECT * FROM {candidates}"
    return (
        f"SELECT * FROM {candidates} ANTI JOIN read_parquet([{', '.join(paths)}]) v "
        "USING (pseudonym)"
    )


def put(pairs: Mapping[str, str], *, warehouse: Warehouse | None = None) -> int:
    """Seal and store ``{pseudonym: clear value}`` pairs not yet in the vault; return how many.

    One atomic commit of its own; the ingest pipeline instead stages vault rows inside each
    batch (same rule, same table).
    """
    warehouse = warehouse or Warehouse.default()
    with warehouse.writer() as writer:
        vault_files = [str(warehouse.root / f.path) for f in writer.manifest.files("vault")]
        writer.engine.register("__vault_candidates", seal(pairs))
        sql = new_entries_sql(vault_files, "__vault_candidates")
        count = int(writer.engine.query(f"SELECT count(*) FROM ({sql})").column(0)[0].as_py())
        if count:
            writer.stage_batch(new_batch_id(), [TablePart("vault", sql, "vault")])
            writer.publish()
        writer.engine.unregister("__vault_candidates")
    return count


def get_many(pseudonyms: Iterable[str], *, warehouse: Warehouse | None = None) -> dict[str, str]:
    """Clear values of those ``pseudonyms`` that are in the vault."""
    warehouse = warehouse or Warehouse.default()
    wanted = sorted(set(pseudonyms))
    files = [str(warehouse.root / f.path) for f in warehouse.manifest().files("vault")]
    if not wanted or not files:
        return {}
    cipher = VaultCipher.from_settings()
    with warehouse.connect() as engine:
        engine.register("__wanted", pa.table({"pseudonym": pa.array(wanted, pa.string())}))
        listed = ", ".join(sql_string(p) for p in files)
        rows = engine.query(
            f"SELECT pseudonym, any_value(nonce) AS nonce, any_value(ciphertext) AS ciphertext "
            f"FROM read_parquet([{listed}]) SEMI JOIN __wanted USING (pseudonym) "
            "GROUP BY pseudonym"
        ).to_pylist()
    return {r["pseudonym"]: cipher.open(r["pseudonym"], r["nonce"], r["ciphertext"]) for r in rows}


def get(pseudonym: str, *, warehouse: Warehouse | None = None) -> str:
    """The clear value behind ``pseudonym``; :class:`NotFoundError` if the vault lacks it."""
    found = get_many([pseudonym], warehouse=warehouse)
    if pseudonym not in found:
        raise NotFoundError(f"no vault entry for {pseudonym}")
    return found[pseudonym]
