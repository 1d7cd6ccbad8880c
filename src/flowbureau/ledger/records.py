"""Canonical, versioned bytes of one stored record (a Merkle leaf) and of one statement row.

Rules (docs/ledger.md gives the exact bytes and a worked example):
- A leaf is a tag line (``flowbureau/record/v1\\n`` or ``flowbureau/statement/v1\\n``) followed
  by every column of the stored schema, in schema order, each as ``L:V,`` where ``V`` is the
  value's bytes and ``L`` their length in ASCII decimal (a netstring); a null is ``-:,``. The
  length prefixes make the encoding injective: no two different rows give the same bytes.
- Values: strings as their UTF-8 bytes, unnormalised (a one-byte edit of any stored value
  changes the leaf); integers as ASCII decimal (``-`` sign, no leading zeros); timestamps as
  integer microseconds since 1970-01-01T00:00:00Z; dates as integer days since 1970-01-01;
  lists as the concatenation of their elements' ``L:V,`` fields.
- Every stored column is covered - the warehouse keeps nothing about a record that its leaf does
  not commit to. Nothing here reaches the log: only leaf hashes, and only inside a bank's batch
  tree (the log holds the batch root). Account columns are already keyed-HMAC pseudonyms.
- The column list is part of the version. A table whose columns or types differ is refused with
  the offending field named; changing the stored schema needs a new tag (``.../v2``).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from flowbureau.errors import InputError
from flowbureau.schema import STATEMENT_SCHEMA, STORED_TRANSACTION_SCHEMA

__all__ = [
    "RECORD_LEAF",
    "STATEMENT_LEAF",
    "LeafFormat",
    "RecordSchemaError",
]


class RecordSchemaError(InputError):
    """A table given to the ledger does not have the canonical columns and types."""


_SLICE_ROWS = 1 << 16


@dataclass(frozen=True, slots=True)
class LeafFormat:
    """One versioned row encoding: a tag and the exact schema it covers."""

    tag: str
    schema: pa.Schema

    def check(self, table: pa.Table, *, what: str = "table") -> pa.Table:
        """Return ``table`` with exactly this format's columns and types, or raise."""
        names = table.schema.names
        expected = self.schema.names
        for name in expected:
            if name not in names:
                raise RecordSchemaError(f"{what} lacks column {name!r}", field=name)
        for name in names:
            if name not in expected:
                raise RecordSchemaError(
                    f"{what} has column {name!r}, which {self.tag} does not commit to", field=name
                )
        for field in self.schema:
            actual = table.schema.field(field.name).type
            if actual != field.type and not _same_family(actual, field.type):
                raise RecordSchemaError(
                    f"{what} column {field.name!r} is {actual}, not {field.type}", field=field.name
                )
        return table.select(expected).cast(self.schema, safe=True)

    def encode(self, table: pa.Table) -> list[bytes]:
        """The leaf bytes of every row of ``table`` (after :meth:`check`)."""
        table = self.check(table).combine_chunks()
        rows = table.num_rows
        if rows == 0:
            return []
        if rows <= _SLICE_ROWS:
            return self._encode_slice(table)
        # Arrow compute releases the GIL: encode slices on every core, keep row order
        slices = [table.slice(i, _SLICE_ROWS) for i in range(0, rows, _SLICE_ROWS)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            parts = list(pool.map(self._encode_slice, slices))
        return [leaf for part in parts for leaf in part]

    def _encode_slice(self, table: pa.Table) -> list[bytes]:
        args: list[Any] = [self.tag + "\n"]
        for field in self.schema:
            text = _text(table.column(field.name).chunk(0), field.type)
            length = pc.fill_null(pc.cast(pc.binary_length(text), pa.string()), "-")
            args += [length, ":", pc.fill_null(text, ""), ","]
        joined = pc.binary_join_element_wise(*args, "")
        return pc.cast(joined, pa.binary()).to_pylist()  # type: ignore[no-any-return]

    def leaf_hashes(self, table: pa.Table) -> bytes:
        """Concatenated RFC 9162 leaf hashes (``SHA-256(0x00 || leaf)``) of every row."""
        sha = hashlib.sha256
        return b"".join([sha(b"\x00" + leaf).digest() for leaf in self.encode(table)])


def _same_family(actual: pa.DataType, wanted: pa.DataType) -> bool:
    """Types holding the same values that cast losslessly (large or view strings and lists)."""
    if pa.types.is_string(wanted):
        return bool(pa.types.is_large_string(actual) or pa.types.is_string_view(actual))
    if pa.types.is_list(wanted) and (pa.types.is_list(actual) or pa.types.is_large_list(actual)):
        inner: pa.DataType = actual.value_type
        return bool(inner == wanted.value_type or _same_family(inner, wanted.value_type))
    return False


def _field(text: pa.Array) -> pa.Array:
    """``L:V,`` per element of a string array (``-:,`` for null)."""
    length = pc.fill_null(pc.cast(pc.binary_length(text), pa.string()), "-")
    return pc.binary_join_element_wise(length, ":", pc.fill_null(text, ""), ",", "")


def _text(values: pa.Array, kind: pa.DataType) -> pa.Array:
    """The value bytes of one column, as a string array (null where the value is null)."""
    if pa.types.is_string(kind):
        return values
    if pa.types.is_integer(kind):
        return pc.cast(values, pa.string())
    if pa.types.is_timestamp(kind):
        return pc.cast(values.cast(pa.int64()), pa.string())  # microseconds (the schema's unit)
    if pa.types.is_date32(kind):
        return pc.cast(values.cast(pa.int32()), pa.string())
    if pa.types.is_boolean(kind):
        return pc.if_else(values, "1", "0")
    if pa.types.is_list(kind) and pa.types.is_string(kind.value_type):
        items = _field(values.flatten())
        lists = pa.ListArray.from_arrays(
            pc.subtract(values.offsets, values.offsets[0]), items, mask=values.is_null()
        )
        return pc.binary_join(lists, "")
    raise RecordSchemaError(f"no leaf encoding for type {kind}")  # pragma: no cover


RECORD_LEAF = LeafFormat("flowbureau/record/v1", STORED_TRANSACTION_SCHEMA)
"""Leaf format of one stored transaction (every column of ``STORED_TRANSACTION_SCHEMA``)."""

STATEMENT_LEAF = LeafFormat("flowbureau/statement/v1", STATEMENT_SCHEMA)
"""Leaf format of one statement row (every column of ``STATEMENT_SCHEMA``)."""
