"""The vault keeps clear account numbers only encrypted, bound to their pseudonym."""

from __future__ import annotations

import pytest

from flowbureau.cleaning.identifiers import account_pseudonym, pseudonym_key
from flowbureau.errors import IntegrityError, NotFoundError
from flowbureau.storage import vault
from flowbureau.storage.warehouse import Warehouse

NUMBER = "6222021234567890123"


def test_put_then_get_round_trips(warehouse: Warehouse) -> None:
    pseudonym = account_pseudonym(NUMBER, pseudonym_key())
    assert pseudonym is not None
    assert vault.put({pseudonym: NUMBER}, warehouse=warehouse) == 1
    assert vault.get(pseudonym, warehouse=warehouse) == NUMBER
    # idempotent: an entry already stored is not written again
    assert vault.put({pseudonym: NUMBER}, warehouse=warehouse) == 0
    assert len(warehouse.manifest().files("vault")) == 1


def test_stored_bytes_never_contain_the_clear_number(warehouse: Warehouse) -> None:
    pseudonym = account_pseudonym(NUMBER, pseudonym_key())
    assert pseudonym is not None
    vault.put({pseudonym: NUMBER}, warehouse=warehouse)
    files = list(warehouse.root.rglob("*"))
    stored = b"".join(p.read_bytes() for p in files if p.is_file())
    assert pseudonym.encode() in stored  # the lookup key is there ...
    assert NUMBER.encode() not in stored  # ... the number is not, in any form
    assert NUMBER.encode("utf-16-le") not in stored


def test_a_ciphertext_only_opens_under_its_own_pseudonym() -> None:
    cipher = vault.VaultCipher("k" * 40)
    nonce, sealed = cipher.seal("pseudonym-a", NUMBER)
    assert cipher.open("pseudonym-a", nonce, sealed) == NUMBER
    with pytest.raises(IntegrityError):
        cipher.open("pseudonym-b", nonce, sealed)
    with pytest.raises(IntegrityError):
        vault.VaultCipher("other key material").open("pseudonym-a", nonce, sealed)


def test_unknown_pseudonym_is_not_found(warehouse: Warehouse) -> None:
    with pytest.raises(NotFoundError):
        vault.get("0" * 32, warehouse=warehouse)
