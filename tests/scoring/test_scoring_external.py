"""External data: file formats and their errors, macro series, public-record and industry
features as of a date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from scoring_data import code, tx, view_table

from flowbureau.errors import InputError
from flowbureau.scoring.external import (
    INDUSTRY_MIN_MEMBERS,
    RECORD_FILES,
    ExternalData,
    default_macro,
    gbt4754,
    import_external,
    industry_sql,
    industry_trends_sql,
    load_external,
    load_macro_csv,
    load_records,
    macro_features,
    public_records_sql,
)
from flowbureau.storage.engine import create_engine

E = code(1)
F = code(2)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_gbt4754_table_has_every_section_and_division() -> None:
    table = gbt4754()
    assert len(table.sections) == 20
    assert len(table.divisions) == 97
    assert table.section_of("13") == "C"  # 农副食品加工业 is manufacturing
    assert table.section_of("01") == "A"


def test_penalties_load_with_types(tmp_path: Path) -> None:
    path = write(
        tmp_path / "penalties.csv",
        "record_id,credit_code,date,authority,decision_no,severity,fine_minor,reason\n"
        f"P1,{E},2025-03-01,某市市场监督管理局,x,fine,500000,虚假宣传\n"
        f"P2,{E.lower()},2025-04-01,某市生态环境局,y,warning,,\n",
    )
    table = load_records("penalties", path)
    assert table.num_rows == 2
    assert table.column("fine_minor").to_pylist() == [500000, None]
    assert table.column("credit_code").to_pylist() == [E, E]
    assert table.schema.field("date").type == pa.date32()


@pytest.mark.parametrize(
    ("body", "line", "field"),
    [
        ("P1,91110000000000001X,2025-03-01,a,fine,1\n", 2, "credit_code"),
        (f"P1,{E},2025-13-01,a,fine,1\n", 2, "date"),
        (f"P1,{E},2025-03-01,a,scolding,1\n", 2, "severity"),
        (f"P1,{E},2025-03-01,a,fine,-5\n", 2, "fine_minor"),
        (f"P1,{E},2025-03-01,,fine,5\n", 2, "authority"),
        (f"P1,{E},2025-03-01,a,fine,5\nP1,{E},2025-03-02,a,fine,5\n", 3, "record_id"),
    ],
)
def test_bad_values_name_file_line_and_field(
    tmp_path: Path, body: str, line: int, field: str
) -> None:
    path = write(
        tmp_path / "penalties.csv",
        "record_id,credit_code,date,authority,severity,fine_minor\n" + body,
    )
    with pytest.raises(InputError) as err:
        load_records("penalties", path)
    assert err.value.file == str(path)
    assert err.value.line == line
    assert err.value.field == field


def test_missing_column_and_unknown_division(tmp_path: Path) -> None:
    path = write(tmp_path / "inspections.csv", "record_id,credit_code,date,authority\n")
    with pytest.raises(InputError) as err:
        load_records("inspections", path)
    assert (err.value.line, err.value.field) == (1, "result")
    registry = write(tmp_path / "enterprises.csv", f"credit_code,division\n{E},99\n")
    with pytest.raises(InputError) as err:
        load_records("registry", registry)
    assert (err.value.line, err.value.field) == (2, "division")


def test_registry_gains_the_section(tmp_path: Path) -> None:
    path = write(tmp_path / "enterprises.csv", f"credit_code,name,division\n{E},甲,13\n{F},乙,51\n")
    table = load_records("registry", path)
    assert table.column("section").to_pylist() == ["C", "F"]


def test_macro_csv_publication_and_features(tmp_path: Path) -> None:
    path = write(
        tmp_path / "macro.csv",
        "month,quarter,pmi,lpr_1y\n"
        "2024-01-01,2024Q1,49.2,3.45\n"
        "2024-02-01,2024Q1,49.1,3.45\n"
        "2024-03-01,2024Q1,50.8,3.45\n"
        + "".join(f"2024-{m:02d}-01,x,50.0,3.35\n" for m in range(4, 13))
        + "2025-01-01,2025Q1,50.1,3.10\n"
        "2025-02-01,2025Q1,50.2,\n",
    )
    table = load_macro_csv(path)
    assert set(table.column("series").to_pylist()) == {"pmi", "lpr_1y"}  # 'quarter' is text
    # January 2025 is published at the start of February: visible from Feb 2 on, not on Feb 1
    assert macro_features(table, date(2025, 2, 1))["macro_pmi"] == 50.0
    features = macro_features(table, date(2025, 2, 2))
    assert features["macro_pmi"] == 50.1
    assert features["macro_pmi_chg_12m"] == pytest.approx(50.1 - 49.2)
    assert features["macro_lpr_1y"] == 3.10
    assert macro_features(table, date(2026, 6, 1))["macro_pmi"] is None  # stale
    assert macro_features(table, date(2024, 1, 15))["macro_pmi"] is None  # nothing yet


def test_macro_csv_with_available_on_and_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "macro.csv",
        "date,available_on,gdp\n2024-01-01,2024-04-16,5.3\n2024-04-01,2024-07-15,4.7\n",
    )
    table = load_macro_csv(path)
    assert macro_features(table, date(2024, 7, 15))["macro_gdp"] == 5.3
    assert macro_features(table, date(2024, 7, 16))["macro_gdp"] == 4.7
    bad = write(tmp_path / "bad.csv", "date,gdp\n2024-04-01,1\n2024-01-01,2\n")
    with pytest.raises(InputError) as err:
        load_macro_csv(bad)
    assert (err.value.line, err.value.field) == (3, "date")


def test_default_macro_is_the_shipped_real_data() -> None:
    table = default_macro()
    series = set(table.column("series").to_pylist())
    assert series == {
        "us_realgdp_growth",
        "us_unemp",
        "us_infl",
        "us_tbilrate",
        "us_baa_aaa_spread",
    }
    # Moody's BAA - AAA in December 2018 (arch's default data): 5.13 - 4.02
    features = macro_features(table, date(2019, 1, 2))
    assert features["macro_us_baa_aaa_spread"] == pytest.approx(5.13 - 4.02)
    # statsmodels macrodata ends in 2009Q3: stale for any date in the 2020s
    assert macro_features(table, date(2024, 6, 1))["macro_us_unemp"] is None


def _penalties(rows: list[tuple[str, str, date, str]]) -> pa.Table:
    return pa.table(
        {
            "record_id": [r[0] for r in rows],
            "credit_code": [r[1] for r in rows],
            "date": pa.array([r[2] for r in rows], pa.date32()),
            "authority": ["a"] * len(rows),
            "severity": [r[3] for r in rows],
            "fine_minor": pa.array([1000] * len(rows), pa.int64()),
        }
    )


def test_public_record_features_as_of_a_date() -> None:
    as_of = date(2025, 7, 1)
    penalties = _penalties(
        [
            ("a", E, date(2025, 6, 30), "fine"),  # in 12m
            ("b", E, date(2023, 7, 2), "suspension"),  # in 36m only
            ("c", E, date(2025, 7, 1), "revocation"),  # on the as-of day: not yet
        ]
    )
    loans = pa.table(
        {
            "loan_id": ["l1", "l2", "l3", "l4"],
            "credit_code": [E, E, E, F],
            "platform": [None] * 4,
            "opened_on": pa.array(
                [date(2025, 1, 1), date(2024, 1, 1), date(2025, 5, 1), date(2025, 8, 1)],
                pa.date32(),
            ),
            "principal_minor": pa.array([1, 1, 1, 1], pa.int64()),
            "closed_on": pa.array([None, date(2025, 3, 1), date(2025, 9, 1), None], pa.date32()),
            "first_overdue_on": pa.array(
                [date(2025, 6, 1), None, date(2025, 8, 1), None], pa.date32()
            ),
        }
    )
    sql = public_records_sql(as_of, ["penalties", "online_lending"])
    assert sql is not None
    with create_engine("duckdb") as engine:
        engine.register("ext_penalties", penalties)
        engine.register("ext_online_loans", loans)
        frame = engine.query(sql).to_pandas().set_index("enterprise_id")
    row = frame.loc[E]
    assert row["penalties_12m"] == 1
    assert row["penalties_36m"] == 2
    assert row["severe_penalties_36m"] == 1
    assert row["penalty_fines_36m"] == 2000
    assert row["online_loans_opened_12m"] == 2  # l1, l3
    assert row["online_loans_open"] == 2  # l1 (never closed), l3 (closed after D)
    assert row["online_loans_overdue"] == 1  # l1; l3's overdue day is after D
    assert row["online_overdue_days"] == 30
    assert F not in frame.index  # l4 opened after D: nothing known before it


def _registry(codes: dict[str, str]) -> pa.Table:
    table = gbt4754()
    return pa.table(
        {
            "credit_code": list(codes),
            "division": list(codes.values()),
            "section": [table.section_of(d) for d in codes.values()],
        }
    )


def test_industry_trend_uses_a_matched_panel_and_falls_back_to_the_section() -> None:
    as_of = date(2025, 7, 1)
    recent = datetime(2025, 6, 10, 2, tzinfo=UTC)
    year_ago = datetime(2024, 6, 10, 2, tzinfo=UTC)
    rows = []
    members: dict[str, str] = {}
    for i in range(INDUSTRY_MIN_MEMBERS):
        c = code(100 + i)
        members[c] = "13"
        rows += [tx(f"r{i}", c, recent, 120), tx(f"o{i}", c, year_ago, 100)]
    newcomer = code(200)  # no entries a year ago: outside the matched panel
    members[newcomer] = "13"
    rows.append(tx("n", newcomer, recent, 10_000))
    small = code(300)  # the only member of division 14 (also section C)
    members[small] = "14"
    rows += [tx("s1", small, recent, 50), tx("s2", small, year_ago, 100)]
    with create_engine("duckdb") as engine:
        engine.register("transactions", view_table(rows))
        engine.register("ext_registry", _registry(members))
        frame = engine.query(industry_sql(as_of)).to_pandas().set_index("enterprise_id")
        trends = engine.query(industry_trends_sql(as_of)).to_pandas()
    assert frame.loc[code(100), "industry_sales_yoy_3m"] == pytest.approx(0.2)
    assert frame.loc[code(100), "industry_members"] == INDUSTRY_MIN_MEMBERS
    # division 14 has one member: its section C (6 matched) answers instead
    section = (INDUSTRY_MIN_MEMBERS * 120 + 50) / (INDUSTRY_MIN_MEMBERS * 100 + 100) - 1
    assert frame.loc[small, "industry_sales_yoy_3m"] == pytest.approx(section)
    assert frame.loc[small, "sales_yoy_vs_industry_3m"] == pytest.approx(-0.5 - section)
    division_14 = trends[(trends.level == "division") & (trends.code == "14")].iloc[0]
    assert division_14["members"] == 1


def test_load_external_and_import(tmp_path: Path) -> None:
    first = tmp_path / "a"
    second = tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write(
        first / "penalties.csv",
        f"record_id,credit_code,date,authority,severity\nP,{E},2025-01-01,x,fine\n",
    )
    write(second / "enterprises.csv", f"credit_code,division\n{E},13\n")
    data = load_external(first, second, default_macro_series=False)
    assert sorted(data.records) == ["penalties", "registry"]
    assert data.macro is None
    with_default = load_external(first)
    assert with_default.sources["macro"] == "default"
    target = tmp_path / "external"
    copied = import_external([first, second], target)
    assert sorted(copied) == ["penalties", "registry"]
    assert (target / "enterprises.csv").is_file()
    write(second / "penalties.csv", "record_id\n")  # the same kind twice
    with pytest.raises(InputError):
        load_external(first, second)
    broken = tmp_path / "broken"
    broken.mkdir()
    write(
        broken / "judgments.csv",
        "case_no,court,date,credit_code,role\nX,c,2025-01-01,bad,defendant\n",
    )
    with pytest.raises(InputError):
        import_external([broken], tmp_path / "other")
    assert not (tmp_path / "other" / "judgments.csv").exists()


def test_every_record_file_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "scoring.md").read_text("utf-8")
    for spec in RECORD_FILES.values():
        assert spec.file in doc
        for column in spec.columns:
            assert f"`{column.name}`" in doc, (spec.file, column.name)
    assert isinstance(ExternalData(), ExternalData)
