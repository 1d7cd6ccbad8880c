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
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
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
        leaves: list[bytes] = []
        for encoded in self._encoded(self.check(table)):
            data = bytes(encoded.data)
            # drop the 0x00 hash prefix each leaf carries in the encoded buffer
            leaves.extend(
                data[a + 1 : b] for a, b in zip(encoded.starts, encoded.ends, strict=True)
            )
        return leaves

    def leaf_hashes(self, table: pa.Table) -> bytes:
        """Concatenated RFC 9162 leaf hashes (``SHA-256(0x00 || leaf)``) of every row.

        Slices are encoded by worker threads (Arrow compute releases the GIL) while this thread
        hashes the slices already encoded, in order; at most two slices per worker wait.
        """
        sha = hashlib.sha256
        digests: list[bytes] = []
        for encoded in self._encoded(self.check(table)):
            view = memoryview(encoded.data)
            digests += [
                sha(view[a:b]).digest() for a, b in zip(encoded.starts, encoded.ends, strict=True)
            ]
            view.release()
        return b"".join(digests)

    def _encoded(self, table: pa.Table) -> Iterator[_Encoded]:
        """Encode ``table`` slice by slice (in worker threads when there are several)."""
        rows = table.num_rows
        if rows <= _SLICE_ROWS:
            if rows:
                yield _encode_slice(self, table.combine_chunks())
            return
        slices = (table.slice(i, _SLICE_ROWS) for i in range(0, rows, _SLICE_ROWS))
        workers = max(1, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque[Future[_Encoded]] = deque()
            for part in slices:
                pending.append(pool.submit(_encode_slice, self, part.combine_chunks()))
                if len(pending) > 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


@dataclass(frozen=True, slots=True)
class _Encoded:
    """Leaves of one slice in one buffer: leaf ``i`` is ``data[starts[i]:ends[i]]``, its first
    byte the 0x00 leaf-hash prefix (so hashing needs no copy)."""

    data: pa.Buffer
    starts: list[int]
    ends: list[int]


@lru_cache(maxsize=8)
def _length_tables(size: int) -> tuple[pa.Array, pa.Array]:
    """``"<k>:"`` and ``",<k>:"`` for ``k < size``, then ``"-:"`` / ``",-:"`` (null) at ``size``.

    The comma ending a field travels with the next field's length so that a leaf has two
    pieces per field (length, value) instead of four.
    """
    first = [f"{k}:" for k in range(size)] + ["-:"]
    rest = [f",{k}:" for k in range(size)] + [",-:"]
    return pa.array(first, pa.string()), pa.array(rest, pa.string())


def _encode_slice(fmt: LeafFormat, table: pa.Table) -> _Encoded:
    """Every leaf of ``table`` (one chunk per column) by one Arrow ``take``.

    Row ``r`` is the pieces ``0x00 tag LF``, ``L0:``, ``V0``, ``,L1:``, ``V1``, ..., ``,``: the
    value strings of all columns and small tables of length prefixes are concatenated into one
    string array, and a ``rows x pieces`` index matrix (NumPy) picks them in leaf order. The
    result's data buffer holds the leaves back to back.
    """
    rows = table.num_rows
    fields = len(fmt.schema)
    values: list[pa.Array] = []
    lengths = np.empty((rows, fields), dtype=np.int64)  # byte length of each value, -1 = null
    for column, field in enumerate(fmt.schema):
        text = _text(table.column(field.name).chunk(0), field.type).cast(pa.string())
        lengths[:, column] = np.asarray(pc.fill_null(pc.binary_length(text), -1))
        values.append(pc.fill_null(text, ""))
    size = 1 << max(12, int(lengths.max(initial=0)).bit_length())
    lengths[lengths < 0] = size  # the null entry of the length tables
    first, rest = _length_tables(size)
    constants = pa.array(["\x00" + fmt.tag + "\n", ","], pa.string())
    pieces = [constants, first, rest, *values]
    offsets = np.cumsum([0, *(len(p) for p in pieces)])
    index = np.empty((rows, 2 * fields + 2), dtype=np.int64)
    index[:, 0] = 0
    index[:, 1] = offsets[1] + lengths[:, 0]
    index[:, 3 : 2 * fields : 2] = offsets[2] + lengths[:, 1:]
    index[:, 2 : 2 * fields + 1 : 2] = offsets[3 : 3 + fields] + np.arange(rows)[:, None]
    index[:, -1] = 1
    joined = pa.concat_arrays(pieces).take(pa.array(index.ravel()))
    width = 2 * fields + 2
    bounds = np.frombuffer(
        joined.buffers()[1], dtype=np.int32, count=len(joined) + 1, offset=4 * joined.offset
    )
    return _Encoded(joined.buffers()[2], bounds[0:-1:width].tolist(), bounds[width::width].tolist())


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
