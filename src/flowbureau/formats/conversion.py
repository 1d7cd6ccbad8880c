"""Bank-export rows to canonical entries, a column at a time (Arrow compute, no row loops).

Rules:
- Cells are trimmed; Excel's ``="..."`` text wrapper is removed.
- Not records: rows whose cells are all empty, and summary rows (the first non-empty cell
  starts with one of the profile's ``summary_markers``). Summary rows are set aside so their
  totals can be checked against the entries above them (a mismatch is a warning).
- Dates: each of the profile's ``date_formats`` in turn; a value none accepts is an
  :class:`~flowbureau.errors.InputError` naming line and header. Arrow rolls an impossible day
  over (2024-02-30 -> 2024-03-01); such values are caught and reported the same way. A
  separate time column is parsed with ``time_formats`` (or a date-time format, keeping its
  time of day).
- Amounts: commas are removed; a plain ``-?digits[.digits]`` is converted exactly from its
  digits (integer arithmetic, never a float); anything else goes through
  :func:`~flowbureau.schema.parse_amount` one row at a time (parentheses, trailing minus,
  full-width digits, spaces), and what that rejects is an ``InputError``.
  Debit/credit pair: amount = credit - debit. Amount + direction: the direction's sign.
- INVALID rows (see :mod:`flowbureau.formats.base`): an empty date or amount or direction,
  debit and credit both non-zero, more decimals than the currency allows (amount or balance).
  Their amount is 0, their status ``INVALID:<reason>``, their text kept.
- Running balance: consecutive balances must differ by the amounts between them, in either
  chronological or newest-first order; the first break is a warning. Opening balance = first
  balance minus the amounts up to it, closing = last balance plus the amounts after it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowbureau.errors import InputError
from flowbureau.formats.base import (
    BOOKED,
    INVALID_PREFIX,
    EntrySpan,
    ParsedStatement,
    StatementFacts,
)
from flowbureau.formats.layout import Layout, currency_code
from flowbureau.schema import (
    RAW_ENTRY_SCHEMA,
    MoneyError,
    currency_exponent,
    format_minor,
    parse_amount,
    to_minor,
)

_PLAIN_AMOUNT = r"^-?[0-9]+(\.[0-9]+)?$"
_POWERS = pa.array([10**k for k in range(19)], pa.int64())
_EPOCH_1900_US = -2_208_988_800_000_000  # a time parsed alone lands on 1900-01-01
_DAY_US = 86_400_000_000
_EPOCH_DATE = date(1970, 1, 1)
_PLACEHOLDER_US = 0  # 1970-01-01: booked_local of a row whose date is empty (INVALID)
_DIGITS = pa.array(list("0123456789"))
_FORMAT_FIELDS = {"%Y": r"(?P<Y>[0-9]{4})", "%m": r"(?P<m>[0-9]{1,2})", "%d": r"(?P<d>[0-9]{1,2})"}


@dataclass
class Body:
    """Rows to convert: the needed columns' text, each row's line and its source text."""

    cells: dict[int, pa.Array]
    lines: pa.Array
    raw: pa.Array
    money: dict[str, pa.Array] = field(default_factory=dict)
    """Money fields the CSV parser already read exactly (int64 minor units, null = empty)."""
    plain: bool = False
    """True when the source has no full-width space and no ``="`` anywhere (cheap to know for
    a CSV chunk), so cleaning only needs to trim ASCII whitespace."""


@dataclass(frozen=True)
class Summary:
    """A summary row: its line and the totals it states (``None``: cells do not line up)."""

    line: int
    cells: dict[str, str] | None


@dataclass
class Converted:
    """One body's entries, the summary rows found in it, and the entries' line numbers."""

    entries: pa.Table
    summaries: list[Summary]
    lines: pa.Array


@dataclass(frozen=True)
class Context:
    """What converting one file needs to know."""

    path: Path
    layout: Layout
    account: str | None
    currency: str
    date_formats: tuple[str, ...]
    time_formats: tuple[str, ...]
    directions: dict[str, tuple[str, ...]]
    delimiter: str
    summary_markers: tuple[str, ...]
    warnings: list[str] = field(default_factory=list)

    @property
    def blank_line(self) -> re.Pattern[str]:
        """A line with nothing but delimiters, quotes and whitespace."""
        return _blank_line(self.delimiter)

    @property
    def summary_line(self) -> re.Pattern[str]:
        """A line whose first non-empty cell starts with a summary marker."""
        return _summary_line(self.delimiter, self.summary_markers)

    def error(self, message: str, line: int, field_name: str) -> InputError:
        """An ``InputError`` at ``line`` naming the header of canonical ``field_name``."""
        columns = self.layout.columns
        header = self.layout.name(field_name) if field_name in columns else field_name
        return InputError(message, file=self.path, line=line, field=header)

    def summary(self, line: int, cells: Sequence[str]) -> Summary:
        """A summary row from all its cells (``None`` totals when they do not line up)."""
        if len(cells) < len(self.layout.header):
            return Summary(line, None)
        wanted = ("debit", "credit", "amount", "direction")
        columns = self.layout.columns
        return Summary(line, {f: cells[columns[f]].strip() for f in wanted if f in columns})


@functools.lru_cache(maxsize=64)
def _blank_line(delimiter: str) -> re.Pattern[str]:
    return re.compile(f'^[{re.escape(delimiter)}\\s"]*$')


@functools.lru_cache(maxsize=64)
def _summary_line(delimiter: str, summary_markers: tuple[str, ...]) -> re.Pattern[str]:
    markers = "|".join(re.escape(m) for m in summary_markers) or "(?!)"
    return re.compile(f'^[{re.escape(delimiter)}\\s"]*(?:{markers})')


def clean(values: pa.Array, *, plain: bool = False) -> pa.Array:
    """Cells trimmed, with Excel's ``="..."`` wrapper removed (``plain``: neither occurs)."""
    values = pc.ascii_trim_whitespace(values)
    if plain:
        return values
    if _any(pc.or_(pc.starts_with(values, "\u3000"), pc.ends_with(values, "\u3000"))):
        values = pc.utf8_trim_whitespace(values)  # full-width spaces (U+3000)
    if pc.any(pc.starts_with(values, '="')).as_py():
        values = pc.replace_substring_regex(values, pattern='^="(.*)"$', replacement="\\1")
    return values


def _first(mask: pa.Array) -> int | None:
    """Index of the first true value (nulls count as false)."""
    found = pc.indices_nonzero(pc.fill_null(mask, False))
    return int(found[0].as_py()) if len(found) else None


def _any(mask: pa.Array) -> bool:
    return bool(pc.any(pc.fill_null(mask, False)).as_py())


def _line(lines: pa.Array, index: int) -> int:
    return int(lines[index].as_py())


def _nullify(values: pa.Array) -> pa.Array:
    """Empty strings as nulls (a new validity bitmap over the same data when possible)."""
    present = pc.not_equal(values, "")
    if values.offset or values.null_count or present.offset or present.null_count:
        return pc.if_else(present, values, pa.scalar(None, pa.string()))
    return pa.Array.from_buffers(
        values.type, len(values), [present.buffers()[1], *values.buffers()[1:]]
    )


def convert(body: Body, ctx: Context) -> Converted:
    """Rows -> ``RAW_ENTRY_SCHEMA`` table; summary rows set aside."""
    cells = {i: clean(v, plain=body.plain) for i, v in body.cells.items()}
    lines, raw, parsed_money = body.lines, body.raw, body.money
    columns = ctx.layout.columns
    drop, summaries = _not_records(cells, parsed_money, lines, raw, ctx)
    if drop is not None:
        keep = pc.invert(drop)
        cells = {i: v.filter(keep) for i, v in cells.items()}
        parsed_money = {k: v.filter(keep) for k, v in parsed_money.items()}
        lines, raw = lines.filter(keep), raw.filter(keep)
    n = len(lines)

    def text(name: str) -> pa.Array | None:
        return cells[columns[name]] if name in columns else None

    reasons: list[tuple[pa.Array, Callable[[], pa.Array | pa.Scalar]]] = []
    dates = text("date")
    assert dates is not None  # a layout always has a date column
    booked, empty_date = _booked(dates, text("time"), lines, ctx)
    reasons.append((empty_date, lambda: pa.scalar("empty date")))
    currencies = _currencies(text("currency"), lines, ctx, n)

    def money(name: str) -> pa.Array:
        if name in parsed_money:
            return parsed_money[name]
        values = text(name)
        assert values is not None
        minor, too_fine = _money(values, currencies, lines, ctx, name)
        reasons.append((too_fine, _too_fine(name, values, currencies)))
        return minor

    if ctx.layout.pair:
        debit, credit = money("debit"), money("credit")
        reasons.append(
            (
                pc.and_(pc.is_null(debit), pc.is_null(credit)),
                lambda: pa.scalar("empty amount (debit and credit both empty)"),
            )
        )
        both = pc.and_(
            pc.not_equal(pc.fill_null(debit, 0), 0), pc.not_equal(pc.fill_null(credit, 0), 0)
        )
        reasons.append((both, lambda: pa.scalar("debit and credit amounts both non-zero")))
        amount = pc.subtract(pc.fill_null(credit, 0), pc.fill_null(debit, 0))
    else:
        magnitude = money("amount")
        reasons.append((pc.is_null(magnitude), lambda: pa.scalar("empty amount")))
        amount = pc.fill_null(magnitude, 0)
        direction = text("direction")
        if direction is not None:
            sign, empty_direction = _directions(direction, lines, ctx)
            reasons.append((empty_direction, lambda: pa.scalar("empty direction")))
            amount = pc.multiply(amount, sign)
    balance = money("balance") if "balance" in columns else pa.nulls(n, pa.int64())
    status: pa.Array = pa.nulls(n, pa.string())
    for mask, reason in reasons:
        if _any(mask):
            chosen = pc.and_(pc.fill_null(mask, False), pc.is_null(status))
            status = pc.if_else(chosen, reason(), status)
    invalid = pc.is_valid(status)
    if _any(invalid):
        amount = pc.if_else(invalid, 0, amount)
        status = pc.binary_join_element_wise(pa.scalar(INVALID_PREFIX), status, "")
    status = pc.fill_null(status, BOOKED)
    descriptions = [cells[i] for i in ctx.layout.description]
    table = pa.table(
        {
            "account_number": pa.repeat(pa.scalar(ctx.account, pa.string()), n),
            "booked_local": pc.cast(booked, pa.timestamp("us")),
            "booked_offset_minutes": pa.nulls(n, pa.int16()),
            "value_date": pa.nulls(n, pa.date32()),
            "amount_minor": pc.cast(amount, pa.int64()),
            "currency": currencies,
            "balance_after_minor": balance,
            "counterparty_name": _optional(text("counterparty_name"), n),
            "counterparty_account": _optional(text("counterparty_account"), n),
            "counterparty_bank": _optional(text("counterparty_bank"), n),
            "description": _join(descriptions, n),
            "reference": _optional(text("reference"), n),
            "end_to_end_id": pa.nulls(n, pa.string()),
            "tx_code": pa.nulls(n, pa.string()),
            "status": status,
            "location": pc.cast(lines, pa.string()),
            "raw_text": raw,
        },
        schema=RAW_ENTRY_SCHEMA,
    )
    return Converted(table, summaries, lines)


def _not_records(
    cells: dict[int, pa.Array],
    money: dict[str, pa.Array],
    lines: pa.Array,
    raw: pa.Array,
    ctx: Context,
) -> tuple[pa.Array | None, list[Summary]]:
    """Mask of blank and summary rows (``None`` when there are none), and the summaries.

    Neither kind has a date: only rows whose date cell does not start with a digit are
    candidates, and the exact line patterns run on those few rows.
    """
    dates = cells[ctx.layout.columns["date"]]
    candidates = pc.invert(pc.is_in(pc.utf8_slice_codeunits(dates, 0, 1), value_set=_DIGITS))
    if not _any(candidates):
        return None, []
    rows = pc.indices_nonzero(candidates)
    texts = pc.take(raw, rows)
    blank = pc.match_substring_regex(texts, ctx.blank_line.pattern)
    summary = pc.match_substring_regex(texts, ctx.summary_line.pattern)
    width = len(ctx.layout.header)
    summaries: list[Summary] = []
    for index in pc.filter(rows, summary).to_pylist():
        row_cells = [""] * width
        for column, values in cells.items():
            row_cells[column] = values[index].as_py() or ""
        for name, minor in money.items():
            value = minor[index].as_py()
            text = "" if value is None else format_minor(value, ctx.currency)
            row_cells[ctx.layout.columns[name]] = text
        summaries.append(ctx.summary(_line(lines, index), row_cells))
    dropped = pc.filter(rows, pc.or_(blank, summary)).to_numpy()
    if not len(dropped):
        return None, summaries
    mask = np.zeros(len(raw), dtype=bool)
    mask[dropped] = True
    return pa.array(mask), summaries


def _optional(values: pa.Array | None, n: int) -> pa.Array:
    return _nullify(values) if values is not None else pa.nulls(n, pa.string())


def _join(parts: list[pa.Array], n: int) -> pa.Array:
    """Non-empty parts joined with `` | ``.

    pyarrow 26's ``binary_join_element_wise(null_handling="skip")`` drops rows whose parts
    are all null, so empty parts are joined and the separators cleaned up instead.
    """
    if not parts:
        return pa.nulls(n, pa.string())
    if len(parts) == 1:
        return _nullify(parts[0])
    joined = pc.binary_join_element_wise(*parts, "\x1f")
    joined = pc.replace_substring_regex(joined, pattern="\x1f+", replacement="\x1f")
    joined = pc.replace_substring_regex(joined, pattern="^\x1f|\x1f$", replacement="")
    return _nullify(pc.replace_substring(joined, "\x1f", " | "))


def _too_fine(name: str, values: pa.Array, currencies: pa.Array) -> Callable[[], pa.Array]:
    def reason() -> pa.Array:
        return pc.binary_join_element_wise(
            pa.scalar(f"{name} "),
            values,
            pa.scalar(" has more decimals than "),
            currencies,
            pa.scalar(" allows"),
            "",
        )

    return reason


def _booked(
    dates: pa.Array, times: pa.Array | None, lines: pa.Array, ctx: Context
) -> tuple[pa.Array, pa.Array]:
    """Booking time as int64 microseconds (placeholder where the date is empty)."""
    empty = pc.equal(dates, "")
    parsed, which = _strptime(dates, ctx.date_formats)
    bad = _first(pc.and_(pc.is_null(parsed), pc.invert(empty)))
    if bad is not None:
        raise ctx.error(
            f"date {dates[bad].as_py()!r} matches none of the date formats "
            f"{list(ctx.date_formats)}",
            _line(lines, bad),
            "date",
        )
    _check_calendar(dates, parsed, which, lines, ctx)
    micros = pc.fill_null(pc.cast(parsed, pa.int64()), _PLACEHOLDER_US)
    if times is not None:
        micros = pc.add(micros, _time_of_day(times, lines, ctx))
    return micros, empty


def _strptime(values: pa.Array, formats: Sequence[str]) -> tuple[pa.Array, pa.Array]:
    """Each format in turn until every non-empty value is parsed (null where none matches),
    and per row the index of the format that parsed it (the first in order; null if none)."""
    result: pa.Array = pa.nulls(len(values), pa.timestamp("us"))
    which: pa.Array = pa.nulls(len(values), pa.int8())
    wanted = len(values) - (pc.sum(pc.equal(values, "")).as_py() or 0)
    for index, fmt in enumerate(formats):
        done = len(result) - result.null_count
        if done >= wanted:
            break
        attempt = pc.strptime(values, format=fmt, unit="us", error_is_null=True)
        if done == 0:
            result = attempt
            which = pc.if_else(pc.is_valid(attempt), pa.scalar(index, pa.int8()), which)
            continue
        fresh = pc.and_(pc.is_null(result), pc.is_valid(attempt))
        result = pc.coalesce(result, attempt)
        which = pc.if_else(fresh, pa.scalar(index, pa.int8()), which)
    return result, which


def _format_pattern(fmt: str) -> str | None:
    """A regex capturing year, month and day of a strptime format, if it has all three."""
    if not all(k in fmt for k in _FORMAT_FIELDS):
        return None
    out, index = [], 0
    while index < len(fmt):
        piece = fmt[index : index + 2]
        if piece in _FORMAT_FIELDS:
            out.append(_FORMAT_FIELDS[piece])
            index += 2
        elif piece.startswith("%"):
            out.append(".*?")
            index += 2
        else:
            out.append(re.escape(fmt[index]))
            index += 1
    return "^" + "".join(out) + "$"


def _check_calendar(
    texts: pa.Array, parsed: pa.Array, which: pa.Array, lines: pa.Array, ctx: Context
) -> None:
    """Catch days Arrow rolled over: they land on day 1-3, where the text (read with the
    format that parsed the row) says otherwise."""
    candidates = pc.and_(pc.is_valid(parsed), pc.less_equal(pc.day(parsed), 3))
    if not _any(candidates):
        return
    positions = pc.indices_nonzero(candidates)
    sub_text = pc.take(texts, positions)
    sub_day = pc.day(pc.take(parsed, positions))
    sub_which = pc.take(which, positions)
    agrees: pa.Array = pa.repeat(pa.scalar(False), len(positions))
    for index in pc.unique(sub_which).to_pylist():
        pattern = _format_pattern(ctx.date_formats[index])
        if pattern is None:
            continue
        parts = pc.extract_regex(sub_text, pattern=pattern)
        day = pc.cast(pc.struct_field(parts, "d"), pa.int64())
        own = pc.equal(sub_which, index)
        agrees = pc.or_(agrees, pc.fill_null(pc.and_(own, pc.equal(day, sub_day)), False))
    for index in pc.indices_nonzero(pc.invert(agrees)).to_pylist():
        value = sub_text[index].as_py()
        if not _python_parses(value, ctx.date_formats):
            raise ctx.error(
                f"date {value!r} is not a calendar date",
                _line(lines, int(positions[index].as_py())),
                "date",
            )


def _python_parses(value: str, formats: Sequence[str]) -> bool:
    for fmt in formats:
        try:
            datetime.strptime(value, fmt)
        except ValueError:
            continue
        return True
    return False


def _time_of_day(times: pa.Array, lines: pa.Array, ctx: Context) -> pa.Array:
    """Microseconds since midnight from a separate time column (0 where empty)."""
    empty = pc.equal(times, "")
    formats = ctx.time_formats or ("%H:%M:%S",)
    clock, _ = _strptime(times, formats)
    micros = pc.subtract(pc.cast(clock, pa.int64()), _EPOCH_1900_US)
    missing = pc.and_(pc.is_null(clock), pc.invert(empty))
    if _any(missing):
        combined = [f for f in ctx.date_formats if "%H" in f]
        if combined:
            moments, _ = _strptime(pc.if_else(missing, times, ""), combined)
            midnight = pc.cast(
                pc.cast(pc.cast(moments, pa.date32()), pa.timestamp("us")), pa.int64()
            )
            micros = pc.coalesce(micros, pc.subtract(pc.cast(moments, pa.int64()), midnight))
        bad = _first(pc.and_(pc.is_null(micros), pc.invert(empty)))
        if bad is not None:
            raise ctx.error(
                f"time {times[bad].as_py()!r} matches none of the time formats {list(formats)}",
                _line(lines, bad),
                "time",
            )
    over = _first(pc.greater_equal(micros, _DAY_US))
    if over is not None:
        raise ctx.error(
            f"time {times[over].as_py()!r} is not a time of day", _line(lines, over), "time"
        )
    return pc.fill_null(micros, 0)


def _currencies(values: pa.Array | None, lines: pa.Array, ctx: Context, n: int) -> pa.Array:
    """ISO code per row: the currency column where it has a value, else the statement's."""
    if values is None:
        return pa.repeat(pa.scalar(ctx.currency), n)
    mapping: dict[str, str] = {}
    for value in pc.unique(values).to_pylist():
        code = currency_code(value) if value else ctx.currency
        if code is None:
            row = _first(pc.equal(values, value))
            assert row is not None
            raise ctx.error(f"unknown currency {value!r}", _line(lines, row), "currency")
        mapping[value] = code
    if len(set(mapping.values())) <= 1:
        return pa.repeat(pa.scalar(next(iter(mapping.values()), ctx.currency)), n)
    keys = pa.array(list(mapping), pa.string())
    codes = pa.array(list(mapping.values()), pa.string())
    return pc.take(codes, pc.index_in(values, value_set=keys))


def _money(
    values: pa.Array, currencies: pa.Array, lines: pa.Array, ctx: Context, name: str
) -> tuple[pa.Array, pa.Array]:
    """Exact signed minor units (null where empty) and the mask of too-fine amounts."""
    distinct = pc.unique(currencies).to_pylist()
    if len(distinct) == 1:
        fast = _money_exact(values, currency_exponent(distinct[0]))
        if fast is not None:
            return fast, pa.repeat(pa.scalar(False), len(values))
    empty = pc.equal(values, "")
    plain = pc.match_substring_regex(values, _PLAIN_AMOUNT)
    if _any(pc.and_(pc.invert(plain), pc.invert(empty))):  # thousands separators?
        values = pc.replace_substring(values, ",", "")
        plain = pc.match_substring_regex(values, _PLAIN_AMOUNT)
    dot = pc.find_substring(values, ".")
    decimals = pc.if_else(
        pc.less(dot, 0), 0, pc.subtract(pc.subtract(pc.binary_length(values), dot), 1)
    )
    digits = pc.if_else(plain, pc.replace_substring(values, ".", ""), "0")
    try:
        number = pc.cast(digits, pa.int64())
    except pa.ArrowInvalid:
        row = _first(pc.greater(pc.binary_length(pc.utf8_ltrim(digits, characters="-0")), 18))
        at = row if row is not None else 0
        raise ctx.error(
            f"{name} {values[at].as_py()!r} is too large", _line(lines, at), name
        ) from None
    result: pa.Array = pa.nulls(len(values), pa.int64())
    too_fine: pa.Array = pa.repeat(pa.scalar(False), len(values))
    for currency in distinct:
        exponent = currency_exponent(currency)
        rows = plain if len(distinct) == 1 else pc.and_(plain, pc.equal(currencies, currency))
        short = pc.less_equal(decimals, exponent)
        up = pc.take(_POWERS, pc.max_element_wise(pc.subtract(exponent, decimals), 0))
        down = pc.take(
            _POWERS,
            pc.min_element_wise(pc.max_element_wise(pc.subtract(decimals, exponent), 0), 18),
        )
        try:
            scaled = pc.multiply_checked(number, up)
        except pa.ArrowInvalid:
            row = _first(pc.greater(pc.binary_length(digits), 18 - exponent)) or 0
            raise ctx.error(
                f"{name} {values[row].as_py()!r} is too large", _line(lines, row), name
            ) from None
        quotient = pc.divide(number, down)
        exact = pc.equal(pc.multiply(quotient, down), number)
        value = pc.if_else(short, scaled, quotient)
        fine = pc.and_(rows, pc.and_(pc.invert(short), pc.invert(exact)))
        result = pc.if_else(pc.and_(rows, pc.invert(fine)), value, result)
        too_fine = pc.or_(too_fine, fine)
    slow = pc.and_(pc.invert(plain), pc.invert(empty))
    if _any(slow):
        result, too_fine = _money_slow(
            values,
            slow,
            currencies=currencies,
            result=result,
            too_fine=too_fine,
            lines=lines,
            ctx=ctx,
            name=name,
        )
    return result, too_fine


def _money_exact(values: pa.Array, exponent: int) -> pa.Array | None:
    """The common case in three steps: every value is empty or ``-?digits.dd`` with exactly
    the currency's decimals, so dropping the point gives the minor units; else ``None``."""
    pattern = f"^-?[0-9]+\\.[0-9]{{{exponent}}}$" if exponent else "^-?[0-9]+$"
    shaped = pc.match_substring_regex(values, pattern)
    if not pc.all(pc.or_(shaped, pc.equal(values, ""))).as_py():
        return None
    digits = _nullify(pc.replace_substring(values, ".", "") if exponent else values)
    try:
        return pc.cast(digits, pa.int64())
    except pa.ArrowInvalid:  # more than 18 digits: the general path names the row
        return None


def _money_slow(
    values: pa.Array,
    slow: pa.Array,
    *,
    currencies: pa.Array,
    result: pa.Array,
    too_fine: pa.Array,
    lines: pa.Array,
    ctx: Context,
    name: str,
) -> tuple[pa.Array, pa.Array]:
    """Rows the plain pattern rejects (``(1.00)``, ``1.00-``, full-width digits): one by one."""
    numbers: list[int | None] = []
    fine: list[bool] = []
    for index in pc.indices_nonzero(slow).to_pylist():
        value = values[index].as_py()
        try:
            amount = parse_amount(value)
        except MoneyError:
            raise ctx.error(
                f"{name} {value!r} is not a number", _line(lines, index), name
            ) from None
        try:
            numbers.append(to_minor(amount, currencies[index].as_py()))
            fine.append(False)
        except MoneyError:
            numbers.append(None)
            fine.append(True)
    result = pc.replace_with_mask(result, slow, pa.array(numbers, pa.int64()))
    too_fine = pc.replace_with_mask(too_fine, slow, pa.array(fine, pa.bool_()))
    return result, too_fine


def _directions(values: pa.Array, lines: pa.Array, ctx: Context) -> tuple[pa.Array, pa.Array]:
    """+1 / -1 per row from the direction column, and the mask of empty directions."""
    debit = pc.is_in(values, value_set=pa.array(ctx.directions["debit"], pa.string()))
    credit = pc.is_in(values, value_set=pa.array(ctx.directions["credit"], pa.string()))
    empty = pc.equal(values, "")
    unknown = _first(pc.and_(pc.invert(pc.or_(debit, credit)), pc.invert(empty)))
    if unknown is not None:
        raise ctx.error(
            f"direction {values[unknown].as_py()!r} is none of debit "
            f"{list(ctx.directions['debit'])} / credit {list(ctx.directions['credit'])}",
            _line(lines, unknown),
            "direction",
        )
    return pc.cast(pc.if_else(debit, -1, 1), pa.int64()), empty


def statement(
    ctx: Context,
    converted: Sequence[Converted],
    footer: Sequence[Summary],
    facts: dict[str, Any],
    warnings: Sequence[str],
) -> ParsedStatement:
    """The file's one statement: entries of every body, checks, facts and warnings."""
    if converted:
        entries = pa.concat_tables([c.entries for c in converted])
    else:
        entries = RAW_ENTRY_SCHEMA.empty_table()
    notes = list(warnings) + list(ctx.warnings)
    summaries = [s for c in converted for s in c.summaries] + list(footer)
    if summaries:
        lines = (
            np.concatenate([c.lines.to_numpy() for c in converted]) if converted else np.zeros(0)
        )
        notes.extend(_check_summaries(entries, lines, summaries, ctx))
    opening, closing, balance_notes = _running_balance(entries)
    notes.extend(balance_notes)
    booked = pc.equal(entries.column("status"), BOOKED)
    span = pc.min_max(pc.filter(entries.column("booked_local"), booked)).as_py()
    period: tuple[date | None, date | None] = facts.get("period") or (None, None)
    result = StatementFacts(
        account_number=ctx.account,
        owner_name=facts.get("owner"),
        owner_id=facts.get("credit_code"),
        currency=ctx.currency,
        opening_balance_minor=opening,
        closing_balance_minor=closing,
        period_start=period[0] or (span["min"].date() if span["min"] else None),
        period_end=period[1] or (span["max"].date() if span["max"] else None),
        location=str(ctx.layout.line),
    )
    if ctx.account is None:
        notes.append("the file states no account number (no preamble 账号 line)")
    return ParsedStatement(facts=result, entries=entries, warnings=tuple(notes))


@dataclass(frozen=True)
class FileBody:
    """One file's place in a bulk conversion: its context and facts, the virtual line (in the
    concatenated buffer) of its first body line, the real number of that line, its footer."""

    ctx: Context
    facts: dict[str, Any]
    virtual_start: int
    first_line: int
    footer: Sequence[Summary]


def statements_bulk(
    converted: Converted, files: Sequence[FileBody]
) -> list[tuple[ParsedStatement, int | None]]:
    """Split one conversion of several files' concatenated bodies into their statements.

    ``converted`` came from :func:`convert` over the bodies of ``files`` joined in order, with
    *virtual* line numbers (1 = the first line of the first body). Gives, per file, exactly
    what :func:`statement` gives for that file alone (entries are zero-copy slices of one
    table, with real line numbers and the file's account number) and its reconciliation
    difference (see :func:`~flowbureau.formats.base.reconcile`), computed for all files at
    once: running balances, periods and sums are segment operations over the whole table.
    """
    count = len(files)
    virtual = np.asarray(converted.lines.to_numpy(), dtype=np.int64)
    vstart = np.array([f.virtual_start for f in files], dtype=np.int64)
    first_line = np.array([f.first_line for f in files], dtype=np.int64)
    starts = np.searchsorted(virtual, vstart, side="left")
    ends = np.append(starts[1:], len(virtual))
    sizes = ends - starts
    owner = np.repeat(np.arange(count), sizes)
    real = virtual - vstart[owner] + first_line[owner]
    table = converted.entries
    accounts = pa.array([f.ctx.account for f in files], pa.string())
    for name, values in (
        ("account_number", accounts.take(pa.array(owner))),
        ("location", pc.cast(pa.array(real), pa.string())),
    ):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index), values)
    table = table.combine_chunks()
    summaries: list[list[Summary]] = [[] for _ in files]
    for summary in converted.summaries:
        index = int(np.searchsorted(vstart, summary.line, side="right")) - 1
        line = summary.line - int(vstart[index]) + int(first_line[index])
        summaries[index].append(Summary(line, summary.cells))
    balances = _running_balances(table, owner, starts, ends, count)
    spans = _booked_spans(table, starts, sizes)
    amounts = np.asarray(table.column("amount_minor").to_numpy(), dtype=np.int64)
    running = np.concatenate(([0], np.cumsum(amounts)))
    totals = running[ends] - running[starts]
    currencies = pc.fill_null(
        pc.not_equal(
            table.column("currency"),
            pa.array([f.ctx.currency for f in files], pa.string()).take(pa.array(owner)),
        ),
        True,
    )
    foreign = np.bincount(
        owner[np.asarray(currencies.to_numpy(zero_copy_only=False), dtype=bool)],
        minlength=count,
    )
    out: list[tuple[ParsedStatement, int | None]] = []
    for index, file in enumerate(files):
        ctx = file.ctx
        size = int(sizes[index])
        entries = table.slice(int(starts[index]), size)
        notes = list(ctx.warnings)
        found = summaries[index] + list(file.footer)
        if found:
            lines = real[starts[index] : ends[index]]
            notes.extend(_check_summaries(entries, lines, found, ctx))
        opening, closing, balance_note = balances[index]
        if balance_note:
            notes.append(balance_note)
        low, high = spans[index]
        period: tuple[date | None, date | None] = file.facts.get("period") or (None, None)
        facts = StatementFacts(
            account_number=ctx.account,
            owner_name=file.facts.get("owner"),
            owner_id=file.facts.get("credit_code"),
            currency=ctx.currency,
            opening_balance_minor=opening,
            closing_balance_minor=closing,
            period_start=period[0] or low,
            period_end=period[1] or high,
            location=str(ctx.layout.line),
        )
        if ctx.account is None:
            notes.append("the file states no account number (no preamble 账号 line)")
        diff = None
        if opening is not None and closing is not None and not (size and foreign[index]):
            diff = closing - (opening + int(totals[index]))
        out.append(
            (
                ParsedStatement(
                    facts=facts,
                    entries=entries,
                    warnings=tuple(notes),
                    span=EntrySpan(table, int(starts[index])),
                ),
                diff,
            )
        )
    return out


def _running_balances(
    table: pa.Table, owner: np.ndarray[Any, Any], starts: Any, ends: Any, count: int
) -> list[tuple[int | None, int | None, str | None]]:
    """:func:`_running_balance` of every file segment at once (same opening, closing, note)."""
    result: list[tuple[int | None, int | None, str | None]] = [(None, None, None)] * count
    balances = table.column("balance_after_minor")
    if balances.null_count == table.num_rows:
        return result
    amounts = np.asarray(table.column("amount_minor").to_numpy(), dtype=np.int64)
    known = np.asarray(pc.is_valid(balances).to_numpy(zero_copy_only=False), dtype=bool)
    values = np.asarray(pc.fill_null(balances, 0).to_numpy(), dtype=np.int64)
    cumulative = np.cumsum(amounts)
    before = cumulative - amounts  # sum of the amounts before each row (chunk-wide)
    positions = np.flatnonzero(known)
    files = owner[positions]
    b = values[positions]
    same = files[1:] == files[:-1]
    pair_file = files[1:]
    forward = b[1:] - b[:-1] == cumulative[positions[1:]] - cumulative[positions[:-1]]
    backward = b[:-1] - b[1:] == before[positions[1:]] - before[positions[:-1]]
    forward_ok = np.bincount(pair_file[same & forward], minlength=count)
    backward_ok = np.bincount(pair_file[same & backward], minlength=count)
    chronological = forward_ok >= backward_ok
    broken = same & ~np.where(chronological[pair_file], forward, backward)
    breaks = np.bincount(pair_file[broken], minlength=count)
    first_break = np.flatnonzero(broken)
    first_known = np.searchsorted(files, np.arange(count), side="left")
    last_known = np.searchsorted(files, np.arange(count), side="right") - 1
    locations = table.column("location")
    for index in np.flatnonzero(last_known >= first_known).tolist():
        first, last = positions[first_known[index]], positions[last_known[index]]
        end = ends[index] - 1
        b_first, b_last = int(values[first]), int(values[last])
        if chronological[index]:
            opening = b_first - int(cumulative[first] - before[starts[index]])
            closing = b_last + int(cumulative[end] - cumulative[last])
            order = "chronological"
        else:
            opening = b_last - int(cumulative[end] - before[last])
            closing = b_first + int(before[first] - before[starts[index]])
            order = "newest-first"
        note = None
        if breaks[index]:
            pair = first_break[np.searchsorted(pair_file[first_break], index, side="left")]
            at = locations[int(positions[pair + 1])].as_py()
            note = (
                f"running balance ({order} order) breaks at line {at} ({int(breaks[index])} "
                "break(s)): rows are missing, reordered or altered"
            )
        result[index] = (opening, closing, note)
    return result


def _booked_spans(
    table: pa.Table, starts: Any, sizes: Any
) -> list[tuple[date | None, date | None]]:
    """Per file segment, the first and last booking date of its booked entries."""
    spans: list[tuple[date | None, date | None]] = [(None, None)] * len(sizes)
    nonempty = np.flatnonzero(sizes > 0)
    if not len(nonempty):
        return spans
    booked = np.asarray(
        pc.equal(table.column("status"), BOOKED).to_numpy(zero_copy_only=False), dtype=bool
    )
    micros = np.asarray(
        pc.cast(table.column("booked_local"), pa.int64()).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    big = np.iinfo(np.int64).max
    low = np.minimum.reduceat(np.where(booked, micros, big), starts[nonempty])
    high = np.maximum.reduceat(np.where(booked, micros, -big), starts[nonempty])
    for index, first, last in zip(nonempty.tolist(), low.tolist(), high.tolist(), strict=True):
        if first != big:
            spans[index] = (_micros_date(first), _micros_date(last))
    return spans


def _micros_date(micros: int) -> date:
    return _EPOCH_DATE + timedelta(days=micros // _DAY_US)


def _check_summaries(
    entries: pa.Table, lines: np.ndarray[Any, Any], summaries: list[Summary], ctx: Context
) -> list[str]:
    """Compare the totals summary rows state with the entries above them."""
    amounts = np.asarray(entries.column("amount_minor").to_numpy())
    warnings: list[str] = []
    previous = 0
    for summary in sorted(summaries, key=lambda s: s.line):
        if summary.cells is None:
            warnings.append(
                f"summary row at line {summary.line} not checked: its cells do not line up "
                "with the header"
            )
            previous = summary.line
            continue
        groups = (
            amounts[(lines > previous) & (lines < summary.line)],
            amounts[lines < summary.line],
        )
        totals: dict[str, list[int]] = {
            "debit": [int(-g[g < 0].sum()) for g in groups],
            "credit": [int(g[g > 0].sum()) for g in groups],
        }
        if not ctx.layout.pair:
            direction = summary.cells.get("direction", "")
            if direction in ctx.directions["debit"]:
                totals = {"amount": totals["debit"]}
            elif direction in ctx.directions["credit"]:
                totals = {"amount": totals["credit"]}
            else:
                totals = {
                    "amount": [abs(int(g.sum())) for g in groups]
                    + [int(abs(g).sum()) for g in groups]
                }
        for name, found in totals.items():
            text = summary.cells.get(name, "")
            try:
                stated = to_minor(abs(parse_amount(text)), ctx.currency) if text else None
            except MoneyError:
                stated = None  # e.g. "共12笔": a count, not a total
            if stated is not None and stated not in found:
                warnings.append(
                    f"summary row at line {summary.line} states {ctx.layout.name(name)} total "
                    f"{text}; the entries add up to {found[0]} minor units since the previous "
                    f"summary row, {found[1]} in all"
                )
        previous = summary.line
    return warnings


def _running_balance(entries: pa.Table) -> tuple[int | None, int | None, list[str]]:
    """Opening/closing balance from a balance column, and where the running balance breaks."""
    balances = entries.column("balance_after_minor")
    if balances.null_count == entries.num_rows:
        return None, None, []
    amounts = np.asarray(entries.column("amount_minor").to_numpy(), dtype=np.int64)
    known = np.asarray(pc.is_valid(balances).to_numpy(zero_copy_only=False))
    values = np.asarray(pc.fill_null(balances, 0).to_numpy(), dtype=np.int64)
    positions = np.flatnonzero(known)
    b = values[positions]
    cumulative = np.cumsum(amounts)
    before = np.concatenate(([0], cumulative))  # before[i]: sum of amounts[:i]
    first, last = positions[0], positions[-1]
    # Chronological: b[j] - b[j-1] == sum(amounts[p(j-1)+1 .. p(j)]).
    forward = b[1:] - b[:-1] == cumulative[positions[1:]] - cumulative[positions[:-1]]
    # Newest first: b[j-1] - b[j] == sum(amounts[p(j-1) .. p(j)-1]).
    backward = b[:-1] - b[1:] == before[positions[1:]] - before[positions[:-1]]
    if forward.sum() >= backward.sum():
        opening = int(b[0] - cumulative[first])
        closing = int(b[-1] + cumulative[-1] - cumulative[last])
        breaks, order = np.flatnonzero(~forward), "chronological"
    else:
        opening = int(b[-1] - (cumulative[-1] - before[last]))
        closing = int(b[0] + before[first])
        breaks, order = np.flatnonzero(~backward), "newest-first"
    if not len(breaks):
        return opening, closing, []
    at = entries.column("location")[int(positions[breaks[0] + 1])].as_py()
    return (
        opening,
        closing,
        [
            f"running balance ({order} order) breaks at line {at} ({len(breaks)} break(s)): "
            "rows are missing, reordered or altered"
        ],
    )
