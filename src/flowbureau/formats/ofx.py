"""OFX bank and credit-card statements (1.x SGML and 2.x XML), read with ``ofxparse``.

Rules:
- One statement per ``STMTRS`` (bank) or ``CCSTMTRS`` (credit card) aggregate.
- The text is decoded by this module (SGML ``ENCODING``/``CHARSET`` headers, the XML
  declaration, else UTF-8) and handed to ``ofxparse`` as ASCII with character references, so
  names in any script survive a library that would otherwise read 2.x files as ASCII.
- Every ``STMTTRN`` is checked here before the library sees it: ``TRNAMT``, ``DTPOSTED`` and
  ``FITID`` must be present and well-formed, else a :class:`~flowbureau.errors.ParseError`
  names the line of the ``<STMTTRN>`` and the field. ``location`` is that line, ``raw_text``
  the aggregate's text.
- ``TRNAMT`` is signed (negative: outflow). ``DTPOSTED`` keeps its local time;
  a ``[+8:CST]``-style offset goes to ``booked_offset_minutes``.
- OFX states only the closing ledger balance (``LEDGERBAL``): reconciliation does not apply
  unless a bank adds more.
- ``reference`` is ``FITID`` (the bank's unique id), else ``CHECKNUM``; ``description`` is ``MEMO``,
  ``tx_code`` the ``TRNTYPE``; ``counterparty_name`` is ``NAME`` (or ``PAYEE/NAME``).
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from flowbureau.errors import ParseError
from flowbureau.formats.base import BytesStatementReader, ParsedStatement, Sniff, StatementFacts
from flowbureau.formats.entries import RawEntry, clean_text, entries_table, to_minor_or_reason
from flowbureau.formats.text import UTF8_BOM, line_at
from flowbureau.schema import InvalidCodeError, MoneyError, currency_exponent, to_minor

_AGGREGATE_RE = re.compile(r"<(STMTRS|CCSTMTRS)>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_TRANSACTION_RE = re.compile(
    r"<STMTTRN>(.*?)(?=</STMTTRN>|<STMTTRN>|</BANKTRANLIST>)", re.IGNORECASE | re.DOTALL
)
_DATE_RE = re.compile(
    r"(?P<d>[0-9]{8})(?P<t>[0-9]{6})?(?:\.(?P<f>[0-9]{1,6}))?"
    r"(?:\[(?P<sign>[+-]?)(?P<h>[0-9]{1,2})(?:\.(?P<mm>[0-9]{1,2}))?(?::[^\]]*)?\])?"
)
_AMOUNT_RE = re.compile(r"[+-]?[0-9][0-9,]*(\.[0-9]+)?|[+-]?\.[0-9]+")
_HEADER_RE = re.compile(rb"OFXHEADER\s*[:=]")
_CHARSETS = {"1252": "cp1252", "8859-1": "latin-1", "ISO-8859-1": "latin-1", "NONE": "cp1252"}


def _tag(block: str, name: str) -> str | None:
    """The value of leaf element ``name`` in an SGML or XML block."""
    match = re.search(rf"<{name}>([^<\r\n]*)", block, re.IGNORECASE)
    return match.group(1).strip() if match else None


class OfxReader(BytesStatementReader):
    """OFX 1.x / 2.x (``--format ofx``)."""

    name = "ofx"

    def sniff(self, path: Path, head: bytes) -> Sniff:
        """OFX when the file has an OFX header (``OFXHEADER:`` or ``<?OFX``) or ``<OFX>``."""
        upper = head.upper() if b"<" in head else b""  # both tags need a "<"
        if _HEADER_RE.search(head) or b"<?OFX" in upper:
            return Sniff(1.0, "OFX header")
        if b"<OFX>" in upper:
            return Sniff(0.8, "<OFX> element without an OFX header")
        return Sniff(0.0, "no OFXHEADER / <?OFX header and no <OFX> element")

    def parse(self, data: bytes, path: Path) -> list[ParsedStatement]:
        """One statement per ``STMTRS`` / ``CCSTMTRS`` aggregate."""
        from ofxparse import OfxParser
        from ofxparse.ofxparse import OfxParserException

        text = _decode(data, path)
        aggregates = list(_AGGREGATE_RE.finditer(text))
        if not aggregates:
            raise ParseError(
                "no <STMTRS> or <CCSTMTRS> statement aggregate", file=path, line=1, field="STMTRS"
            )
        ascii_bytes = text.encode("ascii", "xmlcharrefreplace")
        if not text.lstrip().upper().startswith("OFXHEADER"):
            # ofxparse reads SGML headers only; an XML (2.x) file needs none once it is ASCII.
            ascii_bytes = re.sub(rb"^\s*<\?xml[^>]*\?>", b"", ascii_bytes)
        for aggregate in aggregates:
            self._check(aggregate, text, path)
        try:
            with warnings.catch_warnings():
                # ofxparse calls BeautifulSoup's deprecated findAll, and parses OFX 2 (XML)
                # with the HTML parser on purpose; neither warning is about the file.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", message="It looks like you're using an HTML")
                parsed = OfxParser.parse(io.BytesIO(ascii_bytes), fail_fast=True)
        except (OfxParserException, ValueError, IndexError, TypeError, AttributeError) as exc:
            raise ParseError(f"ofxparse cannot read the file: {exc}", file=path) from None
        # ofxparse lists bank statements first, then credit-card statements.
        ordered = sorted(aggregates, key=lambda m: m.group(1).upper() != "STMTRS")
        accounts = [a for a in parsed.accounts if getattr(a, "statement", None) is not None]
        if len(accounts) != len(ordered):
            raise ParseError(
                f"ofxparse found {len(accounts)} statements, the file has {len(ordered)}",
                file=path,
            )
        statements = [
            _statement(account, aggregate, text, path)
            for account, aggregate in zip(accounts, ordered, strict=True)
        ]
        order = [ordered.index(a) for a in aggregates]
        return [statements[i] for i in order]

    @staticmethod
    def _check(aggregate: re.Match[str], text: str, path: Path) -> None:
        for block in _TRANSACTION_RE.finditer(text, aggregate.start(), aggregate.end()):
            line = text.count("\n", 0, block.start()) + 1
            body = block.group(1)
            for field in ("TRNAMT", "DTPOSTED", "FITID"):
                if not _tag(body, field):
                    raise ParseError(
                        f"transaction without {field}", file=path, line=line, field=field
                    )
            amount = _tag(body, "TRNAMT") or ""
            if not _AMOUNT_RE.fullmatch(amount):
                raise ParseError(
                    f"TRNAMT {amount!r} is not a number", file=path, line=line, field="TRNAMT"
                )
            _when(_tag(body, "DTPOSTED") or "", path, line, "DTPOSTED")


def _decode(data: bytes, path: Path) -> str:
    """The text, decoded as the file declares (SGML headers, XML declaration, else UTF-8)."""
    data = data.removeprefix(UTF8_BOM)
    head = data[:2048]
    encoding = "utf-8"
    declared = re.search(rb"encoding=[\"']([A-Za-z0-9._-]+)", head)
    if declared:
        encoding = declared.group(1).decode()
    elif re.search(rb"ENCODING\s*:\s*USASCII", head):
        charset = re.search(rb"CHARSET\s*:\s*([A-Za-z0-9-]+)", head)
        name = charset.group(1).decode().upper() if charset else "1252"
        encoding = _CHARSETS.get(name, f"cp{name}" if name.isdigit() else "cp1252")
    try:
        return data.decode(encoding)
    except LookupError:
        raise ParseError(
            f"the file declares an unknown encoding {encoding!r}",
            file=path,
            line=1,
            field="encoding",
        ) from None
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"not valid {encoding} ({exc.reason}); the file is damaged or mislabelled",
            file=path,
            line=line_at(data, exc.start),
            field="encoding",
        ) from None


def _when(value: str, path: Path, line: int | None, field: str) -> tuple[datetime, int | None]:
    """An OFX date-time: naive local time, and offset minutes when ``[+h:TZ]`` states one."""
    match = _DATE_RE.fullmatch(value.strip())
    try:
        if match is None:
            raise ValueError(value)
        day = match.group("d")
        clock = match.group("t") or "000000"
        moment = datetime.strptime(day + clock, "%Y%m%d%H%M%S").replace(
            microsecond=int((match.group("f") or "0").ljust(6, "0"))
        )
    except ValueError:
        raise ParseError(
            f"{value!r} is not an OFX date (YYYYMMDD[HHMMSS[.XXX]][[+-h:TZ]])",
            file=path,
            line=line,
            field=field,
        ) from None
    if match.group("h") is None:
        return moment, None
    minutes = int(match.group("h")) * 60 + int((match.group("mm") or "0").ljust(2, "0")[:2])
    return moment, -minutes if match.group("sign") == "-" else minutes


def _statement(account: Any, aggregate: re.Match[str], text: str, path: Path) -> ParsedStatement:
    statement = account.statement
    start_line = text.count("\n", 0, aggregate.start()) + 1
    currency = (
        getattr(statement, "currency", None) or getattr(account, "curdef", None) or ""
    ).upper()
    try:
        currency_exponent(currency)
    except InvalidCodeError as exc:
        raise ParseError(str(exc), file=path, line=start_line, field="CURDEF") from None
    number = clean_text(getattr(account, "account_id", None))
    blocks = list(_TRANSACTION_RE.finditer(text, aggregate.start(), aggregate.end()))
    transactions = statement.transactions
    if len(blocks) != len(transactions):
        raise ParseError(
            f"ofxparse read {len(transactions)} transactions, the statement has {len(blocks)}",
            file=path,
            line=start_line,
            field="STMTTRN",
        )
    entries = []
    for block, transaction in zip(blocks, transactions, strict=True):
        line = text.count("\n", 0, block.start()) + 1
        moment, offset = _when(_tag(block.group(1), "DTPOSTED") or "", path, line, "DTPOSTED")
        memo = clean_text(getattr(transaction, "memo", None))
        kind = clean_text(getattr(transaction, "type", None))
        raw = RawEntry(
            booked_local=moment,
            booked_offset_minutes=offset,
            amount_minor=0,
            currency=currency,
            location=str(line),
            account_number=number,
            counterparty_name=clean_text(getattr(transaction, "payee", None)),
            description=memo,
            reference=clean_text(transaction.id)
            or clean_text(getattr(transaction, "checknum", None)),
            tx_code=kind.upper() if kind else None,
            raw_text=("<STMTTRN>" + block.group(1)).strip(),
        )
        minor, reason = to_minor_or_reason(Decimal(transaction.amount), currency)
        entries.append(raw.invalid(reason) if reason else replace(raw, amount_minor=minor))
    closing = None
    balance = getattr(statement, "balance", None)
    if balance is not None:
        try:
            closing = to_minor(Decimal(balance), currency)
        except MoneyError as exc:
            raise ParseError(str(exc), file=path, line=start_line, field="LEDGERBAL") from None
    span = aggregate.group(2)
    start = _tag(span, "DTSTART")
    end = _tag(span, "DTEND")
    facts = StatementFacts(
        account_number=number,
        currency=currency,
        closing_balance_minor=closing,
        servicer=clean_text(getattr(account, "routing_number", None)),
        period_start=_when(start, path, start_line, "DTSTART")[0].date() if start else None,
        period_end=_when(end, path, start_line, "DTEND")[0].date() if end else None,
        location=str(start_line),
    )
    return ParsedStatement(facts=facts, entries=entries_table(entries))
