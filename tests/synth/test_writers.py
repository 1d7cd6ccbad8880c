"""Writers -> native file -> ``flowbureau.formats.read_file`` gives the records back.

Property tests over random statements for MT940, camt.053 (both versions) and every bank CSV
profile that ships with flowbureau, plus the blank-field conventions planted problems use.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowbureau.formats import read_file, reconcile
from flowbureau.formats.profiles import builtin_profiles
from flowbureau.schema import TxType
from flowbureau.synth.codes import credit_code
from flowbureau.synth.writers import (
    ENTRY_SCHEMA,
    StatementAccount,
    StatementData,
    write_camt053,
    write_mt940,
    write_tabular,
)

ACCOUNT = StatementAccount(
    number="6222021234567890128",
    currency="CNY",
    owner_name="苏州恒达机械制造有限公司",
    owner_name_ascii="Suzhou Hengda Machinery Co., Ltd.",
    owner_id=credit_code("320505", "MA1MXQ7K"),
    bank_name="中国工商银行",
    bank_name_ascii="Industrial and Commercial Bank of China",
    bic="ICBKCNBJ",
)
CHINESE = "苏州恒达机械制造有限公司上海华信贸易国网电力水务集团税务局货款工资房租利息手续费（）"
ASCII_WORD = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.,()'-+", min_size=1, max_size=12
)
PERIOD_START = date(2024, 3, 1)
PROFILES = sorted(builtin_profiles())


@st.composite
def statements(draw: st.DrawFn) -> StatementData:
    """A random but well-formed statement of March 2024 with a consistent running balance."""
    n = draw(st.integers(0, 8))
    opening = draw(st.integers(0, 10**10))
    seconds = sorted(draw(st.lists(st.integers(0, 30 * 86400 - 1), min_size=n, max_size=n)))
    rows: list[dict[str, Any]] = []
    balance = opening
    for i in range(n):
        amount = draw(st.integers(1, 10**10)) * draw(st.sampled_from([1, -1]))
        if balance + amount < 0:
            amount = -amount
        balance += amount
        booked = datetime(2024, 3, 1) + timedelta(seconds=seconds[i])
        named = draw(st.booleans())
        rows.append(
            {
                "booked_local": booked,
                "value_date": booked.date(),
                "amount_minor": amount,
                "balance_after_minor": balance,
                "counterparty_name": draw(st.text(CHINESE, min_size=2, max_size=20))
                if named
                else None,
                "counterparty_name_ascii": " ".join(
                    draw(st.lists(ASCII_WORD, min_size=1, max_size=4))
                ),
                "counterparty_account": draw(st.text("0123456789", min_size=10, max_size=19)),
                "counterparty_bank": draw(st.text(CHINESE, min_size=2, max_size=12)),
                "counterparty_bic": draw(st.sampled_from(["ICBKCNBJ", "PCBCCNBJ", None])),
                "description": draw(st.text(CHINESE, min_size=1, max_size=16)),
                "description_ascii": " ".join(draw(st.lists(ASCII_WORD, min_size=1, max_size=3))),
                "reference": f"R{i:02d}"
                + draw(st.text("0123456789ABCDEFGHJK", min_size=1, max_size=13)),
                "end_to_end_id": draw(st.sampled_from([None, f"FB{i:014d}"])),
                "tx_type": str(draw(st.sampled_from(list(TxType)))),
            }
        )
    return StatementData(
        account=ACCOUNT,
        period_start=PERIOD_START,
        period_end=date(2024, 3, 31),
        opening_minor=opening,
        closing_minor=balance,
        sequence=3,
        created_at=datetime(2024, 4, 1, 2, tzinfo=UTC),
        statement_id="20240334567890",
        entries=pa.Table.from_pylist(rows, schema=ENTRY_SCHEMA),
    )


def _read(data: bytes, suffix: str, **kwargs: Any) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"statement{suffix}"
        path.write_bytes(data)
        result = read_file(path, **kwargs)
    assert len(result.statements) == 1
    return result.statements[0]


def _common_checks(stmt: StatementData, parsed: Any) -> list[dict[str, Any]]:
    expected = stmt.entries.to_pylist()
    got = parsed.entries.to_pylist()
    assert len(got) == len(expected)
    assert [g["status"] for g in got] == ["BOOK"] * len(got)
    assert [g["amount_minor"] for g in got] == [e["amount_minor"] for e in expected]
    assert [g["reference"] for g in got] == [e["reference"] for e in expected]
    assert [g["counterparty_account"] for g in got] == [e["counterparty_account"] for e in expected]
    return got


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(stmt=statements())
def test_mt940_round_trip(stmt: StatementData) -> None:
    written = write_mt940(stmt)
    parsed = _read(written.data, ".sta", format="mt940")
    got = _common_checks(stmt, parsed)
    expected = stmt.entries.to_pylist()
    assert parsed.facts.account_number == ACCOUNT.number
    assert parsed.facts.opening_balance_minor == stmt.opening_minor
    assert parsed.facts.closing_balance_minor == stmt.closing_minor
    assert reconcile(parsed) == 0
    for g, e, location in zip(got, expected, written.locations, strict=True):
        assert g["booked_local"].date() == e["booked_local"].date()
        assert g["value_date"] == e["value_date"]
        assert g["end_to_end_id"] == e["end_to_end_id"]
        assert g["counterparty_bank"] == e["counterparty_bic"]
        assert g["counterparty_name"] == (
            e["counterparty_name_ascii"] if e["counterparty_name"] else None
        )
        assert f"/REMI/{e['description_ascii']}" in g["description"]
        assert g["location"] == location


@pytest.mark.parametrize("version", ["001.02", "001.08"])
@SETTINGS
@given(stmt=statements())
def test_camt053_round_trip(version: str, stmt: StatementData) -> None:
    written = write_camt053(stmt, version)
    assert f"camt.053.{version}".encode() in written.data
    parsed = _read(written.data, ".xml", format="camt")
    got = _common_checks(stmt, parsed)
    expected = stmt.entries.to_pylist()
    assert parsed.facts.owner_id == ACCOUNT.owner_id
    assert parsed.facts.opening_balance_minor == stmt.opening_minor
    assert parsed.facts.closing_balance_minor == stmt.closing_minor
    assert reconcile(parsed) == 0
    for g, e, location in zip(got, expected, written.locations, strict=True):
        assert g["booked_local"] == e["booked_local"]
        assert g["booked_offset_minutes"] == 480
        assert g["counterparty_name"] == e["counterparty_name"]
        assert g["counterparty_bank"] == (e["counterparty_bic"] or e["counterparty_bank"])
        assert g["description"] == e["description"]
        assert g["end_to_end_id"] == e["end_to_end_id"]
        assert g["location"] == location


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("style", ["colon", "fullwidth", "cells"])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stmt=statements(), summary=st.booleans())
def test_csv_round_trip(profile: str, style: str, stmt: StatementData, summary: bool) -> None:
    layout = builtin_profiles()[profile]
    written = write_tabular(stmt, layout, summary=summary, preamble_style=style)
    assert written.data.startswith("\ufeff".encode()) == (layout.encodings[0] == "utf-8-sig")
    parsed = _read(written.data, ".csv", profile=profile)
    got = _common_checks(stmt, parsed)
    expected = stmt.entries.to_pylist()
    assert parsed.facts.account_number == ACCOUNT.number
    assert parsed.facts.owner_id == ACCOUNT.owner_id
    assert parsed.facts.period_start == stmt.period_start
    assert parsed.facts.period_end == stmt.period_end
    assert not [w for w in parsed.warnings if "summary" in w or "break" in w]
    if expected:
        assert parsed.facts.opening_balance_minor == stmt.opening_minor
        assert reconcile(parsed) == 0
    for g, e, location in zip(got, expected, written.locations, strict=True):
        assert g["booked_local"] == e["booked_local"]
        assert g["balance_after_minor"] == e["balance_after_minor"]
        assert g["counterparty_name"] == e["counterparty_name"]
        assert g["counterparty_bank"] == e["counterparty_bank"]
        assert g["description"] == e["description"]
        assert g["location"] == location


def _one_entry(**changes: Any) -> StatementData:
    row = {
        "booked_local": datetime(2024, 3, 5, 10, 30),
        "value_date": date(2024, 3, 5),
        "amount_minor": -123456,
        "balance_after_minor": 876544,
        "counterparty_name": "上海华信贸易有限公司",
        "counterparty_name_ascii": "Shanghai Huaxin Trading Co., Ltd.",
        "counterparty_account": "6217001234567890",
        "counterparty_bank": "中国建设银行上海分行",
        "counterparty_bic": "PCBCCNBJ",
        "description": "货款",
        "description_ascii": "PAYMENT FOR GOODS",
        "reference": "IC00000000000001",
        "end_to_end_id": "FB00000000000001",
        "tx_type": "supplier_payment",
    } | changes
    return StatementData(
        account=ACCOUNT,
        period_start=PERIOD_START,
        period_end=date(2024, 3, 31),
        opening_minor=1_000_000,
        closing_minor=876_544,
        sequence=3,
        created_at=datetime(2024, 4, 1, 2, tzinfo=UTC),
        statement_id="20240334567890",
        entries=pa.Table.from_pylist([row], schema=ENTRY_SCHEMA),
    )


def test_blank_fields_read_as_missing() -> None:
    """How planted problems look to a reader: a blank date makes the entry INVALID, a blank
    counterparty or balance reads as null."""
    stmt = _one_entry(booked_local=None, counterparty_name=None, balance_after_minor=None)
    csv = _read(write_tabular(stmt, builtin_profiles()["generic"]).data, ".csv", profile="generic")
    entry = csv.entries.to_pylist()[0]
    assert entry["status"].startswith("INVALID:")
    assert entry["counterparty_name"] is None
    assert entry["balance_after_minor"] is None
    camt = _read(write_camt053(stmt, "001.08").data, ".xml", format="camt")
    entry = camt.entries.to_pylist()[0]
    assert entry["status"].startswith("INVALID:")
    assert entry["counterparty_name"] is None
    mt940 = _read(write_mt940(_one_entry(counterparty_name=None)).data, ".sta", format="mt940")
    assert mt940.entries.to_pylist()[0]["counterparty_name"] is None


def test_summary_row_states_the_true_totals() -> None:
    """A typo changes the entry, not the bank's own totals: the reader notices."""
    true = _one_entry()
    typo = StatementData(
        **{
            **{f: getattr(true, f) for f in true.__slots__},
            "entries": _one_entry(amount_minor=-1234560).entries,
        }
        | {"true_debits_minor": 123456, "true_credits_minor": 0}
    )
    profile = builtin_profiles()["icbc"]
    clean = _read(write_tabular(true, profile, summary=True).data, ".csv", profile="icbc")
    assert not [w for w in clean.warnings if "summary" in w]
    noticed = _read(write_tabular(typo, profile, summary=True).data, ".csv", profile="icbc")
    assert [w for w in noticed.warnings if "summary" in w]


def test_mt940_details_are_wrapped_within_swift_limits() -> None:
    stmt = _one_entry(
        counterparty_name_ascii="A" * 40 + " " + "B" * 80, description_ascii="C" * 300
    )
    text = write_mt940(stmt).data.decode("ascii")
    lines = text.split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(":86:"))
    end = next(i for i, line in enumerate(lines) if line.startswith(":62F:"))
    details = [lines[start][4:], *lines[start + 1 : end]]
    assert len(details) <= 6
    assert all(len(line) <= 65 and not line.endswith(" ") for line in details)
    assert all(not line.startswith((":", "-")) for line in details[1:])
