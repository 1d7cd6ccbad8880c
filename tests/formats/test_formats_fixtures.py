"""Every shared real-world statement sample: parsed and checked, or rejected with a location."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixture_table import END, START, fixture_files, markdown
from lxml import etree

from flowbureau.errors import FormatDetectionError, InputError, ParseError
from flowbureau.formats import BOOKED, INVALID_PREFIX, ReadResult, read_file, reconcile
from flowbureau.schema import RAW_ENTRY_SCHEMA

DOCS = Path(__file__).resolve().parents[2] / "docs" / "formats.md"

# Broken or incomplete samples: (error type, line or XML path, field).
EXPECTED_ERRORS: dict[str, tuple[type[InputError], int | str | None, str | None]] = {
    "camt/camt053.v2.wrong.xml": (ParseError, "/Document/BkToCstmrStmt", None),
    "mt940/betterplace/sepa_snippet_broken.sta": (ParseError, 6, ":25:"),
    "mt940/self-provided/raphaelm.sta": (ParseError, 27, ":62M:"),
    "mt940/cmxl/mt940.sta": (ParseError, 4, ":60F:"),
    "mt940/self-provided/empty_non_swift.sta": (ParseError, 1, ":NS:"),
    "mt940/self-provided/sparkassen.sta": (ParseError, 1, ":61:"),
    "mt940/betterplace/amount_formats.sta": (ParseError, 1, ":60F:"),
    "mt940/self-provided/invalid_statement.sta": (FormatDetectionError, None, None),
}


@pytest.fixture(scope="module")
def files(statement_fixtures: Path) -> list[Path]:
    found = fixture_files(statement_fixtures)
    assert len(found) > 70, "the shared fixture set is incomplete"
    return found


def _name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _outcome(path: Path) -> ReadResult | InputError:
    try:
        return read_file(path)
    except InputError as exc:
        return exc


def test_every_fixture_parses_or_fails_with_a_location(files: list[Path]) -> None:
    parsed = failed = 0
    for path in files:
        result = _outcome(path)
        if isinstance(result, InputError):
            failed += 1
            assert result.file == str(path), path
            if isinstance(result, FormatDetectionError):
                assert result.tried, path
            else:
                assert result.line is not None or result.location.path is not None, path
            continue
        parsed += 1
        for statement in result.statements:
            assert statement.entries.schema == RAW_ENTRY_SCHEMA
            statuses = set(statement.entries.column("status").to_pylist())
            assert all(s == BOOKED or s.startswith(INVALID_PREFIX) for s in statuses), path
            assert BOOKED not in set(statement.pending.column("status").to_pylist())
            diff = reconcile(statement)
            if diff:  # a mismatch is never silent
                assert any("does not reconcile" in w for w in statement.warnings), path
    assert parsed >= 45
    assert failed >= 15


@pytest.mark.parametrize("name", sorted(EXPECTED_ERRORS))
def test_broken_fixture_error_names_the_place(name: str, statement_fixtures: Path) -> None:
    kind, where, field = EXPECTED_ERRORS[name]
    with pytest.raises(kind) as caught:
        read_file(statement_fixtures / name)
    error = caught.value
    if isinstance(where, int):
        assert error.line == where
    elif isinstance(where, str):
        assert error.location.path == where
    assert error.field == field


def test_invalid_statement_forced_as_mt940_names_line_1(statement_fixtures: Path) -> None:
    with pytest.raises(ParseError) as caught:
        read_file(statement_fixtures / "mt940/self-provided/invalid_statement.sta", format="mt940")
    assert caught.value.line == 1
    assert "no SWIFT tags" in caught.value.message


def test_mt940_locations_are_the_lines_of_61_tags(
    files: list[Path], statement_fixtures: Path
) -> None:
    checked = 0
    for path in files:
        if path.relative_to(statement_fixtures).parts[0] != "mt940":
            continue
        try:
            result = read_file(path, format="mt940")
        except InputError:
            continue
        lines = path.read_bytes().decode("latin-1").split("\n")
        for statement in result.statements:
            for location in statement.entries.column("location").to_pylist():
                assert re.sub(r"[\x00-\x1f]", "", lines[int(location) - 1]).startswith(":61:")
                checked += 1
    assert checked > 150


def test_camt_locations_resolve_to_the_entries(files: list[Path], statement_fixtures: Path) -> None:
    checked = 0
    for path in files:
        if path.suffix != ".xml":
            continue
        try:
            result = read_file(path)
        except InputError:
            continue
        tree = etree.parse(str(path))
        for statement in result.statements:
            for table in (statement.entries, statement.pending):
                for location, raw in zip(
                    table.column("location").to_pylist(),
                    table.column("raw_text").to_pylist(),
                    strict=True,
                ):
                    xpath = "/" + "/".join(
                        re.sub(r"^(\w+)", r"*[local-name()='\1']", step)
                        for step in location.strip("/").split("/")
                    )
                    (element,) = tree.xpath(xpath)
                    assert etree.QName(element).localname == "Ntry"
                    assert element.findtext("{*}AcctSvcrRef") is None or (
                        element.findtext("{*}AcctSvcrRef") in raw
                    )
                    checked += 1
    assert checked >= 25


def test_structured_86_gives_counterparty_and_references(statement_fixtures: Path) -> None:
    result = read_file(statement_fixtures / "mt940/self-provided/malformed_details.sta")
    (entry,) = result.statements[0].entries.to_pylist()
    assert entry["counterparty_name"] == "Finanzamt Muenchen Abteilung Erhebung"
    assert entry["counterparty_account"] == "DE99700500000000012345"
    assert entry["counterparty_bank"] == "BYLADEMM"
    assert entry["amount_minor"] == -23315
    assert entry["end_to_end_id"] is not None
    assert entry["end_to_end_id"].startswith("123/123/12345")


def test_slash_style_86_gives_counterparty(statement_fixtures: Path) -> None:
    result = read_file(statement_fixtures / "mt940/jejik/rabobank-iban.sta")
    first = result.statements[0].entries.to_pylist()[0]
    assert first["counterparty_name"] == "CONTRA ACCOUNT HOLDER"
    # The sample's IBAN NL70ABNA0987654321 fails its check digits, so it is not taken.
    assert first["counterparty_account"] is None
    assert first["end_to_end_id"] == "01-01-2013 12:00 0030000987654321"
    assert first["amount_minor"] == -2500


def test_february_30_is_read_and_said(statement_fixtures: Path) -> None:
    result = read_file(statement_fixtures / "mt940/self-provided/february_30.sta")
    (statement,) = result.statements
    assert reconcile(statement) == 0
    assert any("2016-02-30 does not exist" in w for w in statement.warnings)


def test_mt942_entries_are_booked_and_sums_checked(statement_fixtures: Path) -> None:
    result = read_file(statement_fixtures / "mt940/self-provided/mt942.sta")
    (statement,) = result.statements
    assert reconcile(statement) is None
    assert statement.entries.column("status").to_pylist() == [BOOKED]
    assert any(":90D:" in w for w in statement.warnings)  # states 2,30 for a 0,42 debit


def test_camt_pending_entries_are_reported_not_booked(statement_fixtures: Path) -> None:
    result = read_file(statement_fixtures / "camt/camt052.v4.xml")
    (statement,) = result.statements
    assert statement.entries.num_rows == 0
    assert statement.pending.column("status").to_pylist() == ["PDNG"]


def test_camt_batch_booking_is_one_record(statement_fixtures: Path) -> None:
    result = read_file(statement_fixtures / "camt/camt054.v4.xml")
    (entry,) = result.statements[0].entries.to_pylist()
    assert entry["amount_minor"] == -20000000
    assert entry["description"].startswith("batch of 3 transactions")
    assert entry["raw_text"].count("<TxDtls>") == 3


def test_camt_five_decimals_fixture_is_exact(statement_fixtures: Path) -> None:
    # The sample's amounts have three decimals with a trailing zero (8.850): exact in EUR.
    result = read_file(statement_fixtures / "camt/camt053.v2.five.decimals.xml")
    (statement,) = result.statements
    assert statement.entries.column("amount_minor").to_pylist() == [885]
    assert (statement.facts.opening_balance_minor, statement.facts.closing_balance_minor) == (
        1815,
        2705,
    )
    assert reconcile(statement) == 5


def test_docs_table_is_the_current_outcome(statement_fixtures: Path) -> None:
    text = DOCS.read_text("utf-8")
    documented = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert documented == markdown(statement_fixtures).strip(), (
        "docs/formats.md is stale: run python tests/formats/fixture_table.py"
    )
