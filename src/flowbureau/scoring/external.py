"""External data for credit evaluation: public records, macro series, the business registry,
and the industry trend index the consortium computes from its own flows.

Rules:
- **Files** are UTF-8 CSV with a header row, ISO dates (``YYYY-MM-DD``), money in integer minor
  units, enterprises by unified social credit code (check digit validated). Each kind has a
  fixed file name and columns (:data:`RECORD_FILES`; ``docs/scoring.md`` has the table);
  optional columns may be left out, extra columns are ignored; a missing required column, a
  bad value or a repeated key raises :class:`~flowbureau.errors.InputError` naming the file,
  the line and the column, and nothing is loaded. A kind whose file is absent is simply
  unknown: its features are left out, not 0.
- **As of a date** every feature uses only what happened before ``D``: records dated before
  ``D``; a loan open at ``D`` was opened before ``D`` and not closed before ``D``; it is overdue at
  ``D`` when its first overdue day is before ``D``. Snapshot columns that say how things stood
  when the file was made (a loan's status, its current overdue days) are never used: they would
  leak the future into earlier evaluations.
- **Macro series** are long tables (``series``, ``period_start``, ``value``, ``available_on``). A
  value is used as of ``D`` only if it was available before ``D``; a CSV without an
  ``available_on`` column publishes each value one period after its period starts (the period
  is the gap to the file's next date). The latest available value older than
  :data:`MACRO_MAX_AGE_DAYS` is stale and gives NULL. The defaults are real published data
  shipped inside installed packages: US quarterly macro data (statsmodels ``macrodata``,
  1959Q1-2009Q3) and Moody's AAA/BAA corporate bond yields (arch ``default``, monthly
  1919-2018), whose BAA-AAA spread is a credit-spread series. Users load their own (Chinese PMI,
  GDP, LPR, ...) with :func:`load_macro_csv`.
- **Industry trend index**: per GB/T 4754-2017 division (the standard's sections and divisions
  ship as ``flowbureau/data/gbt4754_2017.csv``), the year-on-year growth of the sales receipts
  of the consortium's enterprises of that division, over a matched panel (enterprises with
  entries in both periods, so that new members joining the consortium are not mistaken for
  growth). A division with fewer than :data:`INDUSTRY_MIN_MEMBERS` matched enterprises falls back
  to its section; a section that small gives NULL.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from flowbureau.errors import InputError
from flowbureau.schema import is_valid_credit_code
from flowbureau.scoring.features import check_enterprises, cutoff_instant, month_start

__all__ = [
    "EXTERNAL_FEATURES",
    "INDUSTRY_MIN_MEMBERS",
    "MACRO_MAX_AGE_DAYS",
    "MACRO_SCHEMA",
    "RECORD_FILES",
    "ExternalData",
    "IndustryTable",
    "RecordFile",
    "default_macro",
    "gbt4754",
    "import_external",
    "industry_sql",
    "industry_trends_sql",
    "load_external",
    "load_macro_csv",
    "load_records",
    "macro_features",
    "public_records_sql",
    "read_csv_rows",
]

MACRO_MAX_AGE_DAYS = 400
"""A macro value whose period started more than this many days before ``D`` is stale."""
INDUSTRY_MIN_MEMBERS = 5
"""Matched enterprises a division (else its section) needs for an industry trend."""

MACRO_SCHEMA = pa.schema(
    [
        pa.field("series", pa.string(), nullable=False),
        pa.field("period_start", pa.date32(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("available_on", pa.date32(), nullable=False),
    ]
)
"""Macro series in long form: one value per series and period, with its publication day."""


# -- GB/T 4754-2017 ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndustryTable:
    """GB/T 4754-2017 sections (A-T) and divisions (01-97): code -> (section, Chinese name)."""

    sections: Mapping[str, str]
    divisions: Mapping[str, tuple[str, str]]

    def section_of(self, division: str) -> str:
        """The section letter of a two-digit division code (KeyError if unknown)."""
        return self.divisions[division][0]


def gbt4754() -> IndustryTable:
    """Load the shipped GB/T 4754-2017 section and division table."""
    text = resources.files("flowbureau.data").joinpath("gbt4754_2017.csv").read_text("utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    sections: dict[str, str] = {}
    divisions: dict[str, tuple[str, str]] = {}
    for row in csv.DictReader(io.StringIO(body)):
        if row["level"] == "section":
            sections[row["code"]] = row["name_zh"]
        else:
            divisions[row["code"]] = (row["section"], row["name_zh"])
    return IndustryTable(sections, divisions)


# -- record files -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a record file: its name, kind and whether a value is required.

    Kinds: ``text``, ``code`` (unified social credit code), ``date`` (ISO), ``minor`` (integer
    minor units, >= 0), ``division`` (GB/T 4754 division code), or ``enum`` with ``values``.
    """

    name: str
    kind: str
    required: bool = True
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordFile:
    """A kind of external record: its file name, relation name, columns and unique key."""

    kind: str
    file: str
    relation: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    description: str


RECORD_FILES: dict[str, RecordFile] = {
    spec.kind: spec
    for spec in (
        RecordFile(
            "penalties",
            "penalties.csv",
            "ext_penalties",
            (
                Column("record_id", "text"),
                Column("credit_code", "code"),
                Column("date", "date"),
                Column("authority", "text"),
                Column(
                    "severity",
                    "enum",
                    values=("warning", "fine", "confiscation", "suspension", "revocation"),
                ),
                Column("fine_minor", "minor", required=False),
            ),
            ("record_id",),
            "Administrative penalties (行政处罚): deciding authority, date, severity, fine.",
        ),
        RecordFile(
            "inspections",
            "inspections.csv",
            "ext_inspections",
            (
                Column("record_id", "text"),
                Column("credit_code", "code"),
                Column("date", "date"),
                Column("authority", "text"),
                Column("result", "enum", values=("pass", "fail")),
                Column("product", "text", required=False),
            ),
            ("record_id",),
            "Product quality inspections (质量抽检) with their result.",
        ),
        RecordFile(
            "online_lending",
            "online_lending.csv",
            "ext_online_loans",
            (
                Column("loan_id", "text"),
                Column("credit_code", "code"),
                Column("platform", "text", required=False),
                Column("opened_on", "date"),
                Column("principal_minor", "minor"),
                Column("closed_on", "date", required=False),
                Column("first_overdue_on", "date", required=False),
            ),
            ("loan_id",),
            "Online-lending accounts (网贷) with opening, closing and first overdue days.",
        ),
        RecordFile(
            "judgments",
            "judgments.csv",
            "ext_judgments",
            (
                Column("case_no", "text"),
                Column("court", "text"),
                Column("date", "date"),
                Column("credit_code", "code"),
                Column("role", "enum", values=("defendant", "plaintiff", "third_party")),
                Column("cause", "text", required=False),
                Column("amount_minor", "minor", required=False),
            ),
            ("case_no", "credit_code"),
            "Court judgments (裁判文书) naming the enterprise, its role and the amount.",
        ),
        RecordFile(
            "registry",
            "enterprises.csv",
            "ext_registry",
            (Column("credit_code", "code"), Column("division", "division")),
            ("credit_code",),
            "Business registry: each enterprise's GB/T 4754-2017 division (行业大类).",
        ),
    )
}
"""Every external record kind, by kind."""

_ARROW_TYPES = {
    "text": pa.string(),
    "code": pa.string(),
    "enum": pa.string(),
    "division": pa.string(),
    "date": pa.date32(),
    "minor": pa.int64(),
}


def read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A UTF-8 CSV's header and its non-blank rows with their line numbers (typed errors)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8: {exc.reason}", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=path) from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError("empty file (no header row)", file=path, line=1) from None
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", file=path, line=reader.line_num) from None
    return header, rows


def _parse(value: str, column: Column, path: Path, line: int, divisions: Mapping[str, Any]) -> Any:
    text = value.strip()
    if not text:
        if column.required:
            raise InputError("value is required", file=path, line=line, field=column.name)
        return None
    if column.kind == "code":
        if not is_valid_credit_code(text):
            raise InputError(
                f"not a unified social credit code: {text!r}",
                file=path,
                line=line,
                field=column.name,
            )
        return text.upper()
    if column.kind == "date":
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise InputError(
                f"not an ISO date (YYYY-MM-DD): {text!r}", file=path, line=line, field=column.name
            ) from None
    if column.kind == "minor":
        if not re.fullmatch(r"\d{1,18}", text):
            raise InputError(
                f"not a non-negative integer amount in minor units: {text!r}",
                file=path,
                line=line,
                field=column.name,
            )
        return int(text)
    if column.kind == "enum" and text not in column.values:
        raise InputError(
            f"{text!r} is not one of {', '.join(column.values)}",
            file=path,
            line=line,
            field=column.name,
        )
    if column.kind == "division" and text not in divisions:
        raise InputError(
            f"{text!r} is not a GB/T 4754-2017 division code (two digits, 01-97)",
            file=path,
            line=line,
            field=column.name,
        )
    return text


def load_records(kind: str, path: str | Path) -> pa.Table:
    """Read and validate one record file of ``kind`` (see :data:`RECORD_FILES`).

    The registry gains a ``section`` column (from the division). Raises
    :class:`~flowbureau.errors.InputError` naming file, line and column on the first problem.
    """
    spec = RECORD_FILES.get(kind)
    if spec is None:
        raise InputError(f"unknown record kind {kind!r}; known: {', '.join(RECORD_FILES)}")
    file = Path(path)
    header, rows = read_csv_rows(file)
    missing = [c.name for c in spec.columns if c.required and c.name not in header]
    if missing:
        raise InputError(
            f"missing column(s) {', '.join(missing)}", file=file, line=1, field=missing[0]
        )
    index = {name: i for i, name in enumerate(header)}
    table = gbt4754()
    values: dict[str, list[Any]] = {c.name: [] for c in spec.columns}
    seen: dict[tuple[Any, ...], int] = {}
    for line, row in rows:
        parsed: dict[str, Any] = {}
        for column in spec.columns:
            at = index.get(column.name)
            cell = row[at] if at is not None and at < len(row) else ""
            parsed[column.name] = _parse(cell, column, file, line, table.divisions)
        key = tuple(parsed[k] for k in spec.key)
        if key in seen:
            raise InputError(
                f"{'/'.join(spec.key)} {'/'.join(map(str, key))} repeats line {seen[key]}",
                file=file,
                line=line,
                field=spec.key[-1],
            )
        seen[key] = line
        for name, value in parsed.items():
            values[name].append(value)
    arrays = {c.name: pa.array(values[c.name], _ARROW_TYPES[c.kind]) for c in spec.columns}
    if kind == "registry":
        arrays["section"] = pa.array([table.section_of(d) for d in values["division"]], pa.string())
    return pa.table(arrays)


# -- macro series -----------------------------------------------------------------------------

_SERIES_NAME = re.compile(r"[^a-z0-9]+")
_DATE_COLUMNS = ("date", "period_start", "month", "period")


def _series_name(column: str) -> str:
    return _SERIES_NAME.sub("_", column.strip().lower()).strip("_")


def load_macro_csv(path: str | Path) -> pa.Table:
    """Read a wide macro CSV: a date column (``date``, ``period_start``, ``month`` or
    ``period``: the first day of each period), optionally ``available_on``, and one numeric
    column per series (text columns such as ``quarter`` are ignored; empty cells are gaps).

    Returns :data:`MACRO_SCHEMA` rows; series names are the column names in lower case with
    non-alphanumerics as ``_``.
    """
    file = Path(path)
    header, rows = read_csv_rows(file)
    date_column = next((c for c in _DATE_COLUMNS if c in header), None)
    if date_column is None:
        raise InputError(
            f"no date column (one of {', '.join(_DATE_COLUMNS)})", file=file, line=1, field="date"
        )
    date_index = header.index(date_column)
    published = header.index("available_on") if "available_on" in header else None
    starts: list[date] = []
    for line, row in rows:
        try:
            starts.append(date.fromisoformat(row[date_index].strip()))
        except (ValueError, IndexError):
            raise InputError(
                "not an ISO date (YYYY-MM-DD)", file=file, line=line, field=date_column
            ) from None
        if len(starts) > 1 and starts[-1] <= starts[-2]:
            raise InputError(
                "dates must increase down the file", file=file, line=line, field=date_column
            )
    if not starts:
        raise InputError("no data rows", file=file, line=2, field=date_column)
    available: list[date] = []
    for k, (line, row) in enumerate(rows):
        if published is not None:
            try:
                available.append(date.fromisoformat(row[published].strip()))
            except (ValueError, IndexError):
                raise InputError(
                    "not an ISO date (YYYY-MM-DD)", file=file, line=line, field="available_on"
                ) from None
        elif len(starts) == 1:
            raise InputError(
                "one row and no available_on column: the period length is unknown",
                file=file,
                line=line,
                field="available_on",
            )
        else:
            gap = (starts[k + 1] - starts[k]) if k + 1 < len(starts) else starts[k] - starts[k - 1]
            available.append(starts[k] + gap)
    numeric = [
        i
        for i, name in enumerate(header)
        if i not in (date_index, published) and _is_numeric_column(rows, i)
    ]
    out: dict[str, list[Any]] = {name: [] for name in MACRO_SCHEMA.names}
    for i in numeric:
        series = _series_name(header[i])
        for k, (line, row) in enumerate(rows):
            cell = row[i].strip() if i < len(row) else ""
            if not cell:
                continue
            try:
                number = float(cell)
            except ValueError:
                raise InputError(
                    f"not a number: {cell!r}", file=file, line=line, field=header[i]
                ) from None
            if not math.isfinite(number):
                raise InputError(f"not finite: {cell!r}", file=file, line=line, field=header[i])
            out["series"].append(series)
            out["period_start"].append(starts[k])
            out["value"].append(number)
            out["available_on"].append(available[k])
    if not out["series"]:
        raise InputError("no numeric series column", file=file, line=1)
    return pa.table(out, schema=MACRO_SCHEMA)


def _is_numeric_column(rows: Sequence[tuple[int, list[str]]], index: int) -> bool:
    """A column is a series when its first non-empty cell parses as a number."""
    for _, row in rows:
        cell = row[index].strip() if index < len(row) else ""
        if cell:
            try:
                float(cell)
            except ValueError:
                return False
            return True
    return False


def default_macro() -> pa.Table:
    """The shipped real series: US quarterly macro data and the BAA-AAA credit spread.

    ``us_realgdp_growth`` (100 x log-difference of real GDP, % per quarter), ``us_unemp`` (%),
    ``us_infl`` (%), ``us_tbilrate`` (%), each available one quarter after its quarter starts;
    ``us_baa_aaa_spread`` (percentage points), available one month after its month starts.
    """
    import numpy as np
    from arch.data import default as bond_yields
    from statsmodels.datasets import macrodata

    out: dict[str, list[Any]] = {name: [] for name in MACRO_SCHEMA.names}

    def add(series: str, starts: list[date], values: Any, lag: Callable[[date], date]) -> None:
        for start, value in zip(starts, values, strict=True):
            out["series"].append(series)
            out["period_start"].append(start)
            out["value"].append(float(value))
            out["available_on"].append(lag(start))

    data = macrodata.load_pandas().data
    quarters = [
        date(int(y), 3 * int(q) - 2, 1) for y, q in zip(data["year"], data["quarter"], strict=True)
    ]
    growth = 100.0 * np.diff(np.log(data["realgdp"].to_numpy(dtype=float)))
    add("us_realgdp_growth", quarters[1:], growth, lambda d: month_start(d, -3))
    for column in ("unemp", "infl", "tbilrate"):
        add(
            f"us_{column}",
            quarters,
            data[column].to_numpy(dtype=float),
            lambda d: month_start(d, -3),
        )
    yields = bond_yields.load()
    months = [ts.date().replace(day=1) for ts in yields.index]
    spread = (yields["BAA"] - yields["AAA"]).to_numpy(dtype=float)
    add("us_baa_aaa_spread", months, spread, lambda d: month_start(d, -1))
    return pa.table(out, schema=MACRO_SCHEMA)


def macro_features(macro: pa.Table, as_of: date) -> dict[str, float | None]:
    """``macro_<series>`` (latest value available before ``as_of``) and
    ``macro_<series>_chg_12m`` (its change against the period twelve months earlier)."""
    by_series: dict[str, list[tuple[date, float, date]]] = {}
    for series, start, value, available in zip(
        *(macro.column(n).to_pylist() for n in MACRO_SCHEMA.names), strict=True
    ):
        by_series.setdefault(series, []).append((start, value, available))
    out: dict[str, float | None] = {}
    for series in sorted(by_series):
        known = {s: v for s, v, a in by_series[series] if a < as_of}
        latest = max(known, default=None)
        fresh = latest is not None and (as_of - latest).days <= MACRO_MAX_AGE_DAYS
        out[f"macro_{series}"] = known[latest] if fresh and latest is not None else None
        earlier = month_start(latest, 12) if fresh and latest is not None else None
        change = None
        if latest is not None and earlier is not None and earlier in known:
            change = known[latest] - known[earlier]
        out[f"macro_{series}_chg_12m"] = change
    return out


# -- the external data set ----------------------------------------------------------------------


@dataclass
class ExternalData:
    """The external data available to an evaluation: record tables by kind, and macro series."""

    records: dict[str, pa.Table] = field(default_factory=dict)
    macro: pa.Table | None = None
    sources: dict[str, str] = field(default_factory=dict)
    """Where each kind came from (file path, or ``default`` for the shipped macro series)."""

    @property
    def registry(self) -> pa.Table | None:
        """Each enterprise's division and section (``None`` without a registry file)."""
        return self.records.get("registry")


def load_external(*directories: str | Path, default_macro_series: bool = True) -> ExternalData:
    """Load every known file found in ``directories`` (see :data:`RECORD_FILES`, ``macro.csv``).

    A file name found in two directories is refused (which one would be right is unknown).
    Without a ``macro.csv``, the shipped series (:func:`default_macro`) are used unless
    ``default_macro_series`` is false.
    """
    data = ExternalData()
    found: dict[str, Path] = {}
    names = {spec.file: kind for kind, spec in RECORD_FILES.items()} | {"macro.csv": "macro"}
    for directory in directories:
        base = Path(directory)
        if not base.is_dir():
            raise InputError("not a directory", file=base, field="external")
        for file_name, kind in names.items():
            path = base / file_name
            if not path.is_file():
                continue
            if kind in found:
                raise InputError(
                    f"{file_name} is also in {found[kind].parent}; keep one", file=path
                )
            found[kind] = path
    for kind, path in found.items():
        if kind == "macro":
            data.macro = load_macro_csv(path)
        else:
            data.records[kind] = load_records(kind, path)
        data.sources[kind] = str(path)
    if data.macro is None and default_macro_series:
        data.macro = default_macro()
        data.sources["macro"] = "default"
    return data


# -- feature SQL ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExternalFeature:
    """One external feature: the record kind it comes from, its SQL and its meaning."""

    name: str
    kind: str
    sql: str
    description: str


def _window(column: str, months: int) -> str:
    return f"{column} >= DATE '{{m{months}}}' AND {column} < DATE '{{as_of}}'"


def _count_if(condition: str) -> str:
    return f"CAST(sum(CASE WHEN {condition} THEN 1 ELSE 0 END) AS BIGINT)"


EXTERNAL_FEATURES: tuple[ExternalFeature, ...] = (
    ExternalFeature(
        "penalties_12m",
        "penalties",
        _count_if(_window("date", 12)),
        "Administrative penalties over 12 months.",
    ),
    ExternalFeature(
        "penalties_36m",
        "penalties",
        _count_if(_window("date", 36)),
        "Administrative penalties over 36 months.",
    ),
    ExternalFeature(
        "severe_penalties_36m",
        "penalties",
        _count_if(f"{_window('date', 36)} AND severity IN ('suspension', 'revocation')"),
        "Suspensions and licence revocations over 36 months.",
    ),
    ExternalFeature(
        "penalty_fines_36m",
        "penalties",
        f"CAST(sum(CASE WHEN {_window('date', 36)} THEN coalesce(fine_minor, 0) ELSE 0 END)"
        " AS BIGINT)",
        "Fines imposed over 36 months (minor units).",
    ),
    ExternalFeature(
        "inspections_24m",
        "inspections",
        _count_if(_window("date", 24)),
        "Quality inspections over 24 months.",
    ),
    ExternalFeature(
        "failed_inspections_24m",
        "inspections",
        _count_if(f"{_window('date', 24)} AND result = 'fail'"),
        "Failed quality inspections over 24 months.",
    ),
    ExternalFeature(
        "judgments_defendant_12m",
        "judgments",
        _count_if(f"{_window('date', 12)} AND role = 'defendant'"),
        "Judgments against the enterprise (as defendant) over 12 months.",
    ),
    ExternalFeature(
        "judgments_defendant_36m",
        "judgments",
        _count_if(f"{_window('date', 36)} AND role = 'defendant'"),
        "Judgments against the enterprise over 36 months.",
    ),
    ExternalFeature(
        "judgment_amount_defendant_36m",
        "judgments",
        f"CAST(sum(CASE WHEN {_window('date', 36)} AND role = 'defendant' "
        "THEN coalesce(amount_minor, 0) ELSE 0 END) AS BIGINT)",
        "Amounts at stake in judgments against the enterprise over 36 months (minor units).",
    ),
    ExternalFeature(
        "judgments_plaintiff_36m",
        "judgments",
        _count_if(f"{_window('date', 36)} AND role = 'plaintiff'"),
        "Judgments the enterprise brought (as plaintiff) over 36 months.",
    ),
    ExternalFeature(
        "online_loans_opened_12m",
        "online_lending",
        _count_if(_window("opened_on", 12)),
        "Online loans opened over 12 months.",
    ),
    ExternalFeature(
        "online_loans_open",
        "online_lending",
        _count_if(
            "opened_on < DATE '{as_of}' AND (closed_on IS NULL OR closed_on >= DATE '{as_of}')"
        ),
        "Online loans open on the day before the as-of date.",
    ),
    ExternalFeature(
        "online_loans_overdue",
        "online_lending",
        _count_if(
            "opened_on < DATE '{as_of}' AND (closed_on IS NULL OR closed_on >= DATE "
            "'{as_of}') AND first_overdue_on < DATE '{as_of}'"
        ),
        "Open online loans that have been overdue.",
    ),
    ExternalFeature(
        "online_overdue_days",
        "online_lending",
        "max(CASE WHEN opened_on < DATE '{as_of}' AND (closed_on IS NULL OR closed_on >= "
        "DATE '{as_of}') AND first_overdue_on < DATE '{as_of}' "
        "THEN date_diff('day', first_overdue_on, DATE '{as_of}') END)",
        "Days since the first overdue day of the longest-overdue open online loan.",
    ),
)
"""Features from public records, by record kind (registry features come from the industry)."""

ZERO_IF_ABSENT_EXTERNAL: frozenset[str] = frozenset(
    f.name for f in EXTERNAL_FEATURES if f.name != "online_overdue_days"
)
"""External features that are 0 (not unknown) for an enterprise without records of a kind
whose file was supplied: the records cover every enterprise."""


def public_records_sql(
    as_of: date, kinds: Sequence[str], *, enterprises: Sequence[str] | None = None
) -> str | None:
    """The query of the public-record features of ``kinds`` (relations of
    :data:`RECORD_FILES`), one row per enterprise with any record before ``as_of``;
    ``None`` when no kind has features."""
    bounds = {f"m{m}": month_start(as_of, m).isoformat() for m in (12, 24, 36)}
    restrict = ""
    if enterprises is not None:
        codes = check_enterprises(enterprises)
        restrict = " AND credit_code IN (" + (", ".join(f"'{c}'" for c in codes) or "NULL") + ")"
    parts: list[tuple[str, list[ExternalFeature]]] = []
    for kind in sorted(set(kinds)):
        features = [f for f in EXTERNAL_FEATURES if f.kind == kind]
        if features:
            parts.append((kind, features))
    if not parts:
        return None
    ctes: list[str] = []
    for kind, features in parts:
        spec = RECORD_FILES[kind]
        day = "opened_on" if kind == "online_lending" else "date"
        columns = ",\n    ".join(
            f'{f.sql.format(as_of=as_of.isoformat(), **bounds)} AS "{f.name}"' for f in features
        )
        ctes.append(
            f"x_{kind} AS (\n  SELECT credit_code AS enterprise_id,\n    {columns}\n"
            f"  FROM {spec.relation}\n  WHERE {day} < DATE '{as_of.isoformat()}'{restrict}\n"
            "  GROUP BY credit_code\n)"
        )
    ids = " UNION ".join(f"SELECT enterprise_id FROM x_{kind}" for kind, _ in parts)
    selected = ", ".join(f'x_{kind}."{f.name}"' for kind, features in parts for f in features)
    joins = "\n".join(
        f"LEFT JOIN x_{kind} ON x_{kind}.enterprise_id = ids.enterprise_id" for kind, _ in parts
    )
    return (
        f"WITH {', '.join(ctes)}\nSELECT ids.enterprise_id, {selected}\n"
        f"FROM ({ids}) ids\n{joins}\nORDER BY ids.enterprise_id"
    )


INDUSTRY_FEATURES: tuple[str, ...] = (
    "industry_sales_yoy_3m",
    "industry_sales_yoy_12m",
    "industry_members",
    "sales_yoy_vs_industry_3m",
)
"""Per-enterprise industry features (see :func:`industry_sql`)."""


def industry_trends_sql(
    as_of: date, *, timezone: str = "Asia/Shanghai", currency: str = "CNY"
) -> str:
    """Industry trend index as of ``as_of``: one row per division and per section
    (``level``, ``code``, ``members``, ``sales_yoy_3m``, ``sales_yoy_12m``) over the matched
    panel of enterprises (relations ``transactions`` and ``ext_registry``)."""
    return _industry_ctes(as_of, timezone, currency) + (
        "\nSELECT level, code, members, sales_yoy_3m, sales_yoy_12m FROM ind_trends "
        "ORDER BY level, code"
    )


def industry_sql(
    as_of: date,
    *,
    timezone: str = "Asia/Shanghai",
    currency: str = "CNY",
    enterprises: Sequence[str] | None = None,
) -> str:
    """Per-enterprise industry features (:data:`INDUSTRY_FEATURES`): the trend of its division
    (or section, when the division has too few matched members) and its own 3-month
    year-on-year sales growth minus the industry's."""
    restrict = ""
    if enterprises is not None:
        codes = check_enterprises(enterprises)
        restrict = (
            " WHERE r.credit_code IN (" + (", ".join(f"'{c}'" for c in codes) or "NULL") + ")"
        )
    return (
        _industry_ctes(as_of, timezone, currency)
        + f"""
SELECT r.credit_code AS enterprise_id,
  CASE WHEN d.members >= {INDUSTRY_MIN_MEMBERS} THEN d.sales_yoy_3m
       WHEN s.members >= {INDUSTRY_MIN_MEMBERS} THEN s.sales_yoy_3m END
    AS industry_sales_yoy_3m,
  CASE WHEN d.members >= {INDUSTRY_MIN_MEMBERS} THEN d.sales_yoy_12m
       WHEN s.members >= {INDUSTRY_MIN_MEMBERS} THEN s.sales_yoy_12m END
    AS industry_sales_yoy_12m,
  CASE WHEN d.members >= {INDUSTRY_MIN_MEMBERS} THEN d.members
       WHEN s.members >= {INDUSTRY_MIN_MEMBERS} THEN s.members END AS industry_members,
  CAST(e.recent3 AS DOUBLE) / NULLIF(e.last_year3, 0) - 1
    - CASE WHEN d.members >= {INDUSTRY_MIN_MEMBERS} THEN d.sales_yoy_3m
           WHEN s.members >= {INDUSTRY_MIN_MEMBERS} THEN s.sales_yoy_3m END
    AS sales_yoy_vs_industry_3m
FROM ext_registry r
LEFT JOIN ind_trends d ON d.level = 'division' AND d.code = r.division
LEFT JOIN ind_trends s ON s.level = 'section' AND s.code = r.section
LEFT JOIN ind_sales e ON e.enterprise_id = r.credit_code{restrict}
ORDER BY r.credit_code"""
    )


def _industry_ctes(as_of: date, timezone: str, currency: str) -> str:
    m3, m12, m15, m24 = (month_start(as_of, m) for m in (3, 12, 15, 24))
    start = cutoff_instant(m24, timezone).strftime("%Y-%m-%d %H:%M:%S")
    cutoff = cutoff_instant(as_of, timezone).strftime("%Y-%m-%d %H:%M:%S")

    def instant(day: date) -> str:
        stamp = cutoff_instant(day, timezone).strftime("%Y-%m-%d %H:%M:%S")
        return f"TIMESTAMPTZ '{stamp}+00:00'"

    def period(low: date, high: date) -> str:
        # Local days [low, high) are the instants [local midnight of low, of high): comparing
        # instants needs no per-row time-zone conversion.
        return f"booked_at >= {instant(low)} AND booked_at < {instant(high)}"

    def total(low: date, high: date) -> str:
        return f"sum(CASE WHEN {period(low, high)} AND sales THEN amount ELSE 0 END)"

    def seen(low: date, high: date) -> str:
        return f"max(CASE WHEN {period(low, high)} THEN 1 ELSE 0 END)"

    return f"""WITH ind_tx AS (
  SELECT t.enterprise_id,
    t.booked_at,
    CAST(coalesce(t.corrected_amount_minor, t.amount_minor) AS BIGINT) AS amount,
    t.tx_type = 'sales_receipt' AND coalesce(t.corrected_amount_minor, t.amount_minor) > 0
      AS sales
  FROM transactions t
  WHERE t.enterprise_id IS NOT NULL AND t.currency = '{currency.replace("'", "''")}'
    AND t.tx_type <> 'internal_transfer'
    AND t.booked_at >= TIMESTAMPTZ '{start}+00:00' AND t.booked_at < TIMESTAMPTZ '{cutoff}+00:00'
),
ind_sales AS (
  SELECT enterprise_id,
    {total(m3, as_of)} AS recent3, {total(m15, m12)} AS last_year3,
    {total(m12, as_of)} AS recent12, {total(m24, m12)} AS last_year12,
    {seen(m3, as_of)} AS seen_recent3, {seen(m15, m12)} AS seen_last_year3,
    {seen(m12, as_of)} AS seen_recent12, {seen(m24, m12)} AS seen_last_year12
  FROM ind_tx
  GROUP BY enterprise_id
),
ind_members AS (
  SELECT r.division, r.section, e.*
  FROM ind_sales e JOIN ext_registry r ON r.credit_code = e.enterprise_id
),
ind_trends AS (
  SELECT 'division' AS level, division AS code,
    CAST(sum(CASE WHEN seen_recent3 = 1 AND seen_last_year3 = 1 THEN 1 ELSE 0 END) AS BIGINT)
      AS members,
    CAST(sum(CASE WHEN seen_recent3 = 1 AND seen_last_year3 = 1 THEN recent3 ELSE 0 END)
      AS DOUBLE) / NULLIF(sum(CASE WHEN seen_recent3 = 1 AND seen_last_year3 = 1
      THEN last_year3 ELSE 0 END), 0) - 1 AS sales_yoy_3m,
    CAST(sum(CASE WHEN seen_recent12 = 1 AND seen_last_year12 = 1 THEN recent12 ELSE 0 END)
      AS DOUBLE) / NULLIF(sum(CASE WHEN seen_recent12 = 1 AND seen_last_year12 = 1
      THEN last_year12 ELSE 0 END), 0) - 1 AS sales_yoy_12m
  FROM ind_members GROUP BY division
  UNION ALL
  SELECT 'section' AS level, section AS code,
    CAST(sum(CASE WHEN seen_recent3 = 1 AND seen_last_year3 = 1 THEN 1 ELSE 0 END) AS BIGINT)
      AS members,
    CAST(sum(CASE WHEN seen_recent3 = 1 AND seen_last_year3 = 1 THEN recent3 ELSE 0 END)
      AS DOUBLE) / NULLIF(sum(CASE WHEN seen_recent3 = 1 AND seen_last_year3 = 1
      THEN last_year3 ELSE 0 END), 0) - 1 AS sales_yoy_3m,
    CAST(sum(CASE WHEN seen_recent12 = 1 AND seen_last_year12 = 1 THEN recent12 ELSE 0 END)
      AS DOUBLE) / NULLIF(sum(CASE WHEN seen_recent12 = 1 AND seen_last_year12 = 1
      THEN last_year12 ELSE 0 END), 0) - 1 AS sales_yoy_12m
  FROM ind_members GROUP BY section
)"""


def import_external(directories: Sequence[str | Path], target: str | Path) -> dict[str, str]:
    """Validate the known files in ``directories`` and copy them into ``target``.

    All files are checked first (:func:`load_external`); only then is each copied under a
    temporary name and renamed, replacing the file of the same kind. Returns kind -> path.
    """
    import os
    import shutil

    data = load_external(*directories, default_macro_series=False)
    base = Path(target)
    base.mkdir(parents=True, exist_ok=True)
    copied: dict[str, str] = {}
    for kind, source in sorted(data.sources.items()):
        final = base / Path(source).name
        temporary = base / f".{final.name}.importing"
        shutil.copyfile(source, temporary)
        os.replace(temporary, final)
        copied[kind] = str(final)
    return copied
