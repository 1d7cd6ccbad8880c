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
    """The cells of one CSV line (a stray carriage return inside it is kept as a character)."""
    try:
        return next(csv.reader([text], delimiter=delimiter), [])
    except csv.Error:
        # Python's csv refuses a bare "\r" in an unquoted field; read it as a plain character.
        mark = next(c for c in ("\x00", "\ue000", "\uffff") if c not in text)
        cells = next(csv.reader([text.replace("\r", mark)], delimiter=delimiter), [])
        return [cell.replace(mark, "\r") for cell in cells]


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
    return _no_header(reasons, empty=not rows)


def _no_header(reasons: Sequence[str], *, empty: bool) -> str:
    if empty:
        return "the file is empty"
    distinct = sorted(set(reasons))
    return f"no header row in the first {len(reasons)} lines: " + "; ".join(distinct)


def find_layout_in_lines(
    profile: Profile,
    lines: Sequence[tuple[int, str]],
    delimiter: str,
    *,
    joined: str | None = None,
) -> Layout | str:
    """:func:`find_layout` over lines of text (``(number, text)``), without splitting most.

    Same answer as ``find_layout(profile, [(n, split_cells(t, delimiter)) ...])``: a line can
    only be a header when it contains one of the profile's date header names (a cell equal to
    a name after trimming contains it, once stray BOMs are dropped), so only such lines are
    split and resolved; the others fail with the "no date column" reason resolving gives them.
    Resolved header lines are remembered per profile and text, so a bank's thousand files with
    one header cost one resolution. ``joined``: the lines' texts joined with newlines, BOMs
    dropped, when the caller has it already.
    """
    names = profile.headers("date")
    exact = not any('"' in n or "\ufeff" in n or "\n" in n for n in names)
    lines = lines[:MAX_HEADER_LINE]
    reasons: list[str] = []
    if exact and lines:
        if joined is None:
            joined = "\n".join(text for _, text in lines).replace("\ufeff", "")
        found = [at for at in (joined.find(n) for n in names) if at >= 0]
        if not found:  # the common verdict on other banks' files
            return _no_date_column(profile, len(lines))
        # No line before the one holding the first name can be a header: skip them unsplit.
        skipped = min(joined.count("\n", 0, min(found)), len(lines))
        reasons = [f"no date column ({' / '.join(names)})"] * skipped
        lines = lines[skipped:]
    for number, text in lines:
        plain = text.replace("\ufeff", "") if "\ufeff" in text else text
        if exact and not any(n in plain for n in names):
            reasons.append(f"no date column ({' / '.join(names)})")
            continue
        layout = _resolve_text(profile, text, delimiter, number)
        if isinstance(layout, Layout):
            return layout
        reasons.append(layout)
    return _no_header(reasons, empty=not lines)


def _no_date_column(profile: Profile, lines: int) -> str:
    """Why none of ``lines`` lines (none of which holds a date header name) is a header:
    what :func:`_no_header` says for that many "no date column" reasons."""
    names = " / ".join(profile.headers("date"))
    return f"no header row in the first {lines} lines: no date column ({names})"


_RESOLVED: dict[tuple[int, str, str, int], tuple[Profile, Layout | str]] = {}
_RESOLVED_MAX = 4096


def _resolve_text(profile: Profile, text: str, delimiter: str, line: int) -> Layout | str:
    """``resolve_layout`` of one line's text, memoised per profile object (a bank's files
    repeat one header line, usually at one line number)."""
    key = (id(profile), delimiter, text, line)
    known = _RESOLVED.get(key)
    if known is not None and known[0] is profile:
        return known[1]
    if len(_RESOLVED) >= _RESOLVED_MAX:
        _RESOLVED.clear()
    result = resolve_layout(profile, split_cells(text, delimiter), line)
    _RESOLVED[key] = (profile, result)
    return result
