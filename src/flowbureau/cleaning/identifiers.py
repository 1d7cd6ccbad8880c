"""Identifiers: account pseudonyms, statement ids and the content-based ``tx_id``.

Rules:
- ``account_id`` = first 32 hex digits (128 bits) of HMAC-SHA256(``settings.pseudonym_key``,
  normalised account number) (:func:`account_pseudonym`). ``counterparty_account`` is
  pseudonymised with the same key, so a payer's ``counterparty_account`` equals the payee's
  ``account_id``. Without the key a pseudonym cannot be reversed or recomputed from a guessed
  number; the clear number lives only in the vault.
- ``tx_id`` = first 32 hex digits of SHA-256 over, in this order, each field written as
  ``<UTF-8 byte length>:<text>`` (so no two field lists give the same text):
  ``bank_id``, ``account_id``, booking date as printed (local, ``YYYY-MM-DD``),
  ``amount_minor``, ``currency``, ``reference``, ``end_to_end_id``, ``counterparty_account``
  (pseudonym), ``counterparty_name_norm``, ``description`` (as printed), and the *occurrence
  index*: the 0-based rank of the entry among entries of the same file with all the previous
  fields equal, in file order. A missing field counts as empty text.
- Consequences (documented in docs/pipeline.md): the same entry exported twice (the same file
  again, or two exports whose periods overlap) gets the same ``tx_id``; two genuinely equal
  payments on one day get occurrence 0 and 1 and are both kept. The booking *time* and the
  running balance are left out on purpose, so an export with times and one without agree;
  exports are assumed to hold whole days (a statement period is a range of dates).
- ``statement_id`` = first 32 hex digits of SHA-256 of ``<file sha256>:<statement index>``.
"""

from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa

from flowbureau.cleaning.normalise import map_distinct, normalise_account_number
from flowbureau.config import get_settings

__all__ = [
    "ID_HEX_DIGITS",
    "TX_ID_FIELDS",
    "account_pseudonym",
    "pseudonym_key",
    "pseudonymise",
    "statement_id",
    "tx_id_sql",
]

ID_HEX_DIGITS = 32
"""Length of every derived identifier (128 bits in hex)."""

TX_ID_FIELDS = (
    "bank_id",
    "account_id",
    "strftime(local_date, '%Y-%m-%d')",
    "CAST(amount_minor AS VARCHAR)",
    "currency",
    "reference",
    "end_to_end_id",
    "counterparty_account",
    "counterparty_name_norm",
    "description",
)
"""SQL expressions (over the standardised batch) hashed into ``tx_id``, before the occurrence."""


def pseudonym_key() -> bytes:
    """The configured HMAC key for account pseudonyms."""
    return get_settings().pseudonym_key.get_secret_value().encode("utf-8")


def account_pseudonym(number: str | None, key: bytes) -> str | None:
    """The pseudonym of an account number (None if the number is empty)."""
    normalised = normalise_account_number(number)
    return None if normalised is None else _digest(normalised, key)


def _digest(normalised: str, key: bytes) -> str:
    return hmac.new(key, normalised.encode("utf-8"), hashlib.sha256).hexdigest()[:ID_HEX_DIGITS]


def pseudonymise(column: pa.Array | pa.ChunkedArray, key: bytes) -> tuple[pa.Array, dict[str, str]]:
    """Pseudonyms of a column of clear account numbers, and ``{pseudonym: normalised number}``
    for the vault. Runs once per distinct number."""
    clear: dict[str, str] = {}

    def one(number: str) -> str | None:
        normalised = normalise_account_number(number)
        if normalised is None:
            return None
        pseudonym = _digest(normalised, key)
        clear[pseudonym] = normalised
        return pseudonym

    return map_distinct(column, one), clear


def statement_id(file_sha256: str, index: int) -> str:
    """Identifier of the ``index``-th statement (0-based) of the file with that SHA-256."""
    return hashlib.sha256(f"{file_sha256}:{index}".encode()).hexdigest()[:ID_HEX_DIGITS]


def tx_id_sql(occurrence: str = "occurrence") -> str:
    """DuckDB SQL computing ``tx_id`` from :data:`TX_ID_FIELDS` and column ``occurrence``."""
    parts: list[str] = []
    for expression in (*TX_ID_FIELDS, f"CAST({occurrence} AS VARCHAR)"):
        # concat() reads NULL as empty text; one concat builds the string in one allocation
        parts += [f"coalesce(strlen({expression}), 0)", "':'", expression]
    return f"left(sha256(concat({', '.join(parts)})), {ID_HEX_DIGITS})"
