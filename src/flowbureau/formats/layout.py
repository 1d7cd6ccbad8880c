"""Where a bank export's fields are: header rows resolved against a profile.

Rules:
- A header cell matches a profile's header name after trimming whitespace, a BOM and
  surrounding ``*`` (mandatory-field marks); otherwise names must be spelled exactly as the
  profile lists them (add a synonym to the profile rather than guessing).
- For each canonical field the first of the profile's names present in the row wins. A row is
  a header when it has the date field and either both debit and credit or the amount field;
  a debit/credit pair takes precedence over an amount column when both are present.
- Every present description header is kept, in profile order.
- Currency names printed in Chinese (``人民币``, ``美元`` ...) and ``RMB`` map to ISO 4217 codes.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass

from flowbureau.formats.profiles import Profile
from flowbureau.schema import InvalidCodeError, currency_exponent

MAX_HEADER_LINE = 30
"""The header row must be among the first this many lines (or sheet rows)."""

CURRENCY_NAMES = {
    "人民币": "CNY",
    "人民币元": "CNY",
    "RMB": "CNY",
    "美元": "USD",
    "港币": "HKD",
    "港元": "HKD",
    "欧元": "EUR",
    "日元": "JPY",
    "英镑": "GBP",
    "澳元": "AUD",
    "加元": "CAD",
    "新加坡元": "SGD",
    "瑞士法郎": "CHF",
}
"""Chinese currency names (and ``RMB``) that exports print instead of ISO 4217 codes."""

DEFAULT_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "debit": ("借", "借方", "支出", "D"),
    "credit": ("贷", "贷方", "收入", "C"),
}
"""Direction spellings used when a profile maps a direction column but no values."""


def currency_code(value: str) -> str | None:
    """ISO 4217 code of a printed currency (``人民币`` -> ``CNY``), ``None`` if unknown."""
    text = value.strip()
    code = CURRENCY_NAMES.get(text) or CURRENCY_NAMES.get(text.upper()) or text.upper()
    try:
        currency_exponent(code)
    except InvalidCodeError:
        return None
    return code


def normalize_header(cell: str) -> str:
    """A header cell as profiles spell it: trimmed, BOM and surrounding ``*`` removed."""
    return cell.replace("\ufeff", "").strip().strip("*").strip()


def split_cells(text: str, delimiter: str) -> list[str]:
    """The cells of one CSV line."""
    return next(csv.reader([text], delimiter=delimiter), [])


@dataclass(frozen=True)
class Layout:
    """Where the profile's fields are in one file's header row."""

    line: int
    header: tuple[str, ...]
    columns: dict[str, int]
    description: tuple[int, ...]

    @property
    def pair(self) -> bool:
        """True for a debit/credit column pair, False for one amount column."""
        return "debit" in self.columns

    @property
    def needed(self) -> list[int]:
        """Column indices a conversion reads."""
        return sorted({*self.columns.values(), *self.description})

    def name(self, field_name: str) -> str:
        """The header text of canonical field ``field_name`` (for messages)."""
        return self.header[self.columns[field_name]]


def resolve_layout(profile: Profile, cells: Sequence[str], line: int) -> Layout | str:
    """The layout of a header row under ``profile``, or why the row is not its header."""
    header = tuple(normalize_header(c) for c in cells)
    positions: dict[str, int] = {}
    for index, name in enumerate(header):
        positions.setdefault(name, index)
    columns: dict[str, int] = {}
    for canonical, names in profile.columns.items():
        found = next((positions[n] for n in names if n in positions), None)
        if found is not None and canonical != "description":
            columns[canonical] = found
    if "date" not in columns:
        return f"no date column ({' / '.join(profile.headers('date'))})"
    if "debit" in columns and "credit" in columns:
        columns.pop("amount", None)
        columns.pop("direction", None)
    else:
        columns.pop("debit", None)
        columns.pop("credit", None)
        if "amount" not in columns:
            pair = "+".join(
                n[0] for n in (profile.headers("debit"), profile.headers("credit")) if n
            )
            single = " / ".join(profile.headers("amount"))
            return f"no amount columns (debit+credit {pair or '-'} or amount {single or '-'})"
    description = tuple(positions[n] for n in profile.headers("description") if n in positions)
    return Layout(line, header, columns, description)


def find_layout(profile: Profile, rows: Sequence[tuple[int, list[str]]]) -> Layout | str:
    """The first header row among ``rows`` under ``profile``, or why there is none."""
    reasons: list[str] = []
    for number, cells in rows[:MAX_HEADER_LINE]:
        layout = resolve_layout(profile, cells, number)
        if isinstance(layout, Layout):
            return layout
        reasons.append(layout)
    if not rows:
        return "the file is empty"
    distinct = sorted(set(reasons))
    return f"no header row in the first {len(reasons)} lines: " + "; ".join(distinct)
