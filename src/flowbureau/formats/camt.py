"""ISO 20022 cash-management statements: camt.053, camt.052 and camt.054.

Rules:
- Namespaces ``urn:iso:std:iso:20022:tech:xsd:camt.05x.001.NN``: camt.053 (``BkToCstmrStmt/
  Stmt``) and camt.052 (``BkToCstmrAcctRpt/Rpt``) are statements with balances, camt.054
  (``BkToCstmrDbtCdtNtfctn/Ntfctn``) notifications with entries only. Versions 001.02 to
  001.08 are what banks send today; the layouts of 001.01 and later versions read the same.
- lxml parses with entity resolution and network access off; a file that is not well-formed
  XML is a :class:`~flowbureau.errors.ParseError` at the line lxml names.
- ``location`` is an XML path like ``/Document/BkToCstmrStmt/Stmt[1]/Ntry[3]``, ``raw_text``
  the entry's XML.
- Status: ``Sts`` (text up to v7, ``Sts/Cd`` from v8). ``BOOK`` entries become transactions;
  ``PDNG``, ``INFO`` and any other status are reported in ``pending`` and never stored.
- Sign: ``CdtDbtInd`` CRDT is an inflow, DBIT an outflow. A reversal (``RvslInd``) is signed
  by its own indicator too, as ISO 20022 defines it.
- Dates: ``BookgDt`` (else ``ValDt``) ``Dt`` or ``DtTm``; a ``DtTm`` offset goes to
  ``booked_offset_minutes``; fractions finer than a microsecond are cut. A booked entry with
  no date is an ``INVALID:`` entry.
- Batch bookings (several ``TxDtls`` in one ``Ntry``): one record per ``Ntry`` with the booked
  amount ``Ntry/Amt``, counterparty and references from the *first* ``TxDtls``, and the count
  in ``description`` ("batch of N transactions"); ``raw_text`` holds every ``TxDtls``. Splitting
  a batch would invent bookings the bank did not make, and the balances only ever move by
  ``Ntry/Amt``.
- Counterparty: the debtor side for a credit, the creditor side for a debit (``Dbtr``/
  ``Cdtr`` name, else the ultimate party; ``...Acct/Id/IBAN`` or ``Othr/Id``; ``RltdAgts``
  BIC, else the agent's name). ``reference`` is ``AcctSvcrRef`` (entry, then transaction),
  else the first of ``TxId``, ``InstrId``, ``MsgId``, ``PmtInfId``, ``UETR``; ``EndToEndId``
  unless ``NOTPROVIDED``. ``description`` joins the batch note, ``Ustrd`` lines, the
  ``Strd`` creditor reference, ``AddtlTxInf`` and ``AddtlNtryInf``.
- Balances: opening ``OPBD`` else ``PRCD``; closing ``CLBD`` (camt.052: else ``ITBD``), signed
  by ``CdtDbtInd``. A balance in another currency than the statement's is not used (warning).
- The account owner's ``OrgId/Othr/Id`` becomes ``owner_id`` when it is a valid unified social
  credit code.
- An amount with more decimals than its currency allows is an ``INVALID:`` entry.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from flowbureau.errors import ParseError
from flowbureau.formats.base import (
    BOOKED,
    BytesStatementReader,
    ParsedStatement,
    Sniff,
    StatementFacts,
)
from flowbureau.formats.entries import (
    PLACEHOLDER_BOOKED,
    RawEntry,
    clean_text,
    entries_table,
    to_minor_or_reason,
)
from flowbureau.schema import (
    InvalidCodeError,
    MoneyError,
    currency_exponent,
    is_valid_credit_code,
    to_minor,
)

if TYPE_CHECKING:
    from lxml import etree

_NAMESPACE_RE = re.compile(r"urn:iso:std:iso:20022:tech:xsd:camt\.(05[234])\.001\.([0-9]{2})")
_SNIFF_RE = re.compile(rb"urn:iso:std:iso:20022:tech:xsd:camt\.05[234]\.001\.[0-9]{2}")
_MESSAGES = {
    "053": ("BkToCstmrStmt", "Stmt"),
    "052": ("BkToCstmrAcctRpt", "Rpt"),
    "054": ("BkToCstmrDbtCdtNtfctn", "Ntfctn"),
}
_AMOUNT_RE = re.compile(r"[0-9]+(\.[0-9]+)?")
_DATETIME_RE = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})"
    r"(?:T(?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})(?:\.(?P<f>[0-9]+))?)?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?"
)
_NO_REFERENCE = {"NOTPROVIDED", "NONREF"}


class CamtReader(BytesStatementReader):
    """ISO 20022 camt.052 / camt.053 / camt.054 (``--format camt``)."""

    name = "camt"

    def sniff(self, path: Path, head: bytes) -> Sniff:
        """camt when the first bytes declare a camt.052/053/054 namespace."""
        match = _SNIFF_RE.search(head)
        if match:
            return Sniff(1.0, f"XML namespace {match.group().decode()}")
        if b"<Document" in head or head.lstrip().startswith(b"<?xml"):
            return Sniff(0.0, "XML but not an ISO 20022 camt.052/053/054 namespace")
        return Sniff(0.0, "not XML with a camt.052/053/054 namespace")

    def parse(self, data: bytes, path: Path) -> list[ParsedStatement]:
        """Every statement, report or notification of the file."""
        from lxml import etree

        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        )
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as exc:
            raise ParseError(
                f"not well-formed XML: {exc.msg}", file=path, line=exc.lineno or None
            ) from None
        qname = etree.QName(root)
        match = _NAMESPACE_RE.fullmatch(qname.namespace or "")
        if qname.localname != "Document" or match is None:
            raise ParseError(
                f"root element {{{qname.namespace}}}{qname.localname} is not a camt.052/053/054 "
                "Document",
                file=path,
                path=f"/{qname.localname}",
            )
        kind = match.group(1)
        doc = _Doc(qname.namespace or "", path, kind)
        message_name, statement_name = _MESSAGES[kind]
        message = next((c for c in root if etree.QName(c).localname.startswith(message_name)), None)
        if message is None:
            raise ParseError(f"Document has no {message_name} element", file=path, path="/Document")
        base = f"/Document/{etree.QName(message).localname}"
        statements = message.findall(doc.q(statement_name))
        if not statements:
            raise ParseError(
                f"{etree.QName(message).localname} has no {statement_name} element",
                file=path,
                path=base,
            )
        return [
            doc.statement(element, f"{base}/{statement_name}[{index}]")
            for index, element in enumerate(statements, start=1)
        ]


class _Doc:
    """Reading helpers bound to one file's namespace."""

    def __init__(self, namespace: str, path: Path, kind: str) -> None:
        self.ns = namespace
        self.path = path
        self.kind = kind

    def q(self, steps: str) -> str:
        """An ElementPath with every step in the file's namespace."""
        return "/".join(f"{{{self.ns}}}{step}" for step in steps.split("/"))

    def text(self, element: etree._Element | None, steps: str) -> str | None:
        """Stripped text at ``steps`` below ``element`` (``None`` when absent or empty)."""
        if element is None:
            return None
        found = element.find(self.q(steps))
        return clean_text(found.text) if found is not None else None

    def first(self, element: etree._Element | None, *paths: str) -> str | None:
        """The first non-empty text among ``paths``."""
        for steps in paths:
            value = self.text(element, steps)
            if value:
                return value
        return None

    def error(self, message: str, where: str, field: str | None = None) -> ParseError:
        return ParseError(message, file=self.path, path=where, field=field)

    def amount(self, element: etree._Element, where: str) -> tuple[Decimal, str]:
        """``Amt`` value and currency below ``element`` (malformed: ``ParseError``)."""
        amt = element.find(self.q("Amt"))
        if amt is None or not (amt.text or "").strip():
            raise self.error("amount missing", where, "Amt")
        text = (amt.text or "").strip()
        currency = (amt.get("Ccy") or "").strip()
        if not _AMOUNT_RE.fullmatch(text):
            raise self.error(f"amount {text!r} is not a non-negative decimal number", where, "Amt")
        try:
            currency_exponent(currency)
        except InvalidCodeError as exc:
            raise self.error(str(exc), where, "Amt/@Ccy") from None
        return Decimal(text), currency

    def sign(self, element: etree._Element, where: str) -> int:
        indicator = self.text(element, "CdtDbtInd")
        if indicator == "CRDT":
            return 1
        if indicator == "DBIT":
            return -1
        raise self.error(f"CdtDbtInd {indicator!r} is neither CRDT nor DBIT", where, "CdtDbtInd")

    def when(
        self, element: etree._Element | None, where: str, field: str
    ) -> tuple[datetime, int | None] | None:
        """``Dt`` or ``DtTm`` below ``element``: naive local time and UTC offset minutes."""
        value = self.first(element, "DtTm", "Dt")
        return None if value is None else self.moment(value, where, field)

    def moment(self, value: str, where: str, field: str) -> tuple[datetime, int | None]:
        """An ISO 8601 date or date-time: naive local time and UTC offset minutes (if stated)."""
        match = _DATETIME_RE.fullmatch(value)
        try:
            if match is None:
                raise ValueError(value)
            day = date.fromisoformat(match.group("date"))
            fraction = (match.group("f") or "")[:6].ljust(6, "0")
            moment = datetime(
                day.year,
                day.month,
                day.day,
                int(match.group("h") or 0),
                int(match.group("m") or 0),
                int(match.group("s") or 0),
                int(fraction),
            )
        except ValueError:
            raise self.error(
                f"{value!r} is not an ISO 8601 date or date-time", where, field
            ) from None
        zone = match.group("tz")
        if zone is None:
            return moment, None
        if zone == "Z":
            return moment, 0
        minutes = int(zone[1:3]) * 60 + int(zone[4:6])
        return moment, -minutes if zone[0] == "-" else minutes

    def period(self, element: etree._Element, where: str) -> tuple[date | None, date | None]:
        """``FrToDt`` of a statement: its first and last day."""
        bounds: list[date | None] = []
        for names in (("FrDtTm", "FrDt"), ("ToDtTm", "ToDt")):
            value = self.first(element, *(f"FrToDt/{n}" for n in names))
            bounds.append(
                self.moment(value, f"{where}/FrToDt", names[0])[0].date() if value else None
            )
        return bounds[0], bounds[1]

    def statement(self, element: etree._Element, where: str) -> ParsedStatement:
        account = element.find(self.q("Acct"))
        if account is None:
            raise self.error("statement has no Acct (account)", where, "Acct")
        number = self.first(
            account, "Id/IBAN", "Id/Othr/Id", "Id/PrtryAcct/Id", "Id/BBAN", "Id/UPIC"
        )
        owner = account.find(self.q("Ownr"))
        owner_id = next(
            (
                clean_text(o.text)
                for o in (owner.iterfind(self.q("Id/OrgId/Othr/Id")) if owner is not None else [])
                if is_valid_credit_code(clean_text(o.text) or "")
            ),
            None,
        )
        warnings: list[str] = []
        booked: list[RawEntry] = []
        pending: list[RawEntry] = []
        for index, entry in enumerate(element.iterfind(self.q("Ntry")), start=1):
            raw = self.entry(entry, f"{where}/Ntry[{index}]", number)
            (
                booked if raw.status == BOOKED or raw.status.startswith("INVALID:") else pending
            ).append(raw)
        currency = (
            self.text(account, "Ccy")
            or self.balance_currency(element)
            or next((e.currency for e in (*booked, *pending)), None)
        )
        opening, opened = self.balance(element, where, ("OPBD", "PRCD"), currency, warnings)
        closing_codes = ("CLBD", "ITBD") if self.kind == "052" else ("CLBD",)
        closing, closed = self.balance(element, where, closing_codes, currency, warnings)
        period_start, period_end = self.period(element, where)
        dates = [e.booked_local.date() for e in booked if e.booked_local != PLACEHOLDER_BOOKED]
        facts = StatementFacts(
            account_number=number,
            owner_name=self.text(account, "Ownr/Nm") or self.text(account, "Nm"),
            owner_id=owner_id,
            servicer=self.first(
                account,
                "Svcr/FinInstnId/BIC",
                "Svcr/FinInstnId/BICFI",
                "Svcr/FinInstnId/Nm",
                "Svcr/FinInstnId/NmAndAdr/Nm",
            ),
            currency=currency,
            opening_balance_minor=opening,
            closing_balance_minor=closing,
            period_start=opened or period_start or (min(dates) if dates else None),
            period_end=closed or period_end or (max(dates) if dates else None),
            statement_ref=self.text(element, "Id"),
            location=where,
        )
        foreign = sorted({e.currency for e in booked} - {currency})
        if foreign:
            warnings.append(f"{where}: entries in {', '.join(foreign)} besides {currency}")
        return ParsedStatement(
            facts=facts,
            entries=entries_table(booked),
            pending=entries_table(pending),
            warnings=tuple(warnings),
        )

    def balance_currency(self, element: etree._Element) -> str | None:
        """The currency of the statement's first balance."""
        amt = element.find(self.q("Bal/Amt"))
        return None if amt is None else (amt.get("Ccy") or "").strip() or None

    def balance(
        self,
        element: etree._Element,
        where: str,
        codes: tuple[str, ...],
        currency: str | None,
        warnings: list[str],
    ) -> tuple[int | None, date | None]:
        """The first balance of the first of ``codes`` present: signed minor units and date."""
        found: dict[str, tuple[etree._Element, str]] = {}
        for index, bal in enumerate(element.iterfind(self.q("Bal")), start=1):
            code = self.first(bal, "Tp/CdOrPrtry/Cd", "Tp/CdOrPrtry/Prtry")
            if code in codes and code not in found:
                found[code] = (bal, f"{where}/Bal[{index}]")
        for code in codes:
            if code not in found:
                continue
            bal, bal_where = found[code]
            amount, bal_currency = self.amount(bal, bal_where)
            if bal_currency != currency:
                warnings.append(
                    f"{bal_where}: {code} balance is in {bal_currency}, the statement in "
                    f"{currency}; not used"
                )
                return None, None
            try:
                minor = to_minor(amount, bal_currency) * self.sign(bal, bal_where)
            except MoneyError as exc:
                raise self.error(str(exc), bal_where, "Amt") from None
            when = self.when(bal.find(self.q("Dt")), bal_where, "Dt")
            return minor, when[0].date() if when else None
        return None, None

    def entry(self, entry: etree._Element, where: str, account: str | None) -> RawEntry:
        from lxml import etree

        amount, currency = self.amount(entry, where)
        sign = self.sign(entry, where)
        status = self.first(entry, "Sts/Cd", "Sts/Prtry") or self.text(entry, "Sts")
        if not status:
            raise self.error("entry has no status (Sts)", where, "Sts")
        booked_at = self.when(entry.find(self.q("BookgDt")), where, "BookgDt")
        value = self.when(entry.find(self.q("ValDt")), where, "ValDt")
        moment = booked_at or value
        details = entry.findall(self.q("NtryDtls/TxDtls"))
        first = details[0] if details else None
        parties, agents = self.counterparty(first, sign)
        notes: list[str] = []
        if len(details) > 1:
            notes.append(f"batch of {len(details)} transactions; details of the first")
        if first is not None:
            notes.extend(clean_text(u.text) or "" for u in first.iterfind(self.q("RmtInf/Ustrd")))
            creditor_ref = self.text(first, "RmtInf/Strd/CdtrRefInf/Ref")
            if creditor_ref:
                notes.append(f"creditor reference {creditor_ref}")
            notes.append(self.text(first, "AddtlTxInf") or "")
        notes.append(self.text(entry, "AddtlNtryInf") or "")
        end_to_end = self.text(first, "Refs/EndToEndId")
        code = self.bank_code(entry) or self.bank_code(first)
        raw = RawEntry(
            booked_local=moment[0] if moment else PLACEHOLDER_BOOKED,
            booked_offset_minutes=moment[1] if moment else None,
            value_date=value[0].date() if value else None,
            amount_minor=0,
            currency=currency,
            status=BOOKED if status == BOOKED else status,
            location=where,
            account_number=account,
            counterparty_name=parties[0],
            counterparty_account=parties[1],
            counterparty_bank=agents,
            description=" | ".join(n for n in notes if n) or None,
            reference=self.first(entry, "AcctSvcrRef")
            or self.first(
                first,
                "Refs/AcctSvcrRef",
                "Refs/TxId",
                "Refs/InstrId",
                "Refs/MsgId",
                "Refs/PmtInfId",
                "Refs/UETR",
            )
            or self.text(entry, "NtryRef"),
            end_to_end_id=None if (end_to_end or "").upper() in _NO_REFERENCE else end_to_end,
            tx_code=code,
            raw_text=etree.tostring(entry, encoding="unicode").strip(),
        )
        minor, reason = to_minor_or_reason(amount, currency)
        if reason is not None:
            return raw.invalid(reason)
        if moment is None and status == BOOKED:
            return raw.invalid("booked entry without a booking or value date")
        return replace(raw, amount_minor=sign * minor)

    def counterparty(
        self, details: etree._Element | None, sign: int
    ) -> tuple[tuple[str | None, str | None], str | None]:
        """((name, account), bank) of the other party: the debtor of a credit, else creditor."""
        if details is None:
            return (None, None), None
        side, ultimate, agent = (
            ("Dbtr", "UltmtDbtr", "DbtrAgt")
            if sign > 0
            else (
                "Cdtr",
                "UltmtCdtr",
                "CdtrAgt",
            )
        )
        parties = f"RltdPties/{side}"
        name = self.first(
            details,
            f"{parties}/Nm",
            f"{parties}/Pty/Nm",
            f"{parties}/Agt/FinInstnId/Nm",
            f"RltdPties/{ultimate}/Nm",
            f"RltdPties/{ultimate}/Pty/Nm",
        )
        account = self.first(
            details, f"RltdPties/{side}Acct/Id/IBAN", f"RltdPties/{side}Acct/Id/Othr/Id"
        )
        agents = f"RltdAgts/{agent}/FinInstnId"
        bank = self.first(details, f"{agents}/BIC", f"{agents}/BICFI", f"{agents}/Nm")
        return (" ".join(name.split()) if name else None, account), bank

    def bank_code(self, element: etree._Element | None) -> str | None:
        """``Domn/Fmly/SubFmly`` codes joined with ``/``, else the proprietary code."""
        if element is None:
            return None
        domain = self.text(element, "BkTxCd/Domn/Cd")
        if domain:
            family = self.text(element, "BkTxCd/Domn/Fmly/Cd")
            sub = self.text(element, "BkTxCd/Domn/Fmly/SubFmlyCd")
            return "/".join(c for c in (domain, family, sub) if c)
        return self.text(element, "BkTxCd/Prtry/Cd")
