"""Bundles: pack/open round trip and every rejection, with nothing stored on refusal."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from flowbureau.errors import BundleError, InputError
from flowbureau.ledger.consortium import Ledger
from flowbureau.ledger.log import ConsortiumLog, InMemoryLogStore
from flowbureau.ledger.manifest import Manifest
from flowbureau.ledger.sample import sample_batch
from flowbureau.transport.bundle import (
    MAGIC,
    BundleLimits,
    BundleOrderError,
    BundleReplayError,
    BundleSignatureError,
    BundleTooLargeError,
    MalformedBundleError,
    ManifestMismatchError,
    UnknownBankError,
    open_bundle,
    pack_bundle,
)
from flowbureau.transport.keys import BankKeys, Keystore, PlatformKeys, raw_public

NOW = datetime(2024, 3, 1, tzinfo=UTC)


class Setup:
    def __init__(self, root: Path) -> None:
        self.ledger = Ledger(InMemoryLogStore(), Keystore(root / "keys"), clock=lambda: NOW)
        self.ledger.found(["BANK01", "BANK02"])
        self.log: ConsortiumLog = self.ledger.log
        self.bank = self.ledger.keystore.bank("BANK01")
        self.records, self.statements = sample_batch("BANK01", records=25, seed=4)

    def pack(
        self, *, seq: int = 1, keys: BankKeys | None = None, box: bytes | None = None
    ) -> bytes:
        return pack_bundle(
            self.records,
            self.statements,
            bank_id="BANK01",
            seq=seq,
            contract=self.log.membership.contract,
            signing_key=(keys or self.bank).signing,
            platform_box_key=box or self.log.membership.platform_box_key,
            created_at=NOW,
        ).data


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def _split(data: bytes) -> tuple[Manifest, bytes, bytes]:
    from flowbureau.ledger.canonical import parse_canonical

    (length,) = struct.unpack_from(">I", data, len(MAGIC))
    start = len(MAGIC) + 4
    manifest = Manifest.from_json(parse_canonical(data[start : start + length]))
    return manifest, data[start + length : start + length + 64], data[start + length + 64 :]


def _resign(data: bytes, keys: BankKeys, sealed: bytes | None = None, **changes: Any) -> bytes:
    """The same bundle with manifest fields changed and validly re-signed by the bank."""
    manifest, _, payload = _split(data)
    manifest = replace(manifest, **changes)
    body = manifest.to_bytes()
    return (
        MAGIC
        + struct.pack(">I", len(body))
        + body
        + manifest.sign(keys.signing)
        + (sealed or payload)
    )


def test_round_trip_keeps_tables_and_binds_the_manifest(setup: Setup) -> None:
    data = setup.pack()
    platform = setup.ledger.keystore.platform()
    opened = open_bundle(
        data,
        box_key=platform.box,
        signing_key_of=lambda b: setup.bank.public()["signing"] if b == "BANK01" else None,
        next_seq=lambda b: 1,
    )
    assert opened.records.equals(setup.records)
    assert opened.statements.equals(setup.statements)
    manifest = opened.manifest
    assert (manifest.bank_id, manifest.seq, manifest.record_count) == ("BANK01", 1, 25)
    assert manifest.sealed_size == len(data) - len(MAGIC) - 4 - len(manifest.to_bytes()) - 64
    assert manifest.compressed_size < manifest.plain_size
    assert setup.records["description_raw"][0].as_py().encode() not in data  # sealed
    receipt = setup.log.admit(data)
    assert receipt.index == 1
    assert setup.log.next_seq("BANK01") == 2


def _refused(
    setup: Setup, data: bytes, error: type[BundleError], match: str | None, **kw: Any
) -> BundleError:
    size, seq = setup.log.store.size(), setup.log.next_seq("BANK01")
    checkpoints = setup.log.store.checkpoint_sizes()
    log = (
        setup.log
        if not kw
        else ConsortiumLog(
            setup.log.store,
            log_key=setup.ledger.keystore.platform().log,
            box_key=setup.ledger.keystore.platform().box,
            **kw,
        )
    )
    with pytest.raises(error, match=match) as info:
        log.admit(data, source="upload-7")
    assert isinstance(info.value, InputError)
    assert info.value.file is not None
    assert "upload-7" in info.value.file
    assert setup.log.store.size() == size  # nothing stored
    assert setup.log.next_seq("BANK01") == seq
    assert setup.log.store.checkpoint_sizes() == checkpoints
    return info.value


def test_replayed_bundle(setup: Setup) -> None:
    data = setup.pack()
    setup.log.admit(data)
    error = _refused(setup, data, BundleReplayError, "sequence 1 was already used")
    assert error.location.path == "manifest.seq"


def test_reordered_bundle(setup: Setup) -> None:
    _refused(setup, setup.pack(seq=2), BundleOrderError, r"sequence 2 skips ahead \(next is 1\)")


def test_oversize_bundle_and_oversize_declared_payload(setup: Setup) -> None:
    data = setup.pack()
    _refused(
        setup,
        data,
        BundleTooLargeError,
        "above the limit",
        limits=BundleLimits(max_bundle_bytes=1000),
    )
    error = _refused(
        setup,
        data,
        BundleTooLargeError,
        "declared payload",
        limits=BundleLimits(max_plain_bytes=1000),
    )
    assert error.location.path == "manifest.sizes.plain"


def test_wrongly_signed_bundles(setup: Setup) -> None:
    _refused(
        setup, setup.pack(keys=BankKeys.generate()), BundleSignatureError, "not valid for BANK01"
    )
    data = setup.pack()
    manifest, signature, payload = _split(data)
    edited = replace(manifest, seq=1, record_count=manifest.record_count + 1).to_bytes()
    tampered = MAGIC + struct.pack(">I", len(edited)) + edited + signature + payload
    _refused(setup, tampered, BundleSignatureError, "signature")


def test_unknown_bank(setup: Setup) -> None:
    stranger = BankKeys.generate()
    data = _resign(setup.pack(), stranger, bank_id="BANK99")
    _refused(setup, data, UnknownBankError, "BANK99 is not an active")


@pytest.mark.parametrize(
    "make",
    [
        lambda d: d.replace(MAGIC, b"FLOWBUREAU-BUNDLE/2\n", 1),
        lambda d: d[: len(MAGIC) + 2],
        lambda d: d[: len(MAGIC)] + struct.pack(">I", 10**6) + d[len(MAGIC) + 4 :],
        lambda d: d[: len(MAGIC) + 4] + b" " + d[len(MAGIC) + 5 :],  # manifest not JSON
        lambda d: b"",
    ],
    ids=["magic", "truncated", "length", "manifest", "empty"],
)
def test_malformed_bundles(setup: Setup, make: Callable[[bytes], bytes]) -> None:
    _refused(setup, make(setup.pack()), MalformedBundleError, None)


def test_sealed_to_another_platform_or_bound_to_another_sequence(setup: Setup) -> None:
    other = raw_public(PlatformKeys.generate().box)
    _refused(setup, setup.pack(box=other), MalformedBundleError, "does not decrypt")
    setup.log.admit(setup.pack(seq=1))
    # the payload sealed for #1 cannot be replayed under a re-signed manifest for #2:
    # HPKE's info binds bank and sequence
    moved = _resign(setup.pack(seq=1), setup.bank, seq=2)
    _refused(setup, moved, MalformedBundleError, "does not decrypt")


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"record_count": 26}, "manifest.records.count"),
        ({"statement_count": 1}, "manifest.statements.count"),
        ({"record_root": bytes(32)}, "manifest.records.root"),
        ({"statement_root": bytes(32)}, "manifest.statements.root"),
        ({"plain_size": 1234}, "manifest.sizes.plain"),
        ({"compressed_size": 99}, "manifest.sizes.compressed"),
        ({"sealed_size": 5}, "manifest.sizes.sealed"),
        ({"sealed_sha256": bytes(32)}, "manifest.sealed_sha256"),
    ],
)
def test_manifest_mismatches(setup: Setup, changes: dict[str, Any], path: str) -> None:
    data = _resign(setup.pack(), setup.bank, **changes)
    error = _refused(setup, data, ManifestMismatchError, None)
    assert error.location.path == path


def test_payload_edited_in_transit(setup: Setup) -> None:
    data = bytearray(setup.pack())
    data[-10] ^= 0x01
    _refused(setup, bytes(data), ManifestMismatchError, "SHA-256")


def test_bundle_of_the_wrong_schema_is_malformed(setup: Setup) -> None:
    records = setup.records.drop_columns(["ingest_id"])
    with pytest.raises(InputError, match="ingest_id"):
        pack_bundle(
            records,
            setup.statements,
            bank_id="BANK01",
            seq=1,
            contract=setup.log.membership.contract,
            signing_key=setup.bank.signing,
            platform_box_key=setup.log.membership.platform_box_key,
        )
    empty = pa.Table.from_pylist([], schema=setup.records.schema)
    with pytest.raises(BundleError, match="nothing to contribute"):
        pack_bundle(
            empty,
            setup.statements.slice(0, 0),
            bank_id="BANK01",
            seq=1,
            contract=setup.log.membership.contract,
            signing_key=setup.bank.signing,
            platform_box_key=setup.log.membership.platform_box_key,
        )
