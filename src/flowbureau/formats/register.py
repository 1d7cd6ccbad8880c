"""Customer account registers (开户清单): which enterprise owns which account.

Rules:
- CSV (UTF-8 with or without BOM, GBK / GB18030) or XLSX with a header row (within the first 30
  lines) holding 账号, 户名 and 统一社会信用代码 (synonyms below); 币种 and 开户日期 are optional.
- A file whose first lines also look like a transaction export (a date and an amount column)
  is a statement, not a register.
- Every row must carry an account number and a unified social credit code with a valid check
  digit (GB 32100-2015); otherwise :class:`~flowbureau.errors.InputError` names the line and
  the column. Blank rows and summary rows (合计/总计) are skipped.
- One account, one owner: the same account listed twice with different credit codes is an
  error at the second line; an exact repeat is kept once.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flowbureau.errors import InputError, ParseError
from flowbureau.formats.base import Sniff
from flowbureau.formats.layout import (
    MAX_HEADER_LINE,
    currency_code,
    normalize_header,
    split_cells,
)
from flowbureau.formats.profiles import builtin_profiles
from flowbureau.formats.tabular import XLSX_MAGIC, Head, read_head, xlsx_rows
from flowbureau.formats.text import UTF8_BOM, choose_encoding, decode, first_bad_utf8_line
from flowbureau.schema import InvalidCodeError, validate_credit_code

ENCODINGS = ("utf-8-sig", "gb18030")
COLUMNS: dict[str, tuple[str, ...]] = {
    "account": ("账号", "帐号", "账户", "银行账号"),
    "owner": ("户名", "账户名称", "单位名称", "客户名称", "企业名称"),
    "credit_code": ("统一社会信用代码",),
    "currency": ("币种",),
}
"""Header synonyms of a register's columns (the first three are required)."""

_SUMMARY = re.compile(r"^\s*(合计|总计)")


@dataclass(frozen=True)
class AccountRecord:
    """One account of a register: its number, owner and the owner's credit code."""

    account_number: str
    owner_name: str
    credit_code: str
    currency: str | None
    location: str


def _columns(cells: Sequence[str]) -> dict[str, int] | None:
    header = [normalize_header(c) for c in cells]
    found: dict[str, int] = {}
    for key, names in COLUMNS.items():
        index = next((header.index(n) for n in names if n in header), None)
        if index is not None:
            found[key] = index
    return found if all(k in found for k in ("account", "owner", "credit_code")) else None


def _header_candidates(head: Head) -> list[tuple[int, list[str]]]:
    """The rows that may be a register header: with CSV text, only lines that contain the
    credit-code header at all (a cell equal to it after trimming contains it) are split."""
    if head.lines is None:
        return list(head.rows)
    (needle,) = COLUMNS["credit_code"]
    return [
        (number, split_cells(text, head.delimiter))
        for number, text in head.lines
        if needle in (text.replace("\ufeff", "") if "\ufeff" in text else text)
    ]


def _is_statement(head: Head) -> bool:
    generic = builtin_profiles()["generic"]
    return not isinstance(head.layout(generic), str)


class RegisterReader:
    """Account registers (``--format register``)."""

    name = "register"

    def sniff(self, path: Path, head: bytes) -> Sniff:
        """0.9 when a header row has 账号, 户名 and 统一社会信用代码 and no transaction columns."""
        info = read_head(path, head, ENCODINGS, ",")
        if info.problem:
            return Sniff(0.0, info.problem)
        for number, cells in _header_candidates(info):
            if _columns(cells) is not None:
                if _is_statement(info):
                    return Sniff(0.0, "has transaction columns (date, amount): a statement")
                return Sniff(0.9, f"register header at line {number}")
        return Sniff(0.0, "no header row with 账号, 户名 and 统一社会信用代码")

    def parse_accounts(self, data: bytes, path: Path) -> list[AccountRecord]:
        """Every account of a register already in memory (``path`` names it in errors)."""
        rows = self._rows(data, path)
        header = next(
            ((n, c, cols) for n, c in rows[:MAX_HEADER_LINE] if (cols := _columns(c))), None
        )
        if header is None:
            raise ParseError(
                "no header row with 账号, 户名 and 统一社会信用代码 in the first "
                f"{MAX_HEADER_LINE} lines",
                file=path,
                line=1,
            )
        header_line, header_cells, columns = header
        names = {k: normalize_header(header_cells[i]) for k, i in columns.items()}
        records: dict[str, AccountRecord] = {}
        for number, cells in rows:
            if number <= header_line or not any(c.strip() for c in cells):
                continue
            if _SUMMARY.match(next((c for c in cells if c.strip()), "")):
                continue

            def cell(key: str, cells: list[str] = cells) -> str:
                index = columns.get(key)
                return cells[index].strip() if index is not None and index < len(cells) else ""

            account = cell("account").lstrip("'").removeprefix('="').removesuffix('"')
            if not account:
                raise InputError(
                    "empty account number", file=path, line=number, field=names["account"]
                )
            owner = cell("owner")
            if not owner:
                raise InputError(
                    "empty account owner", file=path, line=number, field=names["owner"]
                )
            try:
                code = validate_credit_code(cell("credit_code"))
            except InvalidCodeError as exc:
                raise InputError(
                    str(exc), file=path, line=number, field=names["credit_code"]
                ) from None
            currency_text = cell("currency")
            currency = currency_code(currency_text) if currency_text else None
            if currency_text and currency is None:
                raise InputError(
                    f"unknown currency {currency_text!r}",
                    file=path,
                    line=number,
                    field=names["currency"],
                )
            record = AccountRecord(account, owner, code, currency, str(number))
            known = records.get(account)
            if known is not None and known.credit_code != code:
                raise InputError(
                    f"account {account} is listed at line {known.location} for {known.credit_code} "
                    f"and here for {code}",
                    file=path,
                    line=number,
                    field=names["credit_code"],
                )
            records.setdefault(account, record)
        return list(records.values())

    @staticmethod
    def _rows(data: bytes, path: Path) -> list[tuple[int, list[str]]]:
        if data.startswith(XLSX_MAGIC):
            return list(xlsx_rows(data, path))
        encoding, why = choose_encoding(data[: 64 << 10], ENCODINGS)
        if why:
            line = first_bad_utf8_line(data[: 64 << 10])
            raise InputError(why, file=path, line=line, field="encoding")
        text = decode(data.removeprefix(UTF8_BOM), encoding, file=path)
        reader = csv.reader(io.StringIO(text, newline=""))
        rows: list[tuple[int, list[str]]] = []
        consumed = 0
        try:
            for cells in reader:
                rows.append((consumed + 1, cells))
                consumed = reader.line_num
        except csv.Error as exc:
            raise ParseError(f"CSV syntax: {exc}", file=path, line=consumed + 1) from None
        return rows
