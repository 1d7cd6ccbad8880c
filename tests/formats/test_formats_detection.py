"""Format / profile detection, overrides, ambiguity, and account registers."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import pytest
from export_samples import VALID_CREDIT_CODE, running, write_export

from flowbureau.errors import FormatDetectionError, InputError, ParseError
from flowbureau.formats import FORMATS, AccountRecord, detect, load_profiles, read_file
from flowbureau.formats.detection import Detection, detect_file, read_files
from flowbureau.formats.layout import find_layout, find_layout_in_lines, split_cells

DATA = Path(__file__).parent / "data"
ROWS = running([(datetime(2024, 1, 2, 9, 0), 100), (datetime(2024, 1, 3, 9, 0), -50)], 1000)
PROFILE_TOML = """
name = "{name}"
encodings = ["utf-8-sig"]
match = ["流水号X", "借方发生额"]
date_formats = ["%Y-%m-%d"]
[columns]
date = ["交易日期"]
debit = ["借方发生额"]
credit = ["贷方发生额"]
reference = ["流水号X"]
"""


def test_formats_constant() -> None:
    assert FORMATS == ("mt940", "camt", "bai2", "ofx", "csv", "register")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sample.bai", ("bai2", None)),
        ("sample-1x.ofx", ("ofx", None)),
        ("sample-2x.ofx", ("ofx", None)),
    ],
)
def test_detects_data_samples(name: str, expected: tuple[str, str | None]) -> None:
    assert detect(DATA / name) == expected


def test_detects_swift_and_camt_by_content_not_extension(tmp_path: Path) -> None:
    swift = tmp_path / "statement.csv"
    swift.write_text(":20:REF\n:25:ACC\n:60F:C240101EUR1,00\n:62F:C240101EUR1,00\n", "utf-8")
    assert detect(swift) == ("mt940", None)
    camt = tmp_path / "report.txt"
    camt.write_text(
        '<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">'
        "<BkToCstmrStmt/></Document>",
        "utf-8",
    )
    assert detect(camt) == ("camt", None)


def test_named_profile_beats_generic(tmp_path: Path) -> None:
    path = write_export(tmp_path / "e.csv", load_profiles()["cmb"], ROWS)
    assert detect(path) == ("csv", "cmb")


def test_generic_profile_is_the_fallback(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("交易日期,交易金额,摘要\n2024-01-02,-5.00,x\n", "utf-8")
    assert detect(path) == ("csv", "generic")
    result = read_file(path)
    assert result.statements[0].entries.column("amount_minor").to_pylist() == [-500]


def test_unknown_file_lists_every_candidate(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\nworld\n", "utf-8")
    with pytest.raises(FormatDetectionError) as caught:
        read_file(path)
    tried = dict(caught.value.tried)
    assert {"mt940", "camt", "bai2", "ofx", "register", "csv/generic", "csv/icbc"} <= set(tried)
    assert caught.value.file == str(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(FormatDetectionError) as caught:
        detect(path)
    assert "empty" in str(caught.value)


def test_two_user_profiles_matching_alike_are_ambiguous(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for name in ("bank_a", "bank_b"):
        (profiles / f"{name}.toml").write_text(PROFILE_TOML.format(name=name), "utf-8")
    path = tmp_path / "x.csv"
    path.write_text("交易日期,流水号X,借方发生额,贷方发生额\n2024-01-02,1,,5.00\n", "utf-8")
    with pytest.raises(FormatDetectionError) as caught:
        read_file(path, profile_dirs=[profiles])
    assert "ambiguous" in str(caught.value)
    assert {name for name, _ in caught.value.tried} == {"csv/bank_a", "csv/bank_b"}
    result = read_file(path, profile="bank_b", profile_dirs=[profiles])
    assert (result.format, result.profile) == ("csv", "bank_b")
    assert result.statements[0].entries.column("amount_minor").to_pylist() == [500]


def test_user_profile_directory_adds_a_bank(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "mine.toml").write_text(PROFILE_TOML.format(name="mine"), "utf-8")
    path = tmp_path / "x.csv"
    path.write_text("交易日期,流水号X,借方发生额,贷方发生额\n2024-01-02,1,3.00,\n", "utf-8")
    assert detect(path, profile_dirs=[profiles]) == ("csv", "mine")


def test_overrides(tmp_path: Path) -> None:
    path = write_export(tmp_path / "e.csv", load_profiles()["abc"], ROWS)
    assert read_file(path, format="csv").profile == "abc"
    assert read_file(path, profile="generic").profile == "generic"
    with pytest.raises(ParseError):
        read_file(path, format="mt940")
    with pytest.raises(InputError) as unknown_format:
        read_file(path, format="qif")
    assert unknown_format.value.field == "format"
    with pytest.raises(InputError) as unknown_profile:
        read_file(path, profile="nope")
    assert "icbc" in unknown_profile.value.message
    with pytest.raises(InputError):
        read_file(path, format="camt", profile="abc")


def test_read_result_lineage(tmp_path: Path) -> None:
    path = write_export(tmp_path / "e.csv", load_profiles()["boc"], ROWS)
    result = read_file(path)
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.path == path
    assert result.accounts == []


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_file(tmp_path / "nope.csv")
    assert caught.value.file == str(tmp_path / "nope.csv")


REGISTER = (
    "开户清单\n"
    "账号,户名,统一社会信用代码,币种,开户日期\n"
    f"6222000012345678,杭州某某科技有限公司,{VALID_CREDIT_CODE},人民币,2020-01-02\n"
    "\n"
    f"6222000087654321,杭州某某科技有限公司,{VALID_CREDIT_CODE},USD,2021-05-06\n"
    "合计,2户,,,\n"
)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk"])
def test_register_is_detected_and_read(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "register.csv"
    path.write_bytes(REGISTER.encode(encoding))
    assert detect(path) == ("register", None)
    result = read_file(path)
    assert result.statements == []
    assert result.accounts == [
        AccountRecord("6222000012345678", "杭州某某科技有限公司", VALID_CREDIT_CODE, "CNY", "3"),
        AccountRecord("6222000087654321", "杭州某某科技有限公司", VALID_CREDIT_CODE, "USD", "5"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "line", "field"),
    [
        (VALID_CREDIT_CODE + ",人民币", "91350100M000100Y44,人民币", 3, "统一社会信用代码"),
        ("6222000087654321,", ",", 5, "账号"),
        (",USD,", ",GOLD,", 5, "币种"),
        (VALID_CREDIT_CODE + ",USD", "91110000600037341L,USD", None, "统一社会信用代码"),
    ],
)
def test_register_errors_name_line_and_column(
    tmp_path: Path, old: str, new: str, line: int | None, field: str
) -> None:
    text = REGISTER.replace(old, new, 1)
    if line is None:  # the same account listed for two enterprises
        text = text.replace("6222000087654321", "6222000012345678")
        line = 5
    path = tmp_path / "register.csv"
    path.write_text(text, "utf-8")
    with pytest.raises(InputError) as caught:
        read_file(path, format="register")
    assert (caught.value.line, caught.value.field) == (line, field)


def test_statement_with_register_like_preamble_is_a_statement(tmp_path: Path) -> None:
    text = (
        f"账号,6222000012345678,户名,杭州某某科技有限公司,统一社会信用代码,{VALID_CREDIT_CODE}\n"
        "交易日期,摘要,借方发生额,贷方发生额,余额\n2024-01-02,a,,1.00,1.00\n"
    )
    path = tmp_path / "s.csv"
    path.write_text(text, "utf-8")
    assert detect(path) == ("csv", "generic")
    facts = read_file(path).statements[0].facts
    assert (facts.account_number, facts.owner_id) == ("6222000012345678", VALID_CREDIT_CODE)


def test_user_profile_with_a_bad_currency_is_refused(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = PROFILE_TOML.format(name="odd").replace(
        "match = [", 'default_currency = "RMB"\nmatch = ['
    )
    (profiles / "odd.toml").write_text(text, "utf-8")
    with pytest.raises(InputError) as caught:
        load_profiles([profiles])
    assert caught.value.field == "default_currency"
    assert caught.value.file == str(profiles / "odd.toml")


def test_detect_file_answers_both_questions_once(tmp_path: Path) -> None:
    register = tmp_path / "register.csv"
    register.write_bytes(REGISTER.encode("utf-8-sig"))
    statement = write_export(tmp_path / "e.csv", load_profiles()["cmb"], ROWS)
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello\nworld\n", "utf-8")
    found = {p.name: detect_file(p) for p in (register, statement, unknown)}
    assert found["register.csv"] == Detection(True, ("register", None))
    assert found["e.csv"] == Detection(False, ("csv", "cmb"))
    assert found["notes.txt"] == Detection(False, None)  # reading it raises, in its turn
    detected = {register: ("register", None), statement: ("csv", "cmb")}
    results = list(read_files([statement, register], detected=detected))
    assert [(r.format, r.profile) for r in results] == [("csv", "cmb"), ("register", None)]
    assert (
        results[0].statements[0].entries.num_rows
        == read_file(statement).statements[0].entries.num_rows
    )
    with pytest.raises(FormatDetectionError):
        list(read_files([statement, unknown], detected=detected))


def test_read_files_uses_the_given_choice(tmp_path: Path) -> None:
    path = tmp_path / "g.csv"
    path.write_text("交易日期,交易金额,摘要\n2024-01-02,-5.00,x\n", "utf-8")
    # A (wrong) choice passed in is what reads the file: it was not judged again.
    with pytest.raises(InputError):
        list(read_files([path], detected={path: ("mt940", None)}))
    # ... unless options override detection.
    (result,) = read_files([path], format="csv", detected={path: ("mt940", None)})
    assert (result.format, result.profile) == ("csv", "generic")


@pytest.mark.parametrize("header_at", [1, 4, 12])
def test_header_search_matches_splitting_every_line(header_at: int) -> None:
    profile = load_profiles()["generic"]
    preamble = [f"说明{i},值{i}" for i in range(1, header_at)]
    lines = [*preamble, "交易日期,交易金额,摘要", "2024-01-02,-5.00,交易日期"]
    numbered = list(enumerate(lines, start=1))
    fast = find_layout_in_lines(profile, numbered, ",")
    slow = find_layout(profile, [(n, split_cells(t, ",")) for n, t in numbered])
    assert fast == slow
    assert not isinstance(fast, str)
    assert fast.line == header_at
    # No header at all: the same reason, counting every line.
    without = [(n, t) for n, t in numbered if n != header_at]
    assert find_layout_in_lines(profile, without, ",") == find_layout(
        profile, [(n, split_cells(t, ",")) for n, t in without]
    )
