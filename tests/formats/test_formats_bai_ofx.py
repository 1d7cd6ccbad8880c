"""BAI2 and OFX readers on the hand-written samples in ``data/`` and broken variants."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from flowbureau.errors import ParseError
from flowbureau.formats import BOOKED, read_file, reconcile

DATA = Path(__file__).parent / "data"


def _variant(tmp_path: Path, name: str, old: str, new: str, encoding: str = "utf-8") -> Path:
    text = (DATA / name).read_bytes().decode(encoding)
    assert old in text
    path = tmp_path / name
    path.write_bytes(text.replace(old, new, 1).encode(encoding))
    return path


def test_bai2_accounts_balances_and_entries() -> None:
    result = read_file(DATA / "sample.bai")
    assert result.format == "bai2"
    first, second = result.statements
    assert first.facts.account_number == "0001234567"
    assert (first.facts.opening_balance_minor, first.facts.closing_balance_minor) == (
        1500000,
        1740000,
    )
    assert first.facts.period_start == date(2024, 1, 30)
    assert reconcile(first) == 0
    assert reconcile(second) == 0
    rows = first.entries.to_pylist()
    assert [r["amount_minor"] for r in rows] == [250000, -10000]
    assert [r["location"] for r in rows] == ["4", "6"]
    assert rows[0]["raw_text"].endswith("88,INVOICE 1001 AND 1002")
    assert rows[0]["tx_code"] == "165"
    assert rows[0]["reference"] == "BR0001"
    assert rows[0]["booked_local"] == datetime(2024, 1, 30)
    (info,) = first.pending.to_pylist()
    assert info["status"] == "INFO"
    assert info["tx_code"] == "890"
    (wire,) = second.entries.to_pylist()
    assert wire["value_date"] == date(2024, 1, 31)
    assert wire["status"] == BOOKED
    assert second.facts.opening_balance_minor == -20000


@pytest.mark.parametrize(
    ("old", "new", "line", "field"),
    [
        ("49,5000000,6/", "49,5000001,6/", 8, "49"),  # account control total
        ("49,5000000,6/", "49,5000000,7/", 8, "49"),  # record count
        ("98,5060000,2,11/", "98,5060000,3,11/", 12, "98"),  # number of accounts
        ("99,5060000,1,13/", "99,5060000,1,12/", 13, "99"),
        ("16,475,10000,0", "16,475,1O000,0", 6, "16"),  # letter O in the amount
        ("16,475,10000,0", "17,475,10000,0", 6, "record code"),
    ],
)
def test_bai2_integrity_errors_name_the_record(
    tmp_path: Path, old: str, new: str, line: int, field: str
) -> None:
    with pytest.raises(ParseError) as caught:
        read_file(_variant(tmp_path, "sample.bai", old, new), format="bai2")
    assert (caught.value.line, caught.value.field) == (line, field)


def test_bai2_truncated_file_is_an_error(tmp_path: Path) -> None:
    text = (DATA / "sample.bai").read_text("utf-8").splitlines()[:7]
    path = tmp_path / "cut.bai"
    path.write_text("\n".join(text), "utf-8")
    with pytest.raises(ParseError) as caught:
        read_file(path)
    assert caught.value.line is not None


def test_ofx_sgml_cp1252() -> None:
    result = read_file(DATA / "sample-1x.ofx")
    assert result.format == "ofx"
    (statement,) = result.statements
    assert statement.facts.closing_balance_minor == 375075
    assert statement.facts.currency == "USD"
    assert reconcile(statement) is None  # OFX states no opening balance
    first, second = statement.entries.to_pylist()
    assert first["amount_minor"] == 150000
    assert second["amount_minor"] == -24925
    assert first["booked_local"] == datetime(2024, 1, 5, 10, 0)
    assert first["booked_offset_minutes"] == -300
    assert second["booked_offset_minutes"] is None
    assert second["counterparty_name"] == "CAFÉ MÜLLER"
    assert first["reference"] == "2024010501"
    assert first["description"] == "INVOICE 1001"
    assert [first["location"], second["location"]] == ["23", "31"]


def test_ofx_xml_utf8_chinese() -> None:
    (statement,) = read_file(DATA / "sample-2x.ofx").statements
    rows = statement.entries.to_pylist()
    assert [r["counterparty_name"] for r in rows] == [
        "上海某某贸易有限公司",
        "北京某某物流有限公司",
    ]
    assert rows[0]["booked_offset_minutes"] == 480
    assert rows[0]["booked_local"] == datetime(2024, 1, 3, 9, 30, 15)
    assert statement.facts.period_end == date(2024, 1, 31)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("<TRNAMT>-249.25", "<TRNAMT>-24x9.25", "TRNAMT"),
        ("<DTPOSTED>20240110", "<DTPOSTED>20241310", "DTPOSTED"),
        ("<FITID>2024011002", "<MEMO>no id", "FITID"),
    ],
)
def test_ofx_bad_transaction_names_line_and_field(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    path = _variant(tmp_path, "sample-1x.ofx", old, new, encoding="cp1252")
    with pytest.raises(ParseError) as caught:
        read_file(path)
    assert (caught.value.line, caught.value.field) == (31, field)


def test_ofx_amount_finer_than_currency_is_invalid(tmp_path: Path) -> None:
    path = _variant(tmp_path, "sample-1x.ofx", "<TRNAMT>1500.00", "<TRNAMT>1500.005", "cp1252")
    first = read_file(path).statements[0].entries.to_pylist()[0]
    assert first["status"].startswith("INVALID:")
    assert first["amount_minor"] == 0
