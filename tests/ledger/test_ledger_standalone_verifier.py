"""An independent verifier, written from docs/ledger.md alone, checks ``ledger prove`` output.

Nothing from ``flowbureau.ledger`` is imported: the record leaf bytes (column order read from the
documentation itself), RFC 9162 inclusion proofs, canonical entries, C2SP signed notes, verifier
keys and cosignatures are re-implemented here with ``hashlib`` and ``cryptography`` only. The
only inputs are ``flowbureau ledger keys --json``, ``flowbureau ledger prove TX --json`` and the
stored record (read from the warehouse's Parquet file) - so the documentation is sufficient to
check a proof.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from ledger_world import small_world

from flowbureau.config import get_settings
from flowbureau.storage.warehouse import Warehouse

DOCS = Path(__file__).parents[2] / "docs" / "ledger.md"
CLI = "from flowbureau.cli import main; main()"


def documented_columns() -> list[str]:
    """The record leaf's column order, as the documentation states it."""
    text = DOCS.read_text("utf-8").replace("\n", " ")
    match = re.search(r"The column order is: (.+?)\.", text)
    assert match, "docs/ledger.md must state the record column order"
    return [c.strip() for c in match.group(1).split(",")]


def field(value: bytes | None) -> bytes:
    return b"-:," if value is None else str(len(value)).encode() + b":" + value + b","


def value_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, datetime):
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return str((delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds).encode()
    if isinstance(value, date):
        return str((value - date(1970, 1, 1)).days).encode()
    if isinstance(value, list):
        return b"".join(field(value_bytes(item)) for item in value)
    return str(value).encode("utf-8")


def record_leaf(row: dict[str, Any]) -> bytes:
    return b"flowbureau/record/v1\n" + b"".join(
        field(value_bytes(row[name])) for name in documented_columns()
    )


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2, step by step."""
    assert 0 <= index < size
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        assert sn > 0
        if fn & 1 or fn == sn:
            r = node(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0
    return r


def parse_vkey(vkey: str) -> tuple[str, bytes, int, bytes]:
    """C2SP signed-note verifier key: name+hex(key id)+base64(type || public key)."""
    name, key_id, material = vkey.split("+", 2)  # base64 may contain "+", names may not
    raw = base64.b64decode(material)
    sig_type, public = raw[0], raw[1:]
    expected = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public).digest()[:4]
    assert expected.hex() == key_id
    return name, expected, sig_type, public


def check_note(note: str, keys: dict[str, Any]) -> tuple[str, int, bytes, int]:
    """Verify a cosigned checkpoint; return (origin, size, root, cosigners)."""
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    origin, size, root_b64 = text.rstrip("\n").split("\n")[:3]
    log_name, log_id, log_type, log_public = parse_vkey(keys["log"])
    assert (log_name, log_type) == (origin, 0x01)
    witnesses = {parse_vkey(v)[0]: parse_vkey(v) for v in keys["witnesses"]}
    log_signed, cosigners = False, set()
    for line in signatures.strip("\n").split("\n"):
        dash, name, payload = line.split(" ")
        assert dash == "\u2014"
        blob = base64.b64decode(payload)
        key_id, signature = blob[:4], blob[4:]
        if name == log_name and key_id == log_id:
            Ed25519PublicKey.from_public_bytes(log_public).verify(signature, text.encode())
            log_signed = True
        elif name in witnesses and key_id == witnesses[name][1]:
            assert witnesses[name][2] == 0x04
            (timestamp,) = struct.unpack(">Q", signature[:8])
            message = f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()
            Ed25519PublicKey.from_public_bytes(witnesses[name][3]).verify(signature[8:], message)
            cosigners.add(name)
    assert log_signed
    return origin, int(size), base64.b64decode(root_b64), len(cosigners)


def verify_proof(proof: dict[str, Any], keys: dict[str, Any], record: dict[str, Any]) -> None:
    leaf = leaf_hash(record_leaf(record))
    assert leaf.hex() == proof["leaf_hash"]
    batch = proof["batch"]
    batch_root = root_from_inclusion(
        leaf, batch["index"], batch["size"], [bytes.fromhex(p) for p in batch["proof"]]
    )
    assert batch_root.hex() == batch["root"]
    entry = base64.b64decode(proof["entry"])
    manifest = json.loads(entry)["manifest"]
    assert manifest["records"] == {"count": batch["size"], "root": batch["root"]}
    assert (
        json.dumps(
            json.loads(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        == entry
    )  # canonical JSON
    log = proof["log"]
    log_root = root_from_inclusion(
        leaf_hash(entry), log["index"], log["size"], [bytes.fromhex(p) for p in log["proof"]]
    )
    assert log_root.hex() == log["root"]
    _, size, root, cosigners = check_note(proof["checkpoint"], keys)
    assert (size, root) == (log["size"], log_root)
    assert cosigners >= keys["quorum"]


def run(*args: str) -> str:
    """``flowbureau ARGS`` in a separate process; its stdout."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, check=True
    ).stdout


def test_a_proof_checks_out_with_the_documentation_and_public_keys_only() -> None:
    records = small_world()
    settings = get_settings()
    warehouse = Warehouse(settings.warehouse_dir)
    stored = [
        row
        for f in warehouse.manifest().files("transactions")
        for row in pq.read_table(warehouse.root / f.path).to_pylist()
    ]
    keys = json.loads(run("ledger", "keys", "--json"))
    assert set(keys) == {"log", "witnesses", "quorum"}
    checked = 0
    for row in (stored[0], stored[len(stored) // 2], stored[-1]):
        proof = json.loads(run("ledger", "prove", row["tx_id"], "--json"))
        assert set(proof) == {"leaf_hash", "batch", "entry", "log", "checkpoint"}
        verify_proof(proof, keys, row)
        checked += 1
    # a forged record (one byte of its description) does not check out
    forged = {**stored[0], "description_raw": stored[0]["description_raw"] + "!"}
    proof = json.loads(run("ledger", "prove", stored[0]["tx_id"], "--json"))
    try:
        verify_proof(proof, keys, forged)
    except AssertionError:
        pass
    else:
        raise AssertionError("a forged record passed the independent verifier")
    # a signature from another key does not verify
    bad = {**keys, "log": keys["witnesses"][0]}
    try:
        check_note(proof["checkpoint"], bad)
    except (AssertionError, InvalidSignature):
        pass
    else:
        raise AssertionError("a checkpoint verified under the wrong log key")
    assert checked == 3
    assert len(records) == 3
