"""Property tests: profile round trips and exact money parsing."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from export_samples import Row, write_export
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowbureau.errors import InputError
from flowbureau.formats import BOOKED, load_profiles, read_file, reconcile
from flowbureau.schema import MoneyError, format_minor, parse_amount, to_minor

PROFILES = load_profiles()
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
TEXT = (
    st.text(
        alphabet=st.sampled_from(list("上海北京贸易有限公司物流科技 ,\"'-ABCxyz0123456789()（）")),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)


@st.composite
def statements(draw: st.DrawFn) -> list[Row]:
    count = draw(st.integers(min_value=1, max_value=12))
    start = draw(st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2030, 1, 1)))
    balance = draw(st.integers(min_value=-(10**11), max_value=10**11))
    rows = []
    moment = start.replace(microsecond=0)
    for index in range(count):
        moment += timedelta(seconds=draw(st.integers(min_value=0, max_value=5 * 86400)))
        amount = draw(st.integers(min_value=-(10**10), max_value=10**10))
        balance += amount
        rows.append(
            Row(
                moment,
                amount,
                balance,
                counterparty=draw(TEXT),
                description=draw(TEXT),
                reference=f"R{index}",
            )
        )
    return rows


@SETTINGS
@given(
    name=st.sampled_from(["icbc", "ccb", "cmb", "boc", "abc", "generic"]),
    rows=statements(),
    thousands=st.booleans(),
)
def test_rows_written_through_a_profile_read_back_equal(
    name: str, rows: list[Row], thousands: bool
) -> None:
    profile = PROFILES[name]
    with tempfile.TemporaryDirectory() as folder:
        path = write_export(Path(folder) / "x.csv", profile, rows, thousands=thousands)
        result = read_file(path, profile=name)
    (statement,) = result.statements
    read = statement.entries.to_pylist()
    assert [r["amount_minor"] for r in read] == [r.amount_minor for r in rows]
    assert [r["balance_after_minor"] for r in read] == [r.balance_minor for r in rows]
    assert [r["counterparty_name"] for r in read] == [r.counterparty for r in rows]
    assert [r["description"] for r in read] == [r.description for r in rows]
    assert [r["reference"] for r in read] == [r.reference for r in rows]
    has_time = bool(profile.headers("time")) or "%H" in profile.date_formats[0]
    expected = [
        r.booked if has_time else r.booked.replace(hour=0, minute=0, second=0) for r in rows
    ]
    assert [r["booked_local"] for r in read] == expected
    assert {r["status"] for r in read} == {BOOKED}
    assert reconcile(statement) == 0


AMOUNT = st.builds(
    lambda units, cents, digits: Decimal(units) + Decimal(cents).scaleb(-digits),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.integers(min_value=0, max_value=999),
    st.sampled_from([2, 3]),
)


@SETTINGS
@given(
    values=st.lists(AMOUNT, min_size=1, max_size=15),
    style=st.sampled_from(["plain", "comma", "paren", "trail"]),
)
def test_vectorised_amounts_agree_with_parse_amount(values: list[Decimal], style: str) -> None:
    def spell(value: Decimal) -> str:
        text = f"{abs(value):,f}" if style != "plain" else f"{abs(value):f}"
        if value < 0:
            return {"paren": f"({text})", "trail": f"{text}-"}.get(style, f"-{text}")
        return text

    lines = "\n".join(f'2024-01-02,"{spell(v)}",x' for v in values)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.csv"
        path.write_text("交易日期,交易金额,摘要\n" + lines + "\n", "utf-8")
        (statement,) = read_file(path, profile="generic").statements
    for value, row in zip(values, statement.entries.to_pylist(), strict=True):
        try:
            expected = to_minor(parse_amount(spell(value)), "CNY")
        except MoneyError:
            assert row["status"].startswith("INVALID:")
            assert row["amount_minor"] == 0
        else:
            assert (row["status"], row["amount_minor"]) == (BOOKED, expected)


@given(
    minor=st.integers(min_value=-(10**15), max_value=10**15),
    currency=st.sampled_from(["CNY", "JPY", "KWD"]),
)
def test_to_minor_inverts_format_minor(minor: int, currency: str) -> None:
    assert to_minor(parse_amount(format_minor(minor, currency)), currency) == minor


@given(value=st.decimals(min_value=-(10**9), max_value=10**9, places=4, allow_nan=False))
def test_to_minor_never_rounds(value: Decimal) -> None:
    if value == value.quantize(Decimal("0.01")):
        assert Decimal(to_minor(value, "CNY")) == value * 100
    else:
        with pytest.raises(MoneyError):
            to_minor(value, "CNY")


@given(value=st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False))
def test_parse_amount_reads_thousands_and_full_width(value: Decimal) -> None:
    text = f"{value:,.2f}"
    assert parse_amount(text) == value
    full_width = text.translate(str.maketrans("0123456789.,-", "０１２３４５６７８９．，－"))
    assert parse_amount(full_width) == value


@given(junk=st.text(alphabet="abcxyz#$%", min_size=1, max_size=5))
def test_non_numeric_amounts_are_errors_with_a_line(junk: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "j.csv"
        path.write_text(f"交易日期,交易金额\n2024-01-02,1.00\n2024-01-03,{junk}\n", "utf-8")
        with pytest.raises(InputError) as caught:
            read_file(path, profile="generic")
    assert (caught.value.line, caught.value.field) == (3, "交易金额")
