"""The business registry the social graph is built from (``registry/*.csv``, docs/synth.md).

Rules:
- Files are UTF-8 CSV with a header (:func:`flowbureau.scoring.external.read_csv_rows`):
  ``enterprises.csv`` (``credit_code``, ``name``, optional ``name_en``, ``address``, ``phone``,
  ``legal_representative``, ``registered_capital_minor``), ``shareholders.csv``
  (``credit_code``, ``shareholder_id``, ``shareholder_type`` person/enterprise, ``share_pct``,
  optional ``since``), ``executives.csv`` (``credit_code``, ``person_id``, ``role``),
  ``guarantees.csv`` (``guarantee_id``, ``guarantor_credit_code``, ``borrower_credit_code``,
  ``amount_minor``, ``start_date``, optional ``end_date``). Extra columns are ignored.
- ``enterprises.csv`` is required; the others are optional (absent = no such ties).
- Credit codes are check-digit validated, dates ISO, money integer minor units, shares
  0-100; the first problem raises :class:`~flowbureau.errors.InputError` naming the file, the
  line and the column, and nothing is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pandas as pd

from flowbureau.errors import InputError
from flowbureau.schema import is_valid_credit_code
from flowbureau.scoring.external import read_csv_rows

__all__ = ["REGISTRY_FILES", "Registry", "load_registry"]


@dataclass(frozen=True, slots=True)
class _Col:
    name: str
    kind: str  # text, code, date, minor, pct, enum
    required: bool = True
    values: tuple[str, ...] = ()


REGISTRY_FILES: dict[str, tuple[str, tuple[_Col, ...]]] = {
    "enterprises": (
        "enterprises.csv",
        (
            _Col("credit_code", "code"),
            _Col("name", "text"),
            _Col("name_en", "text", False),
            _Col("legal_representative", "text", False),
            _Col("address", "text", False),
            _Col("phone", "text", False),
            _Col("registered_capital_minor", "minor", False),
        ),
    ),
    "shareholders": (
        "shareholders.csv",
        (
            _Col("credit_code", "code"),
            _Col("shareholder_id", "text"),
            _Col("shareholder_type", "enum", values=("person", "enterprise")),
            _Col("share_pct", "pct"),
            _Col("since", "date", False),
        ),
    ),
    "executives": (
        "executives.csv",
        (_Col("credit_code", "code"), _Col("person_id", "text"), _Col("role", "text", False)),
    ),
    "guarantees": (
        "guarantees.csv",
        (
            _Col("guarantee_id", "text"),
            _Col("guarantor_credit_code", "code"),
            _Col("borrower_credit_code", "code"),
            _Col("amount_minor", "minor"),
            _Col("start_date", "date"),
            _Col("end_date", "date", False),
        ),
    ),
}
"""Kind -> (file name, columns)."""


@dataclass(frozen=True)
class Registry:
    """Validated registry tables (pandas; dates as ``datetime.date``, money as int)."""

    enterprises: pd.DataFrame
    shareholders: pd.DataFrame
    executives: pd.DataFrame
    guarantees: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        """Kind -> table."""
        return {
            "enterprises": self.enterprises,
            "shareholders": self.shareholders,
            "executives": self.executives,
            "guarantees": self.guarantees,
        }


def _parse(text: str, col: _Col, file: Path, line: int) -> Any:
    value = text.strip()
    if not value:
        if col.required:
            raise InputError("value is required", file=file, line=line, field=col.name)
        return None
    if col.kind == "code":
        if not is_valid_credit_code(value.upper()):
            raise InputError(
                f"not a unified social credit code: {value!r}", file=file, line=line, field=col.name
            )
        return value.upper()
    if col.kind == "date":
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise InputError(
                f"not an ISO date: {value!r}", file=file, line=line, field=col.name
            ) from None
    if col.kind == "minor":
        if not re.fullmatch(r"\d{1,18}", value):
            raise InputError(
                f"not an integer amount in minor units: {value!r}",
                file=file,
                line=line,
                field=col.name,
            )
        return int(value)
    if col.kind == "pct":
        try:
            share = Decimal(value)
        except InvalidOperation:
            share = Decimal(-1)
        if not Decimal(0) <= share <= Decimal(100):
            raise InputError(
                f"share must be a number 0-100: {value!r}", file=file, line=line, field=col.name
            )
        return float(share)
    if col.kind == "enum" and value not in col.values:
        raise InputError(
            f"{value!r} is not one of {', '.join(col.values)}", file=file, line=line, field=col.name
        )
    return value


def _load(kind: str, file: Path) -> pd.DataFrame:
    _, columns = REGISTRY_FILES[kind]
    header, rows = read_csv_rows(file)
    missing = [c.name for c in columns if c.required and c.name not in header]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}", file=file, line=1, field=missing[0]
        )
    at = {name: i for i, name in enumerate(header)}
    data: dict[str, list[Any]] = {c.name: [] for c in columns}
    for line, row in rows:
        for col in columns:
            i = at.get(col.name)
            data[col.name].append(
                _parse(row[i] if i is not None and i < len(row) else "", col, file, line)
            )
    return pd.DataFrame(data, columns=[c.name for c in columns])


def load_registry(directory: str | Path) -> Registry:
    """Read and validate the registry files of ``directory`` (see the module rules)."""
    root = Path(directory)
    if not (root / "enterprises.csv").is_file():
        raise InputError("the registry needs enterprises.csv", file=root, field="enterprises")
    tables: dict[str, pd.DataFrame] = {}
    for kind, (name, columns) in REGISTRY_FILES.items():
        path = root / name
        if path.is_file():
            tables[kind] = _load(kind, path)
        else:
            tables[kind] = pd.DataFrame(columns=[c.name for c in columns])
    codes = tables["enterprises"]["credit_code"]
    repeated = codes[codes.duplicated()]
    if len(repeated):
        line = int(repeated.index[0]) + 2
        raise InputError(
            f"credit_code {repeated.iloc[0]} repeats",
            file=root / "enterprises.csv",
            line=line,
            field="credit_code",
        )
    return Registry(**tables)
