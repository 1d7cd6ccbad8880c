"""Contribution bundles: Arrow IPC -> zstd -> HPKE sealed to the platform, signed manifest.

Wire format (all integers big-endian)::

    "FLOWBUREAU-BUNDLE/1\\n"   20 bytes
    manifest length           4 bytes (u32)
    manifest                  canonical JSON (flowbureau.ledger.manifest)
    signature                 64 bytes: Ed25519 over "flowbureau/manifest/v1\\n" || manifest
    sealed payload            the rest: HPKE enc (32 bytes) || AES-256-GCM ciphertext

Payload, before compression: ``u64 length || Arrow IPC stream of the records ||
u64 length || Arrow IPC stream of the statements``, compressed as one zstd frame that states its
content size, then sealed with HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, AES-256-GCM) to the platform's X25519 key with
``info = "flowbureau/bundle/v1\\n" || bank_id || "\\n" || seq``.

Rules for opening (each failure raises a :class:`~flowbureau.errors.BundleError` subclass that
names the bundle and the manifest field; nothing is stored - the caller commits only after every
check and the contract pass):
1. size above the limit -> :class:`BundleTooLargeError`, before reading anything else;
2. framing or manifest not well formed -> :class:`MalformedBundleError`;
3. bank not an active member -> :class:`UnknownBankError`;
4. signature not from the bank's current signing key -> :class:`BundleSignatureError`;
5. sequence number already used -> :class:`BundleReplayError`; beyond the next expected one
   -> :class:`BundleOrderError`;
6. sealed size or SHA-256, compressed or plain size, counts or Merkle roots differing from the
   manifest -> :class:`ManifestMismatchError`; a declared plain size above the limit ->
   :class:`BundleTooLargeError` (checked before decompressing: no zip bombs).
The signature and sequence are checked before any decryption or decompression work.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
import zstandard
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from flowbureau.errors import BundleError
from flowbureau.ledger.canonical import NonCanonicalError, parse_canonical
from flowbureau.ledger.contract import Contract
from flowbureau.ledger.manifest import Manifest
from flowbureau.ledger.merkle import merkle_root
from flowbureau.ledger.records import RECORD_LEAF, STATEMENT_LEAF, RecordSchemaError
from flowbureau.transport.keys import x25519_public

__all__ = [
    "MAGIC",
    "SUITE",
    "BundleLimits",
    "BundleOrderError",
    "BundleReplayError",
    "BundleSignatureError",
    "BundleTooLargeError",
    "MalformedBundleError",
    "ManifestMismatchError",
    "OpenedBundle",
    "PackedBundle",
    "UnknownBankError",
    "batch_period",
    "open_bundle",
    "pack_bundle",
]

MAGIC = b"FLOWBUREAU-BUNDLE/1\n"
"""First bytes of every bundle."""

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
"""The HPKE cipher suite bundles are sealed with."""

_SIGNATURE_SIZE = 64
_HPKE_ENC_SIZE = 32
_AEAD_TAG_SIZE = 16


class MalformedBundleError(BundleError):
    """The bundle's framing, manifest or payload cannot be read."""


class BundleTooLargeError(BundleError):
    """The bundle, or its declared uncompressed payload, is above the configured limit."""


class UnknownBankError(BundleError):
    """The manifest names a bank that is not an active member."""


class BundleSignatureError(BundleError):
    """The manifest signature is not valid for the bank's current signing key."""


class BundleReplayError(BundleError):
    """The bank already contributed a bundle with this sequence number."""


class BundleOrderError(BundleError):
    """The sequence number skips ahead: earlier bundles of this bank are missing."""


class ManifestMismatchError(BundleError):
    """The payload differs from what the signed manifest says (sizes, hash, counts, roots)."""


@dataclass(frozen=True, slots=True)
class BundleLimits:
    """Size limits the platform enforces before doing any work."""

    max_bundle_bytes: int = 1 << 30
    max_plain_bytes: int = 4 << 30


@dataclass(frozen=True, slots=True)
class PackedBundle:
    """A bundle ready to send, with its manifest."""

    data: bytes
    manifest: Manifest
    signature: bytes
    record_leaf_hashes: bytes


@dataclass(frozen=True, slots=True)
class OpenedBundle:
    """A bundle whose signature, sequence and manifest all checked out."""

    manifest: Manifest
    signature: bytes
    records: pa.Table
    statements: pa.Table
    record_leaf_hashes: bytes
    statement_leaf_hashes: bytes


def _info(bank_id: str, seq: int) -> bytes:
    return f"flowbureau/bundle/v1\n{bank_id}\n{seq}".encode()


def _ipc(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def batch_period(records: pa.Table, statements: pa.Table) -> tuple[date, date]:
    """The dates a batch covers: its statements' periods and its records' UTC booking dates."""
    lows: list[date] = []
    highs: list[date] = []
    for column in (statements.column("period_start"), statements.column("period_end")):
        lows.append(pc.min(column).as_py())
        highs.append(pc.max(column).as_py())
    booked = pc.cast(records.column("booked_at"), pa.date32())
    lows.append(pc.min(booked).as_py())
    highs.append(pc.max(booked).as_py())
    known_lows = [d for d in lows if d is not None]
    known_highs = [d for d in highs if d is not None]
    if not known_lows or not known_highs:
        raise BundleError("the batch has no records and no statement period: nothing to contribute")
    return min(known_lows), max(known_highs)


def pack_bundle(
    records: pa.Table,
    statements: pa.Table,
    *,
    bank_id: str,
    seq: int,
    contract: Contract,
    signing_key: Ed25519PrivateKey,
    platform_box_key: bytes,
    created_at: datetime | None = None,
    level: int = 1,
) -> PackedBundle:
    """Build, seal and sign a bundle (the bank node's side)."""
    records = RECORD_LEAF.check(records, what="records")
    statements = STATEMENT_LEAF.check(statements, what="statements")
    period_start, period_end = batch_period(records, statements)
    public = x25519_public(platform_box_key)

    def seal() -> tuple[int, int, bytes]:
        rec_ipc, st_ipc = _ipc(records), _ipc(statements)
        # one copy of the IPC buffers into the payload (not one per concatenation)
        plain = b"".join(
            [struct.pack(">Q", rec_ipc.size), rec_ipc, struct.pack(">Q", st_ipc.size), st_ipc]
        )
        compressed = zstandard.ZstdCompressor(level=level, write_content_size=True).compress(plain)
        sealed = SUITE.encrypt(compressed, public, info=_info(bank_id, seq))
        return len(plain), len(compressed), sealed

    # Arrow IPC and zstd release the GIL: serialise, compress and seal in a second thread
    # while this one encodes and hashes the leaves (Python-bound), instead of one after the other
    with ThreadPoolExecutor(max_workers=1) as pool:
        sealing = pool.submit(seal)
        leaves = RECORD_LEAF.leaf_hashes(records)
        record_root = merkle_root(leaves)
        statement_root = merkle_root(STATEMENT_LEAF.leaf_hashes(statements))
        plain_size, compressed_size, sealed = sealing.result()
    manifest = Manifest(
        bank_id=bank_id,
        seq=seq,
        period_start=period_start,
        period_end=period_end,
        record_count=records.num_rows,
        record_root=record_root,
        statement_count=statements.num_rows,
        statement_root=statement_root,
        contract_version=contract.version,
        contract_hash=contract.hash,
        plain_size=plain_size,
        compressed_size=compressed_size,
        sealed_size=len(sealed),
        sealed_sha256=hashlib.sha256(sealed).digest(),
        created_at=(created_at or datetime.now(UTC)).replace(microsecond=0),
    )
    signature = manifest.sign(signing_key)
    manifest_bytes = manifest.to_bytes()
    data = MAGIC + struct.pack(">I", len(manifest_bytes)) + manifest_bytes + signature + sealed
    return PackedBundle(data, manifest, signature, leaves)


def _frame(data: bytes, source: str) -> tuple[Manifest, bytes, bytes]:
    def malformed(message: str, path: str | None = None) -> MalformedBundleError:
        return MalformedBundleError(message, file=source, path=path)

    if not data.startswith(MAGIC):
        raise malformed("not a flowbureau bundle (bad magic bytes)")
    offset = len(MAGIC)
    if len(data) < offset + 4:
        raise malformed("bundle ends before its manifest length")
    (length,) = struct.unpack_from(">I", data, offset)
    offset += 4
    end = offset + length
    if len(data) < end + _SIGNATURE_SIZE + _HPKE_ENC_SIZE + _AEAD_TAG_SIZE:
        raise malformed("bundle is shorter than its manifest, signature and payload")
    try:
        manifest = Manifest.from_json(parse_canonical(data[offset:end], what="manifest"))
    except NonCanonicalError as exc:
        raise malformed(exc.message, exc.location.path or "manifest") from None
    signature = data[end : end + _SIGNATURE_SIZE]
    return manifest, signature, data[end + _SIGNATURE_SIZE :]


def open_bundle(
    data: bytes,
    *,
    box_key: X25519PrivateKey,
    signing_key_of: Callable[[str], bytes | None],
    next_seq: Callable[[str], int],
    limits: BundleLimits | None = None,
    source: str = "<bundle>",
) -> OpenedBundle:
    """Check and open a bundle on the platform (see the module docstring for the order).

    ``signing_key_of(bank_id)`` gives the bank's current raw Ed25519 key (``None`` if it is not
    an active contributing member); ``next_seq(bank_id)`` the sequence number expected next.
    """
    limits = limits or BundleLimits()
    if len(data) > limits.max_bundle_bytes:
        raise BundleTooLargeError(
            f"bundle of {len(data)} bytes is above the limit of {limits.max_bundle_bytes}",
            file=source,
        )
    manifest, signature, sealed = _frame(data, source)
    where = f"{source} ({manifest.bank_id} #{manifest.seq})"
    key = signing_key_of(manifest.bank_id)
    if key is None:
        raise UnknownBankError(
            f"{manifest.bank_id} is not an active contributing member",
            file=where,
            path="manifest.bank_id",
        )
    if not manifest.verify(key, signature):
        raise BundleSignatureError(
            f"manifest signature is not valid for {manifest.bank_id}'s signing key", file=where
        )
    expected = next_seq(manifest.bank_id)
    if manifest.seq < expected:
        raise BundleReplayError(
            f"sequence {manifest.seq} was already used (next is {expected})",
            file=where,
            path="manifest.seq",
        )
    if manifest.seq > expected:
        raise BundleOrderError(
            f"sequence {manifest.seq} skips ahead (next is {expected})",
            file=where,
            path="manifest.seq",
        )
    _check_sealed(manifest, sealed, limits, where)
    try:
        compressed = SUITE.decrypt(sealed, box_key, info=_info(manifest.bank_id, manifest.seq))
    except Exception:  # the library raises InvalidTag or ValueError; both mean "cannot open"
        raise MalformedBundleError(
            "payload does not decrypt with the platform key (sealed to another key?)", file=where
        ) from None
    plain = _decompress(manifest, compressed, where)
    records, statements = _tables(plain, where)
    leaves = RECORD_LEAF.leaf_hashes(records)
    statement_leaves = STATEMENT_LEAF.leaf_hashes(statements)
    _check_contents(
        manifest,
        records=records,
        statements=statements,
        leaves=leaves,
        statement_leaves=statement_leaves,
        where=where,
    )
    return OpenedBundle(manifest, signature, records, statements, leaves, statement_leaves)


def _check_sealed(manifest: Manifest, sealed: bytes, limits: BundleLimits, where: str) -> None:
    if len(sealed) != manifest.sealed_size:
        raise ManifestMismatchError(
            f"sealed payload is {len(sealed)} bytes, the manifest says {manifest.sealed_size}",
            file=where,
            path="manifest.sizes.sealed",
        )
    if hashlib.sha256(sealed).digest() != manifest.sealed_sha256:
        raise ManifestMismatchError(
            "sealed payload SHA-256 differs from the manifest's",
            file=where,
            path="manifest.sealed_sha256",
        )
    if manifest.plain_size > limits.max_plain_bytes:
        raise BundleTooLargeError(
            f"declared payload of {manifest.plain_size} bytes is above the limit of "
            f"{limits.max_plain_bytes}",
            file=where,
            path="manifest.sizes.plain",
        )


def _decompress(manifest: Manifest, compressed: bytes, where: str) -> bytes:
    if len(compressed) != manifest.compressed_size:
        raise ManifestMismatchError(
            f"compressed payload is {len(compressed)} bytes, the manifest says "
            f"{manifest.compressed_size}",
            file=where,
            path="manifest.sizes.compressed",
        )
    try:
        declared = zstandard.frame_content_size(compressed)
        if declared != manifest.plain_size:
            raise ManifestMismatchError(
                f"zstd frame declares {declared} bytes, the manifest says {manifest.plain_size}",
                file=where,
                path="manifest.sizes.plain",
            )
        plain = zstandard.ZstdDecompressor().decompress(compressed, max_output_size=declared)
    except zstandard.ZstdError as exc:
        raise MalformedBundleError(f"payload is not a zstd frame: {exc}", file=where) from None
    if len(plain) != manifest.plain_size:
        raise ManifestMismatchError(
            f"payload is {len(plain)} bytes, the manifest says {manifest.plain_size}",
            file=where,
            path="manifest.sizes.plain",
        )
    return plain


def _tables(plain: bytes, where: str) -> tuple[pa.Table, pa.Table]:
    tables: list[pa.Table] = []
    offset = 0
    payload = pa.py_buffer(plain)  # streams are read from slices of it, without copies
    try:
        for what, fmt in (("records", RECORD_LEAF), ("statements", STATEMENT_LEAF)):
            (length,) = struct.unpack_from(">Q", plain, offset)
            offset += 8
            if offset + length > len(plain):
                raise ValueError(f"{what} stream runs past the payload")
            table = pa.ipc.open_stream(payload.slice(offset, length)).read_all()
            table.validate(full=True)
            tables.append(fmt.check(table, what=what))
            offset += length
    except RecordSchemaError as exc:
        raise MalformedBundleError(exc.message, file=where, field=exc.field) from None
    except (ValueError, struct.error, pa.ArrowException) as exc:
        raise MalformedBundleError(
            f"payload is not two Arrow IPC streams: {exc}", file=where
        ) from None
    if offset != len(plain):
        raise MalformedBundleError("payload has trailing bytes after the statements", file=where)
    return tables[0], tables[1]


def _check_contents(
    manifest: Manifest,
    *,
    records: pa.Table,
    statements: pa.Table,
    leaves: bytes,
    statement_leaves: bytes,
    where: str,
) -> None:
    checks = (
        ("records.count", records.num_rows == manifest.record_count),
        ("statements.count", statements.num_rows == manifest.statement_count),
        ("records.root", merkle_root(leaves) == manifest.record_root),
        ("statements.root", merkle_root(statement_leaves) == manifest.statement_root),
    )
    for field, ok in checks:
        if not ok:
            raise ManifestMismatchError(
                f"the payload's {field.replace('.', ' ')} differs from the manifest",
                file=where,
                path=f"manifest.{field}",
            )
