"""MT940 / MT942 reader: crafted statements, good and malformed."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from flowbureau.errors import ParseError
from flowbureau.formats import BOOKED, read_file, reconcile

GOOD = """{1:F01ICBKCNBJAXXX0000000000}{2:O9401200240131ICBKCNBJAXXX00000000002401311200N}{4:
:20:STMT20240131
:25:CN12345678901234567
:28C:00031/00001
:60F:C240130CNY100000,00
:61:2401310131C12800,50NTRFNONREF//B24013100001
:86:166?00GUTSCHRIFT?20EREF+E2E-0001?21SVWZ+Rechnung 1001?30BKCHCNBJ?31NL91ABNA0417164300
?32SHANGHAI TRADING?33 CO LTD
:61:2401310131D3000,00NCHGREF-2
:86:/TRTP/SEPA OVERBOEKING/IBAN/NL91ABNA0417164300/BIC/ABNANL2A/NAME/J DOE/{remi}
:61:240131D15,00NCHGNONREF
:86:BANK FEES JANUARY
:62F:C240131CNY109785,50
-}
""".replace("{remi}", "REMI/INVOICE 7/EREF/E2E-0002")


def _write(tmp_path: Path, text: str, name: str = "s.sta", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_good_statement_reads_and_reconciles(tmp_path: Path) -> None:
    result = read_file(_write(tmp_path, GOOD))
    assert result.format == "mt940"
    (statement,) = result.statements
    facts = statement.facts
    assert facts.account_number == "CN12345678901234567"
    assert facts.currency == "CNY"
    assert (facts.opening_balance_minor, facts.closing_balance_minor) == (10000000, 10978550)
    assert (facts.period_start, facts.period_end) == (date(2024, 1, 30), date(2024, 1, 31))
    assert facts.statement_ref == "STMT20240131/00031/00001"
    assert reconcile(statement) == 0
    rows = statement.entries.to_pylist()
    assert [r["amount_minor"] for r in rows] == [1280050, -300000, -1500]
    assert [r["location"] for r in rows] == ["6", "9", "11"]
    first, second, third = rows
    assert first["counterparty_name"] == "SHANGHAI TRADING CO LTD"
    assert first["counterparty_account"] == "NL91ABNA0417164300"
    assert first["counterparty_bank"] == "BKCHCNBJ"
    assert first["end_to_end_id"] == "E2E-0001"
    assert first["reference"] == "B24013100001"
    assert first["tx_code"] == "NTRF/166"
    assert first["booked_local"] == datetime(2024, 1, 31)
    assert first["raw_text"].startswith(":61:2401310131C12800,50")
    assert ":86:166" in first["raw_text"]
    assert second["counterparty_name"] == "J DOE"
    assert second["counterparty_bank"] == "ABNANL2A"
    assert second["reference"] == "REF-2"
    assert third["description"] == "BANK FEES JANUARY"
    assert {r["status"] for r in rows} == {BOOKED}


def test_truncated_file_is_a_located_error(tmp_path: Path) -> None:
    truncated = GOOD[: GOOD.index(":61:2401310131D3000") + 10]
    with pytest.raises(ParseError) as caught:
        read_file(_write(tmp_path, truncated), format="mt940")
    assert caught.value.line == 9
    assert caught.value.field == ":61:"


@pytest.mark.parametrize(
    ("bad", "good", "line", "field"),
    [
        (":61:2401310131C12800,50", ":61:2413310131C12800,50", 6, ":61:"),  # month 13
        (":61:2401310131C12800,50", ":61:2401310131CABC,50", 6, ":61:"),  # amount
        (":60F:C240130CNY100000,00", ":60F:C240130CNY100000,00X", 5, ":60F:"),
        (":62F:C240131CNY109785,50", ":62F:C240131XYZ109785,50", 13, ":62F:"),
        (":28C:00031/00001", ":25:CN999", 4, ":25:"),  # a second :25:
    ],
)
def test_malformed_tags_name_line_and_tag(
    tmp_path: Path, bad: str, good: str, line: int, field: str
) -> None:
    with pytest.raises(ParseError) as caught:
        read_file(_write(tmp_path, GOOD.replace(bad, good)))
    assert (caught.value.line, caught.value.field) == (line, field)


def test_missing_currency_is_an_error(tmp_path: Path) -> None:
    text = ":20:X\n:25:ACC\n:61:2401310131C1,00NTRFNONREF\n"
    with pytest.raises(ParseError) as caught:
        read_file(_write(tmp_path, text))
    assert caught.value.line == 1
    assert "no currency" in caught.value.message


def test_amount_finer_than_currency_is_invalid_not_rounded(tmp_path: Path) -> None:
    text = (
        ":20:JPY\n:25:JP0001\n:60F:C240130JPY1000,\n"
        ":61:2401310131C100,5NTRFNONREF\n:86:HALF A YEN\n"
        ":61:2401310131D200,NTRFNONREF\n:62F:C240131JPY900,\n"
    )
    (statement,) = read_file(_write(tmp_path, text)).statements
    rows = statement.entries.to_pylist()
    assert rows[0]["status"].startswith("INVALID:")
    assert "JPY" in rows[0]["status"]
    assert rows[0]["amount_minor"] == 0
    assert "100,5" in rows[0]["raw_text"]
    assert rows[1]["amount_minor"] == -200
    assert rows[1]["status"] == BOOKED
    assert reconcile(statement) == 100  # the quarantined 100.5 makes the gap visible


def test_mt942_interim_report(tmp_path: Path) -> None:
    text = (
        ":20:INTRA\n:25:CN001\n:28C:1/1\n:34F:CNYD0,00\n:13D:2401311530+0800\n"
        ":61:2401310131D10,00NTRFNONREF\n:61:2401310131C25,00NTRFNONREF\n"
        ":90D:1CNY10,00\n:90C:1CNY25,00\n"
    )
    (statement,) = read_file(_write(tmp_path, text)).statements
    assert reconcile(statement) is None
    assert statement.entries.column("amount_minor").to_pylist() == [-1000, 2500]
    assert statement.facts.period_end == date(2024, 1, 31)
    assert statement.warnings == ()  # the :90D:/:90C: sums agree


def test_latin1_file_and_bank_headers_are_reported(tmp_path: Path) -> None:
    text = "ABNANL2A\n940\n" + GOOD.split("{4:\n", 1)[1].replace("BANK FEES", "GEBÜHREN")
    result = read_file(_write(tmp_path, text, encoding="latin-1"), format="mt940")
    (statement,) = result.statements
    assert statement.entries.column("description").to_pylist()[2] == "GEBÜHREN JANUARY"
    assert any("ISO-8859-1" in w for w in statement.warnings)
    assert any("header line(s) 1, 2" in w for w in statement.warnings)
    assert statement.entries.column("location").to_pylist() == ["7", "10", "12"]


def test_statement_86_after_balances_is_not_an_entry_detail(tmp_path: Path) -> None:
    text = GOOD.replace("-}\n", ":86:TOTALS D000001C000001\n-}\n")
    (statement,) = read_file(_write(tmp_path, text)).statements
    assert "TOTALS" not in (statement.entries.column("description").to_pylist()[2] or "")
