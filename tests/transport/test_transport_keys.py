"""Key files: 0600 permissions, optional passphrase encryption, clear refusals."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from flowbureau.ledger.canonical import unb64
from flowbureau.transport.keys import BankKeys, KeyFileError, Keystore, PlatformKeys


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_keys_are_private_and_round_trip(tmp_path: Path) -> None:
    keys = BankKeys.generate()
    directory = tmp_path / "bank"
    keys.save(directory)
    assert _mode(directory) == 0o700
    for name in ("signing", "witness", "box"):
        assert _mode(directory / f"{name}.key") == 0o600
    loaded = BankKeys.load(directory)
    assert loaded.public() == keys.public()
    public = json.loads((directory / "public.json").read_text())
    assert {k: unb64(v, size=32) for k, v in public.items()} == keys.public()
    assert b"PRIVATE KEY" in (directory / "signing.key").read_bytes()


def test_passphrase_encrypts_and_is_required(tmp_path: Path) -> None:
    keys = PlatformKeys.generate()
    keys.save(tmp_path / "p", passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "p" / "log.key").read_bytes()
    assert PlatformKeys.load(tmp_path / "p", passphrase=b"correct horse").public() == keys.public()
    with pytest.raises(KeyFileError, match="passphrase is needed") as missing:
        PlatformKeys.load(tmp_path / "p")
    assert missing.value.file == str(tmp_path / "p" / "log.key")
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        PlatformKeys.load(tmp_path / "p", passphrase=b"wrong")


def test_refuses_readable_files_and_overwrites(tmp_path: Path) -> None:
    keys = BankKeys.generate()
    keys.save(tmp_path / "b")
    os.chmod(tmp_path / "b" / "box.key", 0o644)
    with pytest.raises(KeyFileError, match="accessible by group or others") as info:
        BankKeys.load(tmp_path / "b")
    assert info.value.file == str(tmp_path / "b" / "box.key")
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        BankKeys.generate().save(tmp_path / "b")
    with pytest.raises(KeyFileError, match="not found"):
        BankKeys.load(tmp_path / "nothing")


def test_wrong_key_type_is_named(tmp_path: Path) -> None:
    keys = PlatformKeys.generate()
    keys.save(tmp_path / "p")
    os.replace(tmp_path / "p" / "box.key", tmp_path / "p" / "log.key.x")
    os.replace(tmp_path / "p" / "log.key", tmp_path / "p" / "box.key")
    os.replace(tmp_path / "p" / "log.key.x", tmp_path / "p" / "log.key")
    with pytest.raises(KeyFileError, match="not Ed25519PrivateKey"):
        PlatformKeys.load(tmp_path / "p")


def test_keystore_creates_on_first_use_then_reuses(tmp_path: Path) -> None:
    store = Keystore(tmp_path / "keys", passphrase=b"pw")
    first = store.bank("BANK01")
    assert store.has_bank("BANK01")
    assert not store.has_bank("BANK02")
    assert Keystore(tmp_path / "keys", passphrase=b"pw").bank("BANK01").public() == first.public()
    assert store.platform().public() == store.platform().public()
    with pytest.raises(KeyFileError, match="bank id"):
        store.bank("../etc")
