"""Canonical JSON, manifests and log entries: the documented worked example and strict parsing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flowbureau.ledger.canonical import NonCanonicalError, canonical_json, parse_canonical
from flowbureau.ledger.contract import DEFAULT_CONTRACT
from flowbureau.ledger.entry import BatchEntry, parse_entry
from flowbureau.ledger.manifest import Manifest

# docs/ledger.md, "Batch entry": a one-record batch whose record is the record-leaf example.
EXAMPLE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
EXAMPLE_PUBLIC = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
EXAMPLE_ENTRY = (
    '{"kind":"batch","manifest":{"bank_id":"BANK01","contract":{"hash":"24f64845b88f046c07885'
    '65870c5a2d3dc1c3be1855a6379cc07df4b9f3ff5fc","version":"1.2.0"},"created_at":"2024-02-01'
    'T08:00:00Z","period":{"end":"2024-01-31","start":"2024-01-01"},"records":{"count":1,"roo'
    't":"df604271396bd1b600fb2fd5802aabe415e0c9d6bd971a37dde076835afcaf9c"},"sealed_sha256":"'
    'c9d0036bed6744bcdf692fc980d8717d7e5f5a4f4e8266b4a84982602fb1cd09","seq":1,"sizes":{"comp'
    'ressed":1024,"plain":4096,"sealed":1072},"statements":{"count":1,"root":"000000000000000'
    '0000000000000000000000000000000000000000000000000"},"v":1},"signature":"ZkDXRkKtYk9n+Yon'
    '5pR0dbiWrmlCd8RRrx4oT81lNzBq3u8u6Kf3DBPGiyqOIS2r400FznqVnEaqfc4HPZboBw==","v":1}'
)
EXAMPLE_ENTRY_LEAF = "3a873c76b51e27888383321b4802cd4b02c492e6e2e511f8fb25e2d47d1ef897"


def example_manifest() -> Manifest:
    return Manifest(
        bank_id="BANK01",
        seq=1,
        period_start=date(2024, 1, 1),
        period_end=date(2024, 1, 31),
        record_count=1,
        record_root=bytes.fromhex(
            "df604271396bd1b600fb2fd5802aabe415e0c9d6bd971a37dde076835afcaf9c"
        ),
        statement_count=1,
        statement_root=bytes(32),
        contract_version=DEFAULT_CONTRACT.version,
        contract_hash=DEFAULT_CONTRACT.hash,
        plain_size=4096,
        compressed_size=1024,
        sealed_size=1072,
        sealed_sha256=hashlib.sha256(b"sealed").digest(),
        created_at=datetime(2024, 2, 1, 8, tzinfo=UTC),
    )


def test_worked_example_entry_bytes_and_leaf() -> None:
    manifest = example_manifest()
    assert EXAMPLE_KEY.public_key().public_bytes_raw().hex() == EXAMPLE_PUBLIC
    entry = BatchEntry(manifest, manifest.sign(EXAMPLE_KEY))
    assert entry.to_bytes().decode() == EXAMPLE_ENTRY
    assert hashlib.sha256(b"\x00" + entry.to_bytes()).hexdigest() == EXAMPLE_ENTRY_LEAF
    # the signed message is the domain line followed by the manifest's canonical JSON
    body = json.dumps(
        json.loads(EXAMPLE_ENTRY)["manifest"], sort_keys=True, separators=(",", ":")
    ).encode()
    assert manifest.signing_message() == b"flowbureau/manifest/v1\n" + body
    parsed = parse_entry(EXAMPLE_ENTRY.encode())
    assert parsed == entry
    assert isinstance(parsed, BatchEntry)
    assert parsed.manifest.verify(bytes.fromhex(EXAMPLE_PUBLIC), parsed.signature)


def test_the_documentation_shows_this_exact_entry() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "ledger.md").read_text("utf-8")
    assert EXAMPLE_ENTRY in docs
    assert EXAMPLE_ENTRY_LEAF in docs
    assert EXAMPLE_PUBLIC in docs


def test_canonical_json_rules() -> None:
    assert (
        canonical_json({"b": 1, "a": [True, None, "é\n"]})
        == b'{"a":[true,null,"\xc3\xa9\\n"],"b":1}'
    )
    for bad in ({"x": 1.5}, {"x": 2**53}, {1: "x"}, {"ключ": 1}):
        with pytest.raises(NonCanonicalError):
            canonical_json(bad)
    for text in (b'{"a": 1}', b'{"b":1,"a":2}', b'{"a":1,"a":1}', b'{"a":1.0}', b"\xff"):
        with pytest.raises(NonCanonicalError):
            parse_canonical(text)
    assert parse_canonical(b'{"a":[1,2]}') == {"a": [1, 2]}


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["manifest"].pop("seq"), "entry.manifest"),
        (lambda d: d["manifest"].update(seq=0), "entry.manifest.seq"),
        (lambda d: d["manifest"].update(bank_id="BANK 01"), "entry.manifest.bank_id"),
        (lambda d: d["manifest"]["records"].update(root="AB" * 32), "entry.manifest.records.root"),
        (
            lambda d: d["manifest"].update(created_at="2024-02-01T08:00:00+00:00"),
            "entry.manifest.created_at",
        ),
        (lambda d: d["manifest"]["period"].update(start="2024-1-1"), "entry.manifest.period.start"),
        (lambda d: d["manifest"]["contract"].update(version="1.0"), "entry.manifest.contract"),
        (lambda d: d.update(kind="transfer"), "entry.kind"),
        (lambda d: d.update(extra=1), "entry"),
    ],
)
def test_entries_are_parsed_strictly(mutate: object, path: str) -> None:
    data = json.loads(EXAMPLE_ENTRY)
    mutate(data)  # type: ignore[operator]
    with pytest.raises(NonCanonicalError) as info:
        parse_entry(canonical_json(data))
    assert info.value.location.path == path


def test_manifest_signature_covers_every_field() -> None:
    manifest = example_manifest()
    signature = manifest.sign(EXAMPLE_KEY)
    public = EXAMPLE_KEY.public_key().public_bytes_raw()
    assert manifest.verify(public, signature)
    for change in ({"seq": 2}, {"record_count": 2}, {"plain_size": 4097}, {"bank_id": "BANK02"}):
        assert not replace(manifest, **change).verify(public, signature)  # type: ignore[arg-type]
