"""Standardisation of names, account numbers and free text.

Rules:
- Free text (descriptions) is never rewritten: ``description_raw`` keeps what the bank printed.
  Matching (categorisation rules) works on a *width-folded* copy: full-width ASCII
  (U+FF01-U+FF5E) becomes half-width and the ideographic space a space - the one part of
  NFKC that is always safe for text. :func:`fold_width` and :func:`fold_width_sql` apply the
  same table.
- Names and account numbers are identifiers, so full NFKC is safe and wanted there.
  :func:`normalise_name` builds the matching key ``counterparty_name_norm``:
  NFKC -> case-fold (Latin) -> drop whitespace and the punctuation ``. , ' " ` · ・`` ->
  brackets ``（）[]【】〔〕`` -> ``()`` -> legal-form variants unified: 有限責任公司 /
  有限责任公司 -> 有限公司, 股份公司 -> 股份有限公司 (the legal form is kept, only spelt one way:
  a 股份有限公司 and a 有限公司 of the same name stay different).
- :func:`normalise_account_number`: NFKC, drop whitespace and ``-``, upper-case.
- These functions run on *distinct* values (see :func:`map_distinct`), so an Arrow column of
  millions of entries costs one call per distinct value.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "FULL_WIDTH",
    "HALF_WIDTH",
    "fold_width",
    "fold_width_sql",
    "map_distinct",
    "normalise_account_number",
    "normalise_name",
]

FULL_WIDTH = "".join(chr(c) for c in range(0xFF01, 0xFF5F)) + "\u3000"
"""Full-width ASCII variants and the ideographic space, in order."""
HALF_WIDTH = "".join(chr(c) for c in range(0x21, 0x7F)) + " "
"""Their half-width counterparts, position for position."""

_WIDTH_TABLE = str.maketrans(FULL_WIDTH, HALF_WIDTH)
_DROP = re.compile(r"[\s.,'\"`·・]+")
_BRACKETS = str.maketrans("[]【】〔〕", "()()()")
_LEGAL_FORMS = (
    (re.compile(r"有限責任公司|有限责任公司"), "有限公司"),
    (re.compile(r"股份公司"), "股份有限公司"),
)
_ACCOUNT_DROP = re.compile(r"[\s\-]+")


def fold_width(text: str) -> str:
    """Full-width ASCII to half-width, ideographic space to space; nothing else changes."""
    return text.translate(_WIDTH_TABLE)


def fold_width_sql(expression: str) -> str:
    """DuckDB SQL applying :func:`fold_width` to ``expression``.

    ``translate`` with a 95-character table is slow in DuckDB (about 10 s per million
    values), so it only runs on values that contain a full-width character at all.
    """
    full = FULL_WIDTH.replace("'", "''")
    half = HALF_WIDTH.replace("'", "''")
    wide = f"[{FULL_WIDTH[0]}-{FULL_WIDTH[-2]}{FULL_WIDTH[-1]}]"
    return (
        f"CASE WHEN regexp_matches({expression}, '{wide}') "
        f"THEN translate({expression}, '{full}', '{half}') ELSE {expression} END"
    )


def normalise_name(name: str | None) -> str | None:
    """The matching key of a company or person name (see the module rules); None if empty."""
    if name is None:
        return None
    key = _DROP.sub("", unicodedata.normalize("NFKC", name).casefold()).translate(_BRACKETS)
    for pattern, replacement in _LEGAL_FORMS:
        key = pattern.sub(replacement, key)
    return key or None


def normalise_account_number(number: str | None) -> str | None:
    """An account number as compared and pseudonymised: NFKC, no spaces or dashes, upper-case."""
    if number is None:
        return None
    cleaned = _ACCOUNT_DROP.sub("", unicodedata.normalize("NFKC", number)).upper()
    return cleaned or None


def map_distinct(
    column: pa.Array | pa.ChunkedArray, function: Callable[[str], str | None]
) -> pa.Array:
    """Apply ``function`` once per distinct string of ``column``; expand back (nulls stay null)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return pa.array([], pa.string())
    encoded = pc.dictionary_encode(column)
    dictionary = encoded.dictionary.to_pylist()
    mapped = pa.array([function(v) for v in dictionary], pa.string())
    return mapped.take(encoded.indices)
