"""BAI2 cash-management balance reports (``01`` ... ``99`` records), read with ``bai2``.

Rules:
- One statement per account (``03`` record) of each group (``02``). The library parses the
  records; this module keeps the line numbers (``location`` of an entry is the line of its
  ``16`` record, ``raw_text`` the ``16`` line with its ``88`` continuations) and checks the
  control totals and record counts of the ``49``, ``98`` and ``99`` trailers itself, so a
  mismatch is a :class:`~flowbureau.errors.ParseError` naming the trailer's line.
- Amounts are integers in the currency's minor units, as BAI2 defines them. The type code
  gives the direction: 100-399 credits (inflow), 400-699 debits (outflow). A ``16`` record
  whose type code carries no direction (e.g. 890, non-monetary information) is reported in
  ``pending`` with status ``INFO``.
- Balances: type code 010 (opening ledger) and 015 (closing ledger) of the ``03`` record;
  they may be negative.
- The booking date is the group's as-of date (with its time when stated); a value-dated
  funds type (``V``) gives the value date. Currency: the account's, else the group's, else
  USD, as BAI2 specifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from flowbureau.errors import ParseError
from flowbureau.formats.base import (
    BOOKED,
    BytesStatementReader,
    ParsedStatement,
    Sniff,
    StatementFacts,
)
from flowbureau.formats.entries import RawEntry, clean_text, entries_table
from flowbureau.formats.text import UTF8_BOM
from flowbureau.schema import InvalidCodeError, currency_exponent

_OPENING_LEDGER = "010"
_CLOSING_LEDGER = "015"


@dataclass(frozen=True, slots=True)
class _Record:
    """One logical record: its code, first line and the physical lines (with ``88``s)."""

    code: str
    line: int
    lines: tuple[str, ...]


class Bai2Reader(BytesStatementReader):
    """BAI2 (``--format bai2``)."""

    name = "bai2"

    def sniff(self, path: Path, head: bytes) -> Sniff:
        """BAI2 when the file starts with a ``01,`` file header followed by a ``02,`` record."""
        text = head.removeprefix(UTF8_BOM).lstrip()
        if text.startswith(b"01,"):
            if b"\n02," in text or b"\r02," in text:
                return Sniff(0.95, "01 file header followed by a 02 group header")
            return Sniff(0.5, "starts with a 01, record like a BAI2 file header")
        return Sniff(0.0, "does not start with a BAI2 01, file header record")

    def parse(self, data: bytes, path: Path) -> list[ParsedStatement]:
        """One statement per account of the file."""
        from bai2.exceptions import IntegrityException, NotSupportedYetException, ParsingException
        from bai2.helpers import IteratorHelper
        from bai2.parsers import Bai2FileParser

        text = data.removeprefix(UTF8_BOM).decode("latin-1")
        records = _records(text, path)

        class Counting(IteratorHelper):  # type: ignore[misc]
            """Knows which record the library is on, to name its line in errors."""

            def __init__(self, lines: list[str]) -> None:
                self.index = -1
                super().__init__(lines)

            def advance(self) -> None:
                super().advance()
                self.index += 1

        helper: Counting | None = None
        try:
            helper = Counting([line for r in records for line in r.lines])
            parsed = Bai2FileParser(helper, check_integrity=False).parse()
        except (
            ParsingException,
            NotSupportedYetException,
            IntegrityException,
            ValueError,
            IndexError,
            StopIteration,
            TypeError,
        ) as exc:
            index = helper.index if helper is not None else 0
            record = records[min(max(index, 0), len(records) - 1)]
            raise ParseError(
                f"record {record.code} cannot be read: {exc or type(exc).__name__}",
                file=path,
                line=record.line,
                field=record.code,
            ) from None
        return _File(path, records).statements(parsed)


def _records(text: str, path: Path) -> list[_Record]:
    records: list[_Record] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        code = line[:2]
        if code not in {"01", "02", "03", "16", "49", "88", "98", "99"} or line[2:3] != ",":
            raise ParseError(
                f"{line[:20]!r} is not a BAI2 record (01, 02, 03, 16, 49, 88, 98, 99)",
                file=path,
                line=number,
                field="record code",
            )
        if code == "88":
            if not records:
                raise ParseError("88 continuation before any record", file=path, line=number)
            last = records[-1]
            records[-1] = _Record(last.code, last.line, (*last.lines, line))
        else:
            records.append(_Record(code, number, (line,)))
    if not records:
        raise ParseError("empty file: no BAI2 records", file=path, line=1)
    _check_order(records, path)
    return records


_NEXT = {
    "": {"01"},
    "01": {"02", "99"},
    "02": {"03", "98"},
    "03": {"16", "49"},
    "16": {"16", "49"},
    "49": {"03", "98"},
    "98": {"02", "99"},
    "99": set(),
}


def _check_order(records: list[_Record], path: Path) -> None:
    """Records must nest 01 (02 (03 16* 49)* 98)* 99; the library loops on a truncated file."""
    previous = ""
    for record in records:
        if record.code not in _NEXT[previous]:
            expected = " or ".join(sorted(_NEXT[previous])) or "nothing after the 99 trailer"
            raise ParseError(
                f"record {record.code} where {expected} must come",
                file=path,
                line=record.line,
                field=record.code,
            )
        previous = record.code
    if previous != "99":
        last = records[-1]
        raise ParseError(
            "the file ends without its 99 trailer: truncated?",
            file=path,
            line=last.line + len(last.lines) - 1,
            field="99",
        )


class _File:
    """Walks the parsed model in file order, pairing each model object with its record."""

    def __init__(self, path: Path, records: list[_Record]) -> None:
        self.path = path
        self.records = records
        self.position = 0

    def take(self, code: str) -> _Record:
        record = self.records[self.position]
        if record.code != code:  # the library and the file disagree: never guess
            raise ParseError(
                f"expected a {code} record, found {record.code}",
                file=self.path,
                line=record.line,
                field=record.code,
            )
        self.position += 1
        return record

    def check(self, record: _Record, what: str, stated: Any, found: int) -> None:
        if stated is not None and int(stated) != found:
            raise ParseError(
                f"{what} is {stated} but the records add up to {found}",
                file=self.path,
                line=record.line,
                field=record.code,
            )

    def statements(self, parsed: Any) -> list[ParsedStatement]:
        statements: list[ParsedStatement] = []
        self.take("01")
        group_totals: list[int] = []
        for group in parsed.children:
            group_start = self.position
            header = self.take("02")
            account_totals: list[int] = []
            for account in group.children:
                statement, total = self.account(
                    account, group.header, header, parsed.header.file_id
                )
                statements.append(statement)
                account_totals.append(total)
            trailer = self.take("98")
            self.check(
                trailer,
                "group control total",
                group.trailer.group_control_total,
                sum(account_totals),
            )
            self.check(
                trailer, "number of accounts", group.trailer.number_of_accounts, len(group.children)
            )
            self.check(
                trailer,
                "number of group records",
                group.trailer.number_of_records,
                self.lines(group_start),
            )
            group_totals.append(sum(account_totals))
        trailer = self.take("99")
        self.check(
            trailer, "file control total", parsed.trailer.file_control_total, sum(group_totals)
        )
        self.check(
            trailer, "number of groups", parsed.trailer.number_of_groups, len(parsed.children)
        )
        self.check(
            trailer, "number of file records", parsed.trailer.number_of_records, self.lines(0)
        )
        if self.position != len(self.records):
            extra = self.records[self.position]
            raise ParseError("records after the 99 file trailer", file=self.path, line=extra.line)
        return statements

    def lines(self, since: int) -> int:
        """Physical records (``88`` continuations included) from record ``since`` to here."""
        return sum(len(r.lines) for r in self.records[since : self.position])

    def account(
        self, account: Any, group: Any, group_record: _Record, file_id: str | None
    ) -> tuple[ParsedStatement, int]:
        account_start = self.position
        identifier = self.take("03")
        currency = account.header.currency or group.currency or "USD"
        try:
            currency_exponent(currency)
        except InvalidCodeError as exc:
            raise ParseError(
                str(exc), file=self.path, line=identifier.line, field="currency"
            ) from None
        number = clean_text(account.header.customer_account_number)
        as_of: date | None = group.as_of_date
        if as_of is None:
            raise ParseError(
                "group header has no as-of date",
                file=self.path,
                line=group_record.line,
                field="as-of date",
            )
        at: time = group.as_of_time if group.as_of_time and group.as_of_time != time.max else time()
        if any(s.type_code is None for s in account.header.summary_items):
            raise ParseError(
                "a summary item has no type code",
                file=self.path,
                line=identifier.line,
                field="type code",
            )
        balances = {
            s.type_code.code: s.amount for s in account.header.summary_items if s.amount is not None
        }
        booked: list[RawEntry] = []
        pending: list[RawEntry] = []
        for detail in account.children:
            record = self.take("16")
            entry = self.entry(detail, record, number, currency, datetime.combine(as_of, at))
            (booked if entry.status == BOOKED else pending).append(entry)
        trailer = self.take("49")
        total = sum(s.amount or 0 for s in account.header.summary_items) + sum(
            d.amount or 0 for d in account.children
        )
        self.check(trailer, "account control total", account.trailer.account_control_total, total)
        self.check(
            trailer,
            "number of account records",
            account.trailer.number_of_records,
            self.lines(account_start),
        )
        facts = StatementFacts(
            account_number=number,
            currency=currency,
            opening_balance_minor=balances.get(_OPENING_LEDGER),
            closing_balance_minor=balances.get(_CLOSING_LEDGER),
            period_start=as_of,
            period_end=as_of,
            statement_ref=clean_text(file_id),
            servicer=clean_text(group.originator_id),
            location=str(identifier.line),
        )
        statement = ParsedStatement(
            facts=facts, entries=entries_table(booked), pending=entries_table(pending)
        )
        return statement, total

    def entry(
        self, detail: Any, record: _Record, account: str | None, currency: str, booked: datetime
    ) -> RawEntry:
        from bai2.constants import FundsType, TypeCodeTransaction

        code = detail.type_code
        if code is None:
            raise ParseError(
                "16 record without a type code", file=self.path, line=record.line, field="type code"
            )
        direction = {TypeCodeTransaction.credit: 1, TypeCodeTransaction.debit: -1}.get(
            code.transaction
        )
        value_date: date | None = None
        if detail.funds_type == FundsType.value_dated and detail.availability:
            value_date = detail.availability.get("date")
        if detail.amount is None:
            raise ParseError(
                "16 record without an amount", file=self.path, line=record.line, field="amount"
            )
        text = clean_text(detail.text)
        return RawEntry(
            booked_local=booked,
            value_date=value_date,
            amount_minor=int(detail.amount) * (direction or 1),
            currency=currency,
            status=BOOKED if direction else "INFO",
            location=str(record.line),
            account_number=account,
            description=" ".join(text.split()) if text else code.description,
            reference=clean_text(detail.bank_reference) or clean_text(detail.customer_reference),
            tx_code=code.code,
            raw_text="\n".join(record.lines),
        )
