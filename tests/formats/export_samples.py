"""Writes bank CSV/XLSX exports from a profile, the way the readers expect them.

The rendering rules are the contract between a profile's writer (``flowbureau.synth``) and
``formats.tabular``: preamble ``{key}: {value}`` lines, the first header name of each mapped
field, ``date_formats[0]`` (date only when the profile has a time column, then
``time_formats[0]``), amounts with the currency's decimals (debit/credit pair, or magnitude
plus ``direction_values[...][0]``, or a signed amount), ``encodings[0]``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from flowbureau.formats.profiles import COLUMN_FIELDS, Profile
from flowbureau.schema import format_minor

VALID_CREDIT_CODE = "91350100M000100Y43"
"""A unified social credit code with a valid check digit (GB 32100-2015 example)."""


@dataclass(frozen=True)
class Row:
    """One entry to write."""

    booked: datetime
    amount_minor: int
    balance_minor: int | None = None
    counterparty: str | None = "上海某某贸易有限公司"
    counterparty_account: str | None = "6222020000012345"
    counterparty_bank: str | None = "中国工商银行上海分行"
    description: str | None = "货款"
    reference: str | None = None


def header(profile: Profile) -> list[str]:
    """The header row a writer uses: the first name of every mapped field."""
    fields = [f for f in COLUMN_FIELDS if profile.headers(f)]
    if "debit" in fields and "credit" in fields:
        fields = [f for f in fields if f not in ("amount", "direction")]
    return [profile.headers(f)[0] for f in fields]


def _money(minor: int, thousands: bool) -> str:
    text = format_minor(minor, "CNY")
    return f"{Decimal(text):,.2f}" if thousands else f"{Decimal(text):.2f}"


def cells(profile: Profile, row: Row, *, thousands: bool = False) -> list[str]:
    """One row's cells in :func:`header` order."""
    has_time = bool(profile.headers("time"))
    date_format = profile.date_formats[0]
    values: dict[str, str] = {
        "date": row.booked.strftime(date_format),
        "time": row.booked.strftime(profile.time_formats[0]) if has_time else "",
        "balance": "" if row.balance_minor is None else _money(row.balance_minor, thousands),
        "counterparty_name": row.counterparty or "",
        "counterparty_account": row.counterparty_account or "",
        "counterparty_bank": row.counterparty_bank or "",
        "description": row.description or "",
        "reference": row.reference or "",
        "currency": "人民币",
    }
    if profile.headers("debit") and profile.headers("credit"):
        values["debit"] = _money(-row.amount_minor, thousands) if row.amount_minor < 0 else ""
        values["credit"] = _money(row.amount_minor, thousands) if row.amount_minor >= 0 else ""
    elif profile.headers("direction"):
        side = "debit" if row.amount_minor < 0 else "credit"
        values["amount"] = _money(abs(row.amount_minor), thousands)
        values["direction"] = profile.direction_values[side][0]
    else:
        values["amount"] = _money(row.amount_minor, thousands)
    names = header(profile)
    by_name = {profile.headers(f)[0]: f for f in COLUMN_FIELDS if profile.headers(f)}
    return [values[by_name[name]] for name in names]


def render(
    profile: Profile,
    rows: Sequence[Row],
    *,
    account: str = "6222000012345678",
    owner: str = "杭州某某科技有限公司",
    credit_code: str | None = VALID_CREDIT_CODE,
    period: tuple[date, date] | None = None,
    summary: bool = True,
    thousands: bool = False,
) -> str:
    """The text of an export: preamble, header, rows and a 合计 summary row."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=profile.delimiter, lineterminator="\n")
    preamble = profile.preamble
    out.write(f"{preamble['account'][0]}: {account}\n")
    out.write(f"{preamble['owner'][0]}: {owner}\n")
    if credit_code is not None and "credit_code" in preamble:
        out.write(f"{preamble['credit_code'][0]}: {credit_code}\n")
    if period is not None and "period" in preamble:
        fmt = next(f for f in profile.date_formats if "%H" not in f)
        out.write(f"{preamble['period'][0]}: {period[0]:{fmt}} 至 {period[1]:{fmt}}\n")
    names = header(profile)
    writer.writerow(names)
    for row in rows:
        writer.writerow(cells(profile, row, thousands=thousands))
    if summary:
        total = [""] * len(names)
        total[0] = profile.summary_markers[0]
        if profile.headers("debit") and profile.headers("credit"):
            debit = -sum(r.amount_minor for r in rows if r.amount_minor < 0)
            credit = sum(r.amount_minor for r in rows if r.amount_minor >= 0)
            total[names.index(profile.headers("debit")[0])] = _money(debit, thousands)
            total[names.index(profile.headers("credit")[0])] = _money(credit, thousands)
        writer.writerow(total)
    return out.getvalue()


def write_export(path: Path, profile: Profile, rows: Sequence[Row], **kwargs: object) -> Path:
    """Write :func:`render`'s text in the profile's first encoding (with BOM for utf-8-sig)."""
    encoding = str(kwargs.pop("encoding", profile.encodings[0]))
    path.write_bytes(render(profile, rows, **kwargs).encode(encoding))  # type: ignore[arg-type]
    return path


def write_xlsx(path: Path, profile: Profile, rows: Sequence[Row], **kwargs: object) -> Path:
    """The same export as an XLSX workbook (numbers as numbers, dates as date cells)."""
    from openpyxl import Workbook

    text = render(profile, rows, **kwargs)  # type: ignore[arg-type]
    book = Workbook()
    sheet = book.active
    numeric = {
        profile.headers(f)[0]
        for f in ("debit", "credit", "amount", "balance")
        if profile.headers(f)
    }
    names: list[str] = []
    for values in csv.reader(io.StringIO(text), delimiter=profile.delimiter):
        if names and len(values) == len(names) and values[0] not in profile.summary_markers:
            converted: list[object] = []
            for name, value in zip(names, values, strict=True):
                if name in numeric and value:
                    converted.append(float(value.replace(",", "")))
                else:
                    converted.append(value)
            sheet.append(converted)
            continue
        if values == header(profile):
            names = values
        sheet.append(values)
    book.save(path)
    return path


def running(rows: Sequence[tuple[datetime, int]], opening: int) -> list[Row]:
    """Rows with running balances from ``opening``."""
    balance = opening
    out = []
    for index, (when, amount) in enumerate(rows, start=1):
        balance += amount
        out.append(Row(when, amount, balance, reference=f"T{index:05d}"))
    return out
