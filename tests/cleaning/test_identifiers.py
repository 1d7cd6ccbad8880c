"""Pseudonyms and the content-based tx_id, checked against the documented definitions."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import pyarrow as pa

from flowbureau.cleaning.identifiers import (
    account_pseudonym,
    pseudonymise,
    statement_id,
    tx_id_sql,
)
from flowbureau.storage.duckdb_engine import DuckDBEngine


def test_pseudonym_is_keyed_hmac_of_the_normalised_number() -> None:
    key = b"k" * 32
    expected = hmac.new(key, b"6222021234", hashlib.sha256).hexdigest()[:32]
    assert account_pseudonym("6222 0212-34", key) == expected
    assert account_pseudonym("6222021234", b"another key") != expected
    assert account_pseudonym("", key) is None


def test_counterparty_pseudonym_equals_the_payee_account_id() -> None:
    key = b"k" * 32
    payee_account, _ = pseudonymise(pa.array(["6228 0000 3333 4444"]), key)
    payer_counterparty, clear = pseudonymise(pa.array(["6228000033334444", None]), key)
    assert payer_counterparty[0] == payee_account[0]
    assert payer_counterparty[1].as_py() is None
    assert clear == {payee_account[0].as_py(): "6228000033334444"}


def _reference_tx_id(fields: list[str | None], occurrence: int) -> str:
    """The definition in flowbureau.cleaning.identifiers, written out independently."""
    text = ""
    for value in [*fields, str(occurrence)]:
        field = value or ""
        text += f"{len(field.encode())}:{field}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def test_tx_id_sql_follows_the_documented_encoding() -> None:
    row = {
        "bank_id": "bank-a",
        "account_id": "acct",
        "local_date": date(2024, 1, 2),
        "amount_minor": -12345,
        "currency": "CNY",
        "reference": None,
        "end_to_end_id": "E2E",
        "counterparty_account": "cp",
        "counterparty_name_norm": "上海某某有限公司",
        "description": "支付货款:1",
        "occurrence": 1,
    }
    with DuckDBEngine() as engine:
        engine.register("r", pa.Table.from_pylist([row]))
        got = engine.query(f"SELECT {tx_id_sql()} AS t FROM r").column("t")[0].as_py()
    fields = [
        "bank-a",
        "acct",
        "2024-01-02",
        "-12345",
        "CNY",
        None,
        "E2E",
        "cp",
        "上海某某有限公司",
        "支付货款:1",
    ]
    assert got == _reference_tx_id(fields, 1)
    # moving a character between adjacent fields changes the id (length prefixes)
    shifted = [*fields[:-2], "上海某某有限公司支", "付货款:1"]
    assert _reference_tx_id(shifted, 1) != got


def test_statement_id_is_per_file_and_position() -> None:
    assert statement_id("a" * 64, 0) != statement_id("a" * 64, 1)
    assert statement_id("a" * 64, 0) == statement_id("a" * 64, 0)
    assert len(statement_id("a" * 64, 0)) == 32
