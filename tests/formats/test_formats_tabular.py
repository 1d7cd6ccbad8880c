"""Bank CSV / XLSX exports through profiles: every named profile, XLSX, malformed input."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest
from export_samples import VALID_CREDIT_CODE, render, running, write_export, write_xlsx

from flowbureau.errors import FormatDetectionError, InputError, ParseError
from flowbureau.formats import BOOKED, Profile, load_profiles, read_file, reconcile

NAMED = ("icbc", "ccb", "cmb", "boc", "abc")
ROWS = running(
    [
        (datetime(2024, 1, 2, 9, 30, 5), 1280050),
        (datetime(2024, 1, 3, 10, 0, 0), -300000),
        (datetime(2024, 1, 31, 23, 59, 59), -1500),
    ],
    10000000,
)


@pytest.fixture(scope="module")
def profiles() -> dict[str, Profile]:
    return load_profiles()


def _csv(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "x.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_named_profiles_have_distinct_match_headers(profiles: dict[str, Profile]) -> None:
    for name in NAMED:
        for other in NAMED:
            if other != name:
                headers = {n for names in profiles[other].columns.values() for n in names}
                assert not set(profiles[name].match) <= headers, (name, other)


@pytest.mark.parametrize("name", NAMED)
def test_each_named_profile_detects_and_reads_back(
    tmp_path: Path, profiles: dict[str, Profile], name: str
) -> None:
    profile = profiles[name]
    path = write_export(
        tmp_path / f"{name}.csv",
        profile,
        ROWS,
        period=(date(2024, 1, 1), date(2024, 1, 31)),
        thousands=name in ("icbc", "boc"),
    )
    assert path.read_bytes().startswith(b"\xef\xbb\xbf") == (profile.encodings[0] == "utf-8-sig")
    result = read_file(path)
    assert (result.format, result.profile) == ("csv", name)
    (statement,) = result.statements
    facts = statement.facts
    assert facts.account_number == "6222000012345678"
    assert facts.owner_name == "杭州某某科技有限公司"
    assert facts.owner_id == VALID_CREDIT_CODE
    assert facts.currency == "CNY"
    assert (facts.period_start, facts.period_end) == (date(2024, 1, 1), date(2024, 1, 31))
    assert (facts.opening_balance_minor, facts.closing_balance_minor) == (10000000, 10978550)
    assert reconcile(statement) == 0
    rows = statement.entries.to_pylist()
    assert [r["amount_minor"] for r in rows] == [1280050, -300000, -1500]
    assert [r["booked_local"] for r in rows] == [r.booked for r in ROWS]
    assert [r["balance_after_minor"] for r in rows] == [r.balance_minor for r in ROWS]
    assert {r["status"] for r in rows} == {BOOKED}
    assert rows[0]["counterparty_name"] == "上海某某贸易有限公司"
    assert rows[0]["description"] == "货款"
    assert rows[0]["reference"] == "T00001"
    lines = path.read_bytes().decode(profile.encodings[0]).splitlines()
    for row in rows:
        assert lines[int(row["location"]) - 1] == row["raw_text"]
    assert not [w for w in statement.warnings if "summary" in w or "running" in w]


@pytest.mark.parametrize("name", ["icbc", "ccb", "abc"])
def test_gbk_files_decode_under_a_profile_that_allows_it(
    tmp_path: Path, profiles: dict[str, Profile], name: str
) -> None:
    path = write_export(tmp_path / "g.csv", profiles[name], ROWS, encoding="gbk")
    assert read_file(path).statements[0].facts.owner_name == "杭州某某科技有限公司"


def test_gbk_bytes_are_refused_by_a_utf8_only_profile(
    tmp_path: Path, profiles: dict[str, Profile]
) -> None:
    utf8_only = replace(profiles["cmb"], name="cmb-utf8", encodings=("utf-8",))
    path = write_export(tmp_path / "g.csv", profiles["cmb"], ROWS, encoding="gbk")
    from flowbureau.formats.tabular import TabularReader

    with pytest.raises(InputError) as caught:
        TabularReader(utf8_only).read(path)
    assert caught.value.field == "encoding"
    assert caught.value.line == 1
    assert "not valid UTF-8" in caught.value.message


def test_utf8_file_is_not_misread_as_gb18030(tmp_path: Path, profiles: dict[str, Profile]) -> None:
    # icbc lists gb18030 first, but valid UTF-8 (no BOM) is read as UTF-8.
    path = write_export(tmp_path / "u.csv", profiles["icbc"], ROWS, encoding="utf-8")
    assert read_file(path, profile="icbc").statements[0].facts.owner_name == "杭州某某科技有限公司"


def test_gbk_bytes_inside_a_utf8_file_name_the_line(
    tmp_path: Path, profiles: dict[str, Profile]
) -> None:
    text = render(profiles["cmb"], ROWS)
    lines = text.splitlines(keepends=True)
    data = "".join(lines[:6]).encode("utf-8") + lines[6].encode("gbk") + "".join(lines[7:]).encode()
    path = tmp_path / "mixed.csv"
    path.write_bytes(data)
    with pytest.raises(InputError) as caught:
        read_file(path, profile="cmb")
    assert (caught.value.line, caught.value.field) == (7, "encoding")


@pytest.mark.parametrize("name", ["icbc", "boc", "generic"])
def test_xlsx_reads_like_csv(tmp_path: Path, profiles: dict[str, Profile], name: str) -> None:
    path = write_xlsx(tmp_path / f"{name}.xlsx", profiles[name], ROWS)
    result = read_file(path)
    assert (result.format, result.profile) == ("csv", name)
    (statement,) = result.statements
    assert statement.entries.column("amount_minor").to_pylist() == [1280050, -300000, -1500]
    assert statement.entries.column("location").to_pylist() == ["5", "6", "7"]
    assert reconcile(statement) == 0


GENERIC_HEAD = "账号,6222000012345678\n户名：测试公司\n\n交易日期,摘要,借方发生额,贷方发生额,余额\n"


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [
        ("2024-01-02,a,,100.00,100.00\n2024/13/02,b,,1.00,101.00\n", 6, "交易日期", "date formats"),
        ("2024-01-02,a,,100.00,100.00\n2024-02-30,b,,1.00,101.00\n", 6, "交易日期", "calendar"),
        ("2024-01-02,a,,1O0.00,100.00\n", 5, "贷方发生额", "not a number"),
        ("2024-01-02,a,,100.00,12.5.0\n", 5, "余额", "not a number"),
        ("2024-01-02,a,,100.00\n", 5, None, "cells"),
    ],
)
def test_malformed_rows_name_line_and_header(
    tmp_path: Path, body: str, line: int, field: str | None, message: str
) -> None:
    with pytest.raises(InputError) as caught:
        read_file(_csv(tmp_path, GENERIC_HEAD + body), profile="generic")
    assert caught.value.line == line
    assert caught.value.field == field
    assert message in caught.value.message


def test_unknown_direction_value_is_an_error(tmp_path: Path, profiles: dict[str, Profile]) -> None:
    text = render(profiles["ccb"], ROWS).replace(",借,", ",X,", 1)
    with pytest.raises(InputError) as caught:
        read_file(_csv(tmp_path, text))
    assert caught.value.field == "借贷方向"
    assert caught.value.line == 6


def test_invalid_rows_are_kept_with_a_reason(tmp_path: Path) -> None:
    body = (
        "2024-01-02,ok,,100.00,100.00\n"
        ",no date,,5.00,105.00\n"
        "2024-01-03,no amount,,,105.00\n"
        "2024-01-04,too fine,,1.005,106.005\n"
        "2024-01-05,both,1.00,2.00,107.00\n"
    )
    (statement,) = read_file(_csv(tmp_path, GENERIC_HEAD + body), profile="generic").statements
    rows = statement.entries.to_pylist()
    assert [r["status"] for r in rows] == [
        BOOKED,
        "INVALID:empty date",
        "INVALID:empty amount (debit and credit both empty)",
        "INVALID:credit 1.005 has more decimals than CNY allows",
        "INVALID:debit and credit amounts both non-zero",
    ]
    assert [r["amount_minor"] for r in rows] == [10000, 0, 0, 0, 0]
    assert rows[3]["raw_text"] == "2024-01-04,too fine,,1.005,106.005"
    assert reconcile(statement) != 0  # quarantined money shows


def test_summary_and_blank_rows_are_not_records_and_totals_are_checked(tmp_path: Path) -> None:
    body = (
        '2024-01-02,a,,"1,000.00","1,000.00"\n'
        ",,,,\n"
        "2024-01-03,b,200.00,,800.00\n"
        '本页合计,,200.00,"1,000.00",\n'
        "2024-01-04,c,,50.00,850.00\n"
        "合计,,200.00,999.00,\n"
        "\n"
        "制表：共3笔\n"
    )
    profile = replace(load_profiles()["generic"], summary_markers=("合计", "本页合计", "制表"))
    from flowbureau.formats.tabular import TabularReader

    (statement,) = TabularReader(profile).parse((GENERIC_HEAD + body).encode(), tmp_path / "s.csv")
    assert statement.entries.column("location").to_pylist() == ["5", "7", "9"]
    assert reconcile(statement) == 0
    mismatch, unchecked = [w for w in statement.warnings if "summary row" in w]
    assert "line 10" in mismatch
    assert "999.00" in mismatch
    assert "105000 in all" in mismatch
    assert "line 12 not checked" in unchecked  # 制表：共3笔 states no totals in columns


def test_running_balance_break_is_reported(tmp_path: Path) -> None:
    body = "2024-01-02,a,,100.00,100.00\n2024-01-03,b,,50.00,160.00\n"
    (statement,) = read_file(_csv(tmp_path, GENERIC_HEAD + body), profile="generic").statements
    assert any("breaks at line 6" in w for w in statement.warnings)


def test_newest_first_order_is_understood(tmp_path: Path) -> None:
    body = "2024-01-03,b,30.00,,70.00\n2024-01-02,a,,100.00,100.00\n"
    (statement,) = read_file(_csv(tmp_path, GENERIC_HEAD + body), profile="generic").statements
    assert (statement.facts.opening_balance_minor, statement.facts.closing_balance_minor) == (
        0,
        7000,
    )
    assert reconcile(statement) == 0
    assert not statement.warnings[1:]


def test_odd_amount_spellings_and_excel_wrappers(tmp_path: Path) -> None:
    body = (
        '2024-01-02,a,,"１,２００.００",1200.00\n'
        "2024-01-03,b,(200.00),,1400.00\n"
        "2024-01-04,c,100.00-,,1500.00\n"
        '="2024-01-05",d,,0.5,1500.50\n'
    )
    (statement,) = read_file(_csv(tmp_path, GENERIC_HEAD + body), profile="generic").statements
    assert statement.entries.column("amount_minor").to_pylist() == [120000, 20000, 10000, 50]
    assert statement.entries.column("booked_local").to_pylist()[3] == datetime(2024, 1, 5)


def test_quoted_line_breaks_keep_exact_lines(tmp_path: Path) -> None:
    body = '2024-01-02,"two\nlines",,100.00,100.00\n2024-01-03,b,,1.00,101.00\n'
    (statement,) = read_file(_csv(tmp_path, GENERIC_HEAD + body), profile="generic").statements
    rows = statement.entries.to_pylist()
    assert [r["location"] for r in rows] == ["5", "7"]
    assert rows[0]["description"] == "two\nlines"
    assert rows[0]["raw_text"] == '2024-01-02,"two\nlines",,100.00,100.00'


def test_currency_column_and_foreign_currency_names(tmp_path: Path) -> None:
    text = (
        "账号：123\n交易日期,交易金额,币种,摘要\n"
        "2024-01-02,100.5,美元,x\n2024-01-03,-7,JPY,y\n2024-01-04,3,欧元,z\n"
    )
    (statement,) = read_file(_csv(tmp_path, text), profile="generic").statements
    assert statement.entries.column("currency").to_pylist() == ["USD", "JPY", "EUR"]
    assert statement.entries.column("amount_minor").to_pylist() == [10050, -7, 300]
    bad = text.replace("欧元", "金币")
    with pytest.raises(InputError) as caught:
        read_file(_csv(tmp_path, bad, name="b.csv"), profile="generic")
    assert (caught.value.line, caught.value.field) == (5, "币种")


def test_invalid_credit_code_in_preamble_is_an_error(tmp_path: Path) -> None:
    text = "统一社会信用代码: 91350100M000100Y44\n" + GENERIC_HEAD + "2024-01-02,a,,1.00,1.00\n"
    with pytest.raises(InputError) as caught:
        read_file(_csv(tmp_path, text), profile="generic")
    assert (caught.value.line, caught.value.field) == (1, "统一社会信用代码")


def test_missing_columns_say_what_is_missing(tmp_path: Path) -> None:
    text = "交易日期,摘要,余额\n2024-01-02,a,1.00\n"
    with pytest.raises(FormatDetectionError) as caught:
        read_file(_csv(tmp_path, text))
    assert "no amount columns" in str(caught.value)
    with pytest.raises(ParseError) as forced:
        read_file(_csv(tmp_path, text, name="y.csv"), profile="generic")
    assert "no amount columns" in forced.value.message


def test_legacy_xls_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    with pytest.raises(ParseError) as caught:
        read_file(path, profile="generic")
    assert ".xls" in caught.value.message


def test_large_file_uses_parallel_chunks_with_exact_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowbureau.formats import tabular

    monkeypatch.setattr(tabular, "CHUNK_BYTES", 256)
    rows = running(
        [(datetime(2024, 1, 1 + i % 28, 8, 0, i % 60), 100 * (i % 7) - 250) for i in range(60)], 0
    )
    path = write_export(tmp_path / "big.csv", load_profiles()["cmb"], rows)
    (statement,) = read_file(path).statements
    lines = path.read_bytes().decode("utf-8-sig").splitlines()
    assert statement.entries.num_rows == 60
    assert reconcile(statement) == 0
    for location, raw in zip(
        statement.entries.column("location").to_pylist(),
        statement.entries.column("raw_text").to_pylist(),
        strict=True,
    ):
        assert lines[int(location) - 1] == raw


def test_full_width_spaces_are_trimmed(tmp_path: Path) -> None:
    text = "交易日期,交易金额,对方户名\n2024-01-02,\u30001.00\u3000,\u3000某公司\u3000\n"
    (statement,) = read_file(_csv(tmp_path, text), profile="generic").statements
    (row,) = statement.entries.to_pylist()
    assert row["counterparty_name"] == "某公司"
    assert row["amount_minor"] == 100
