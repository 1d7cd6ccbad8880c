"""Record and statement leaf bytes: the documented worked example, injectivity, edits, schemas."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from flowbureau.ledger import records as records_module
from flowbureau.ledger.records import RECORD_LEAF, STATEMENT_LEAF, RecordSchemaError
from flowbureau.ledger.sample import sample_batch
from flowbureau.schema import STORED_TRANSACTION_SCHEMA

# The worked example of docs/ledger.md ("Record leaf").
EXAMPLE_ROW: dict[str, Any] = {
    "tx_id": "5f1c0c9e8a3b4d21",
    "bank_id": "BANK01",
    "account_id": "9f86d081884c7d65",
    "enterprise_id": "91310000MA0000000Y",
    "statement_id": "BANK01-st-1",
    "booked_at": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
    "value_date": date(2024, 1, 2),
    "amount_minor": -123456,
    "currency": "CNY",
    "balance_after_minor": 876544,
    "counterparty_name": "上海申华贸易有限公司",
    "counterparty_name_norm": "上海申华贸易有限公司",
    "counterparty_account": "2c26b46b68ffc68f",
    "counterparty_bank": None,
    "tx_type": "supplier_payment",
    "tx_code": "NTRF",
    "reference": "INV-7",
    "end_to_end_id": None,
    "description_raw": "货款",
    "source_file": "banks/BANK01/2024-01.csv",
    "source_location": "7",
    "file_sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "ingest_id": "ing-1",
    "quality_flags": ["outlier"],
}
EXAMPLE_LEAF_HEX = (
    "666c6f776275726561752f7265636f72642f76310a31363a356631633063396538613362346432312c363a42"
    "414e4b30312c31363a396638366430383138383463376436352c31383a39313331303030304d413030303030"
    "3030592c31313a42414e4b30312d73742d312c31363a313730343136343634353132333435362c353a313937"
    "32342c373a2d3132333435362c333a434e592c363a3837363534342c33303ae4b88ae6b5b7e794b3e58d8ee8"
    "b4b8e69893e69c89e99990e585ace58fb82c33303ae4b88ae6b5b7e794b3e58d8ee8b4b8e69893e69c89e999"
    "90e585ace58fb82c31363a326332366234366236386666633638662c2d3a2c31363a737570706c6965725f70"
    "61796d656e742c343a4e5452462c353a494e562d372c2d3a2c363ae8b4a7e6acbe2c32343a62616e6b732f42"
    "414e4b30312f323032342d30312e6373762c313a372c36343a65336230633434323938666331633134396166"
    "6266346338393936666239323432376165343165343634396239333463613439353939316237383532623835"
    "352c353a696e672d312c31303a373a6f75746c6965722c2c"
)
EXAMPLE_LEAF_HASH = "df604271396bd1b600fb2fd5802aabe415e0c9d6bd971a37dde076835afcaf9c"


def _reference_leaf(tag: str, schema: pa.Schema, row: dict[str, Any]) -> bytes:
    """docs/ledger.md's rules, written out independently of the vectorised encoder."""

    def field(value: bytes | None) -> bytes:
        return b"-:," if value is None else str(len(value)).encode() + b":" + value + b","

    def text(value: Any) -> bytes | None:
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
            return b"".join(field(text(item)) for item in value)
        return str(value).encode("utf-8")

    return tag.encode() + b"\n" + b"".join(field(text(row[f.name])) for f in schema)


def _table(row: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist([row], schema=STORED_TRANSACTION_SCHEMA)


def test_worked_example_bytes_and_hash() -> None:
    (leaf,) = RECORD_LEAF.encode(_table(EXAMPLE_ROW))
    assert leaf.hex() == EXAMPLE_LEAF_HEX
    assert leaf == _reference_leaf(RECORD_LEAF.tag, STORED_TRANSACTION_SCHEMA, EXAMPLE_ROW)
    assert hashlib.sha256(b"\x00" + leaf).hexdigest() == EXAMPLE_LEAF_HASH
    assert RECORD_LEAF.leaf_hashes(_table(EXAMPLE_ROW)).hex() == EXAMPLE_LEAF_HASH


def test_the_documentation_shows_these_exact_bytes() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "ledger.md").read_text("utf-8")
    assert EXAMPLE_LEAF_HEX in docs.replace("\n", "")
    assert EXAMPLE_LEAF_HASH in docs


def test_vectorised_encoder_matches_the_reference_on_many_rows() -> None:
    records, statements = sample_batch(records=70_000, accounts=4, seed=3)  # > one 65536 slice
    leaves = RECORD_LEAF.encode(records)
    rows = records.to_pylist()
    for i in (0, 1, 65_535, 65_536, 69_999, *range(100, 70_000, 997)):
        assert leaves[i] == _reference_leaf(RECORD_LEAF.tag, records.schema, rows[i]), i
    st_leaves = STATEMENT_LEAF.encode(statements)
    for leaf, row in zip(st_leaves, statements.to_pylist(), strict=True):
        assert leaf == _reference_leaf(STATEMENT_LEAF.tag, statements.schema, row)


EDITS: dict[str, Any] = {
    "tx_id": "5f1c0c9e8a3b4d22",
    "bank_id": "BANK02",
    "account_id": "9f86d081884c7d66",
    "enterprise_id": None,
    "statement_id": "BANK01-st-2",
    "booked_at": datetime(2024, 1, 2, 3, 4, 5, 123457, tzinfo=UTC),
    "value_date": date(2024, 1, 3),
    "amount_minor": -123457,
    "currency": "CNH",
    "balance_after_minor": None,
    "counterparty_name": "上海申华贸易有限公可",
    "counterparty_name_norm": "",
    "counterparty_account": "2c26b46b68ffc680",
    "counterparty_bank": "",
    "tx_type": "supplier_paymenu",
    "tx_code": "NTRG",
    "reference": "INV-8",
    "end_to_end_id": "-",
    "description_raw": "货 款",
    "source_file": "banks/BANK01/2024-01.csw",
    "source_location": "8",
    "file_sha256": "f3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "ingest_id": "ing-2",
    "quality_flags": ["outlies"],
}


@pytest.mark.parametrize("name", [f.name for f in STORED_TRANSACTION_SCHEMA])
def test_changing_any_stored_field_changes_the_leaf(name: str) -> None:
    base = RECORD_LEAF.leaf_hashes(_table(EXAMPLE_ROW))
    assert RECORD_LEAF.leaf_hashes(_table({**EXAMPLE_ROW, name: EDITS[name]})) != base


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"reference": "ab", "end_to_end_id": None}, {"reference": "a", "end_to_end_id": "b"}),
        ({"reference": None}, {"reference": ""}),
        ({"reference": "-:,"}, {"reference": None}),
        ({"quality_flags": ["a,b"]}, {"quality_flags": ["a", "b"]}),
        ({"quality_flags": []}, {"quality_flags": [""]}),
    ],
)
def test_encoding_is_injective_on_tricky_values(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert RECORD_LEAF.encode(_table({**EXAMPLE_ROW, **a})) != RECORD_LEAF.encode(
        _table({**EXAMPLE_ROW, **b})
    )


def test_schema_is_enforced_naming_the_field() -> None:
    table = _table(EXAMPLE_ROW)
    with pytest.raises(RecordSchemaError) as missing:
        RECORD_LEAF.encode(table.drop_columns(["ingest_id"]))
    assert missing.value.field == "ingest_id"
    with pytest.raises(RecordSchemaError, match="does not commit to") as extra:
        RECORD_LEAF.encode(table.append_column("secret", pa.array(["x"])))
    assert extra.value.field == "secret"
    wrong = table.set_column(
        table.schema.get_field_index("amount_minor"), "amount_minor", pa.array([1.5])
    )
    with pytest.raises(RecordSchemaError, match="amount_minor"):
        RECORD_LEAF.encode(wrong)


def test_large_strings_and_chunking_do_not_change_leaves() -> None:
    records, _ = sample_batch(records=30, seed=9)
    large = records.cast(
        pa.schema(
            [
                f.with_type(pa.large_string()) if pa.types.is_string(f.type) else f
                for f in records.schema
            ]
        )
    )
    chunked = pa.concat_tables([records.slice(0, 7), records.slice(7)])
    expected = RECORD_LEAF.encode(records)
    assert RECORD_LEAF.encode(large) == expected
    assert RECORD_LEAF.encode(chunked) == expected
    assert RECORD_LEAF.encode(records.slice(0, 0)) == []


def _random_value(rng: random.Random, kind: pa.DataType, nullable: bool) -> Any:
    """A value of ``kind`` drawn to hit the encoder's edge cases (or None where allowed)."""
    if nullable and rng.random() < 0.2:
        return None
    if pa.types.is_string(kind):
        pool = [
            "",
            "-:,",
            "0",
            "a,b:c",
            "上海申华贸易有限公司",
            "e\u0301",
            "😀x",
            "\n\t\x00",
            "x" * 5000,
        ]
        return rng.choice(pool) + "".join(rng.choice("ab,:-9é货") for _ in range(rng.randrange(4)))
    if pa.types.is_int64(kind):
        return rng.choice([0, -1, 1, -(2**63), 2**63 - 1, rng.randrange(-(10**12), 10**12)])
    if pa.types.is_timestamp(kind):
        low = datetime(1, 1, 1, tzinfo=UTC)
        high = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
        span = int((high - low).total_seconds())
        picks = [low, high, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
        return (
            rng.choice(picks)
            if rng.random() < 0.3
            else low + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6))
        )
    if pa.types.is_date32(kind):
        return (
            rng.choice([date(1, 1, 1), date(9999, 12, 31), date(1969, 12, 31)])
            if rng.random() < 0.3
            else date(1970, 1, 1) + timedelta(days=rng.randrange(-700_000, 2_900_000))
        )
    if pa.types.is_list(kind):
        return [_random_value(rng, kind.value_type, True) for _ in range(rng.randrange(4))]
    raise AssertionError(f"no generator for {kind}")  # pragma: no cover


@pytest.mark.parametrize("slice_rows", [1 << 16, 97])
def test_fast_path_matches_the_reference_on_random_extreme_rows(
    slice_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unicode, nulls, empty and long strings, negative and extreme integers, timestamps and
    dates at both ends of their range: the column-wise encoder and the bulk leaf hashes (also
    cut into many slices encoded by worker threads) equal the per-record reference."""
    monkeypatch.setattr(records_module, "_SLICE_ROWS", slice_rows)
    rng = random.Random(20261123)
    rows = [
        {f.name: _random_value(rng, f.type, f.nullable) for f in STORED_TRANSACTION_SCHEMA}
        for _ in range(1500)
    ]
    table = pa.Table.from_pylist(rows, schema=STORED_TRANSACTION_SCHEMA)
    table = pa.concat_tables([table.slice(0, 700), table.slice(700)])  # two chunks
    expected = [_reference_leaf(RECORD_LEAF.tag, STORED_TRANSACTION_SCHEMA, row) for row in rows]
    assert RECORD_LEAF.encode(table) == expected
    hashes = RECORD_LEAF.leaf_hashes(table)
    assert hashes == b"".join(hashlib.sha256(b"\x00" + leaf).digest() for leaf in expected)
