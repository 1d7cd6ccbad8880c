"""Native statement files: SWIFT MT940, ISO 20022 camt.053 and bank CSV exports by profile.

Rules:
- A writer turns one :class:`StatementData` (one account, one period) into the bytes of one
  file plus, per entry, where it sits (1-based line of its ``:61:`` / CSV row, or the XML path
  ``/Document/BkToCstmrStmt/Stmt[1]/Ntry[i]``). Output depends only on the input.
- Entries are an Arrow table in :data:`ENTRY_SCHEMA`; booking times are local wall-clock time
  at the statement's UTC offset (as the readers' ``booked_local``). The text of every entry
  is rendered column-wise (``render_*``, vectorised), so a caller writing many files can
  render a whole month once and pass each file its slice (``rendered=``).
- Amounts are printed exactly from minor units with the currency's ISO 4217 exponent.
- Blank fields are how planted data problems look: a null ``booked_local`` leaves the CSV date
  empty or drops camt ``BookgDt`` and ``ValDt`` (MT940 cannot express it), a null
  ``counterparty_name`` drops the name, a null balance leaves the CSV balance cell empty.
- MT940: plain text (no FIN envelope), CRLF, SWIFT X character set (anything else becomes
  ``?`` and ``/`` inside a value becomes ``-``, so the ``:86:`` structure ``/EREF/ /IBAN/ /BIC/
  /NAME/ /REMI/`` stays parseable); ``:86:`` is wrapped at 65 characters into at most six
  lines (the name, then the remittance text, are shortened to fit), never ending a line with
  a space nor starting one with ``:``, ``-`` or a space.
- camt.053: ``001.02`` (``Sts`` text, ``BIC``, ``Dbtr/Nm``) or ``001.08`` (``Sts/Cd``,
  ``BICFI``, ``Dbtr/Pty/Nm``), UTF-8, elements in schema order, booking times with their UTC
  offset. The owner's unified social credit code is ``Acct/Ownr/Id/OrgId/Othr/Id``.
- CSV: everything comes from the :class:`~flowbureau.formats.profiles.Profile`: columns in
  the profile's order with the first header of each (a debit/credit pair wins over an
  amount column; a time column is left out when the date format has a time), ``encodings[0]``
  unless told otherwise, ``date_formats[0]`` / ``time_formats[0]``, the delimiter, preamble
  lines for the profile's ``[preamble]`` keys (in one of three styles), and optionally a
  summary row starting with ``summary_markers[0]`` that states the bank's true totals.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc

from flowbureau.formats.profiles import Profile
from flowbureau.schema import currency_exponent

ENTRY_SCHEMA = pa.schema(
    [
        pa.field("booked_local", pa.timestamp("s")),
        pa.field("value_date", pa.date32(), nullable=False),
        pa.field("amount_minor", pa.int64(), nullable=False),
        pa.field("balance_after_minor", pa.int64()),
        pa.field("counterparty_name", pa.string()),
        pa.field("counterparty_name_ascii", pa.string()),
        pa.field("counterparty_account", pa.string()),
        pa.field("counterparty_bank", pa.string()),
        pa.field("counterparty_bic", pa.string()),
        pa.field("description", pa.string()),
        pa.field("description_ascii", pa.string()),
        pa.field("reference", pa.string(), nullable=False),
        pa.field("end_to_end_id", pa.string()),
        pa.field("tx_type", pa.string(), nullable=False),
    ]
)
"""The entries of a statement: local booking time (null: left blank), value date, signed
amount (+ inflow), balance after (null: left blank), counterparty (``*_ascii``: what SWIFT
files print), descriptions, the bank's reference, the end-to-end id, the ``TxType`` value."""

PREAMBLE_STYLES = ("colon", "fullwidth", "cells")
"""``账号:...`` / ``账号：...`` in one cell, or ``账号`` and the value in adjacent cells."""

CURRENCY_ZH = {"CNY": "人民币", "USD": "美元", "EUR": "欧元", "HKD": "港币", "JPY": "日元"}


@dataclass(frozen=True, slots=True)
class StatementAccount:
    """The account a statement is about and the bank that keeps it."""

    number: str
    currency: str
    owner_name: str
    owner_name_ascii: str
    owner_id: str
    bank_name: str
    bank_name_ascii: str
    bic: str


@dataclass(frozen=True, slots=True)
class StatementData:
    """One statement: an account over a period, its balances and entries."""

    account: StatementAccount
    period_start: date
    period_end: date
    opening_minor: int
    closing_minor: int
    sequence: int
    """Statement number of this account (1, 2, ...)."""
    created_at: datetime
    """When the bank produced the export (time-zone aware)."""
    statement_id: str
    """The bank's id of the statement (``:20:``, camt ``Stmt/Id``); at most 16 characters."""
    entries: pa.Table
    """In :data:`ENTRY_SCHEMA`."""
    utc_offset_minutes: int = 480
    """Offset of the local booking times (Beijing time, +08:00)."""
    true_debits_minor: int | None = None
    """What the bank's own totals say (summary rows); ``None``: the sums of the entries."""
    true_credits_minor: int | None = None


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """A written statement: its bytes and where each entry sits in them."""

    data: bytes
    locations: list[str]


@dataclass(frozen=True, slots=True)
class Rendered:
    """Pre-rendered text of entries, one list per column (see the ``render_*`` functions)."""

    columns: dict[str, list[str]]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def slice(self, start: int, end: int) -> Rendered:
        """Entries ``start .. end - 1``."""
        return Rendered({k: v[start:end] for k, v in self.columns.items()})

    def concat(self, other: Rendered) -> Rendered:
        """These entries, then ``other``'s."""
        return Rendered({k: v + other.columns[k] for k, v in self.columns.items()})


def amount_text(minor: int, currency: str, *, decimal: str = ".") -> str:
    """``123456, CNY -> 1234.56`` (absolute value; ``decimal`` is ``,`` for SWIFT)."""
    exponent = currency_exponent(currency)
    value = abs(minor)
    if not exponent:
        return f"{value}{decimal}" if decimal == "," else str(value)
    whole, frac = divmod(value, 10**exponent)
    return f"{whole}{decimal}{frac:0{exponent}d}"


def amount_texts(minor: pa.Array, currency: str, *, decimal: str = ".") -> pa.Array:
    """:func:`amount_text` of every element (vectorised; nulls stay null)."""
    exponent = currency_exponent(currency)
    value = pc.abs(minor)
    if not exponent:
        text = pc.cast(value, pa.string())
        return pc.binary_join_element_wise(text, pa.scalar(""), decimal) if decimal == "," else text
    scale = 10**exponent
    whole = pc.divide(value, scale)
    frac = pc.subtract(value, pc.multiply(whole, scale))
    return pc.binary_join_element_wise(
        pc.cast(whole, pa.string()),
        pc.utf8_lpad(pc.cast(frac, pa.string()), exponent, "0"),
        decimal,
    )


def _texts(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A string column with nulls as empty strings."""
    return pc.fill_null(column, "")


def _totals(stmt: StatementData) -> tuple[int, int]:
    debits, credits = stmt.true_debits_minor, stmt.true_credits_minor
    if debits is None or credits is None:
        amounts = stmt.entries.column("amount_minor").to_numpy()
        debits = -int(amounts[amounts < 0].sum())
        credits = int(amounts[amounts > 0].sum())
    return int(debits), int(credits)


def _offset(minutes: int) -> str:
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{mins:02d}"


def _local(moment: datetime, minutes: int) -> datetime:
    return moment.astimezone(timezone(timedelta(minutes=minutes)))


# -- MT940 -------------------------------------------------------------------------------------

_SWIFT_DISALLOWED = r"[^A-Za-z0-9/\-?:().,'+ ]"
_MT940_CODES = {"fees": "NCHG", "interest": "NINT", "loan_disbursement": "NLDP", "cash": "NMSC"}
LINE_86 = 65
LINES_86 = 6


def swift_texts(column: pa.Array) -> pa.Array:
    """Every value in the SWIFT X character set, with no ``/`` (a sub-field separator)."""
    clean = pc.replace_substring_regex(_texts(column), _SWIFT_DISALLOWED, "?")
    return pc.replace_substring(clean, "/", "-")


def _tagged(tag: str, values: pa.Array) -> pa.Array:
    """``/TAG/value`` where the value is not empty, else an empty string."""
    trimmed = pc.utf8_trim(values, " ")
    return pc.if_else(
        pc.equal(trimmed, ""), "", pc.binary_join_element_wise(f"/{tag}/", trimmed, "")
    )


def render_mt940(entries: pa.Table, currency: str) -> Rendered:
    """The ``:61:`` line and the ``:86:`` text of every entry."""
    booked = entries.column("booked_local")
    value = entries.column("value_date")
    amount = entries.column("amount_minor")
    entry_day = pc.coalesce(pc.cast(booked, pa.date32()), value)
    codes = pa.array(list(_MT940_CODES))
    code_index = pc.index_in(entries.column("tx_type"), value_set=codes)
    code = pc.fill_null(pc.take(pa.array(list(_MT940_CODES.values())), code_index), "NTRF")
    customer = pc.utf8_slice_codeunits(swift_texts(entries.column("end_to_end_id")), 0, 16)
    customer = pc.if_else(pc.equal(customer, ""), "NONREF", customer)
    line61 = pc.binary_join_element_wise(
        ":61:",
        pc.strftime(pc.cast(value, pa.timestamp("s")), format="%y%m%d"),
        pc.strftime(pc.cast(entry_day, pa.timestamp("s")), format="%m%d"),
        pc.if_else(pc.less(amount, 0), "D", "C"),
        amount_texts(amount, currency, decimal=","),
        code,
        customer,
        "//",
        pc.utf8_slice_codeunits(swift_texts(entries.column("reference")), 0, 16),
        "",
    )
    head = pc.binary_join_element_wise(
        _tagged("EREF", swift_texts(entries.column("end_to_end_id"))),
        _tagged("IBAN", swift_texts(entries.column("counterparty_account"))),
        _tagged("BIC", swift_texts(entries.column("counterparty_bic"))),
        "",
    )
    named = pc.is_valid(entries.column("counterparty_name"))
    name = pc.if_else(
        named, _tagged("NAME", swift_texts(entries.column("counterparty_name_ascii"))), ""
    )
    remi = _tagged("REMI", swift_texts(entries.column("description_ascii")))
    return Rendered(
        {
            "line61": line61.to_pylist(),
            "head86": head.to_pylist(),
            "name86": name.to_pylist(),
            "remi86": remi.to_pylist(),
        }
    )


def _wrap_86(text: str) -> list[str]:
    lines: list[str] = []
    rest = text
    while rest:
        cut = min(LINE_86, len(rest))
        while cut < len(rest) and cut > 1 and (rest[cut - 1] == " " or rest[cut] in ":- "):
            cut -= 1
        lines.append(rest[:cut])
        rest = rest[cut:]
    return lines


def _details_86(head: str, name: str, remi: str) -> list[str]:
    text = head + name + remi
    if len(text) <= LINE_86:
        return [text] if text else []
    lines = _wrap_86(text)
    while len(lines) > LINES_86:
        if len(remi) > len("/REMI/x"):
            remi = remi[:-1].rstrip()
        elif len(name) > len("/NAME/x"):
            name = name[:-1].rstrip()
        else:
            return _wrap_86(head)[:LINES_86]
        lines = _wrap_86(head + name + remi)
    return lines


def write_mt940(stmt: StatementData, *, rendered: Rendered | None = None) -> WrittenFile:
    """One MT940 statement (``:20:`` .. ``:62F:``)."""
    acct = stmt.account
    ccy = acct.currency
    text = rendered or render_mt940(stmt.entries, ccy)
    out = [
        f":20:{stmt.statement_id[:16]}",
        f":25:{acct.number}",
        f":28C:{stmt.sequence:05d}/1",
        f":60F:{_balance(stmt.opening_minor, stmt.period_start, ccy)}",
    ]
    locations: list[str] = []
    columns = text.columns
    for line61, head, name, remi in zip(
        columns["line61"], columns["head86"], columns["name86"], columns["remi86"], strict=True
    ):
        locations.append(str(len(out) + 1))
        out.append(line61)
        details = _details_86(head, name, remi)
        if details:
            out.append(":86:" + details[0])
            out.extend(details[1:])
    out.append(f":62F:{_balance(stmt.closing_minor, stmt.period_end, ccy)}")
    out.append("-")
    return WrittenFile(("\r\n".join(out) + "\r\n").encode("ascii"), locations)


def _balance(minor: int, day: date, currency: str) -> str:
    mark = "C" if minor >= 0 else "D"
    return f"{mark}{day:%y%m%d}{currency}{amount_text(minor, currency, decimal=',')}"


# -- camt.053 ----------------------------------------------------------------------------------

CAMT_VERSIONS = ("001.02", "001.08")
_CAMT_CODES = {
    "sales_receipt": ("PMNT", "RCDT", "DMCT"),
    "supplier_payment": ("PMNT", "ICDT", "DMCT"),
    "payroll": ("PMNT", "ICDT", "SALA"),
    "tax": ("PMNT", "ICDT", "DMCT"),
    "utilities": ("PMNT", "IDDT", "ESDD"),
    "rent": ("PMNT", "ICDT", "DMCT"),
    "loan_disbursement": ("LDAS", "FTLN", "DDWN"),
    "loan_repayment": ("LDAS", "FTLN", "PPAY"),
    "online_lending": ("PMNT", "RCDT", "DMCT"),
    "interest": ("ACMT", "MCOP", "INTR"),
    "fees": ("ACMT", "MDOP", "CHRG"),
    "cash": ("PMNT", "CNTR", "CDPT"),
    "internal_transfer": ("PMNT", "ICDT", "BOOK"),
    "other": ("PMNT", "ICDT", "DMCT"),
}


def _bank_code(tx_type: str, credit: bool) -> str:
    domain, family, sub = _CAMT_CODES.get(tx_type, _CAMT_CODES["other"])
    if domain == "PMNT" and family in ("RCDT", "ICDT"):
        family = "RCDT" if credit else "ICDT"
    elif domain == "ACMT":
        family = "MCOP" if credit else "MDOP"
    elif sub == "CDPT" and not credit:
        sub = "CWDL"
    return (
        f"<BkTxCd><Domn><Cd>{domain}</Cd><Fmly><Cd>{family}</Cd>"
        f"<SubFmlyCd>{sub}</SubFmlyCd></Fmly></Domn></BkTxCd>"
    )


def escape_xml(text: str) -> str:
    """``&``, ``<`` and ``>`` as XML entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml(column: pa.Array) -> pa.Array:
    values = pc.replace_substring(column, "&", "&amp;")
    return pc.replace_substring(pc.replace_substring(values, "<", "&lt;"), ">", "&gt;")


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _when(mask: pa.Array, *parts: pa.Array | str) -> pa.Array:
    """The concatenation of ``parts`` where ``mask`` holds, else an empty string."""
    return pc.if_else(pc.fill_null(mask, False), _join(*parts), "")


def render_camt053(
    entries: pa.Table, currency: str, version: str, utc_offset_minutes: int = 480
) -> Rendered:
    """The ``<Ntry>`` element of every entry (column ``ntry``)."""
    if version not in CAMT_VERSIONS:
        raise ValueError(f"camt.053 version must be one of {CAMT_VERSIONS}, got {version!r}")
    v8 = version == "001.08"
    bic_tag = "BICFI" if v8 else "BIC"
    amount = entries.column("amount_minor")
    credit = pc.greater_equal(amount, 0)
    booked = entries.column("booked_local")
    offset = _offset(utc_offset_minutes)
    dated = pc.is_valid(booked)
    dates = _when(
        dated,
        "\n        <BookgDt><DtTm>",
        pc.fill_null(pc.strftime(booked, format=f"%Y-%m-%dT%H:%M:%S{offset}"), ""),
        "</DtTm></BookgDt>\n        <ValDt><Dt>",
        pc.strftime(pc.cast(entries.column("value_date"), pa.timestamp("s")), format="%Y-%m-%d"),
        "</Dt></ValDt>",
    )
    side = pc.if_else(credit, "Dbtr", "Cdtr")
    name = _xml(_texts(entries.column("counterparty_name")))
    account = _xml(_texts(entries.column("counterparty_account")))
    has_name = pc.not_equal(name, "")
    has_account = pc.not_equal(account, "")
    name_xml = _when(
        has_name,
        "\n              <",
        side,
        ">",
        "<Pty><Nm>" if v8 else "<Nm>",
        name,
        "</Nm></Pty></" if v8 else "</Nm></",
        side,
        ">",
    )
    account_xml = _when(
        has_account,
        "\n              <",
        side,
        "Acct><Id><Othr><Id>",
        account,
        "</Id></Othr></Id></",
        side,
        "Acct>",
    )
    parties = _when(
        pc.or_(has_name, has_account),
        "\n            <RltdPties>",
        name_xml,
        account_xml,
        "\n            </RltdPties>",
    )
    bank = _xml(_texts(entries.column("counterparty_bank")))
    bic = _xml(_texts(entries.column("counterparty_bic")))
    agent = pc.if_else(credit, "DbtrAgt", "CdtrAgt")
    ident = _join(
        _when(pc.not_equal(bic, ""), f"<{bic_tag}>", bic, f"</{bic_tag}>"),
        _when(pc.not_equal(bank, ""), "<Nm>", bank, "</Nm>"),
    )
    agents = _when(
        pc.not_equal(ident, ""),
        "\n            <RltdAgts><",
        agent,
        "><FinInstnId>",
        ident,
        "</FinInstnId></",
        agent,
        "></RltdAgts>",
    )
    description = _xml(_texts(entries.column("description")))
    remittance = _when(
        pc.not_equal(description, ""),
        "\n            <RmtInf><Ustrd>",
        description,
        "</Ustrd></RmtInf>",
    )
    reference = _xml(entries.column("reference"))
    e2e = _xml(_texts(entries.column("end_to_end_id")))
    e2e = pc.if_else(pc.equal(e2e, ""), "NOTPROVIDED", e2e)
    keys = sorted({(t, c) for t in _CAMT_CODES for c in (True, False)})
    code_keys = pa.array([f"{t}|{int(c)}" for t, c in keys])
    code_values = pa.array([_bank_code(t, c) for t, c in keys])
    tx_key = _join(entries.column("tx_type"), "|", pc.cast(pc.cast(credit, pa.int8()), pa.string()))
    other_key = _join("other|", pc.cast(pc.cast(credit, pa.int8()), pa.string()))
    code = pc.take(
        code_values,
        pc.coalesce(
            pc.index_in(tx_key, value_set=code_keys), pc.index_in(other_key, value_set=code_keys)
        ),
    )
    status = "<Sts><Cd>BOOK</Cd></Sts>" if v8 else "<Sts>BOOK</Sts>"
    ntry = _join(
        f'      <Ntry>\n        <Amt Ccy="{currency}">',
        amount_texts(amount, currency),
        "</Amt>\n        <CdtDbtInd>",
        pc.if_else(credit, "CRDT", "DBIT"),
        f"</CdtDbtInd>\n        {status}",
        dates,
        "\n        <AcctSvcrRef>",
        reference,
        "</AcctSvcrRef>\n        ",
        code,
        "\n        <NtryDtls>\n          <TxDtls>\n            <Refs><AcctSvcrRef>",
        reference,
        "</AcctSvcrRef><EndToEndId>",
        e2e,
        "</EndToEndId></Refs>",
        parties,
        agents,
        remittance,
        "\n          </TxDtls>\n        </NtryDtls>\n      </Ntry>",
    )
    return Rendered({"ntry": ntry.to_pylist()})


def write_camt053(
    stmt: StatementData, version: str, *, rendered: Rendered | None = None
) -> WrittenFile:
    """One camt.053 statement, namespace ``urn:iso:std:iso:20022:tech:xsd:camt.053.<version>``."""
    if version not in CAMT_VERSIONS:
        raise ValueError(f"camt.053 version must be one of {CAMT_VERSIONS}, got {version!r}")
    text = rendered or render_camt053(
        stmt.entries, stmt.account.currency, version, stmt.utc_offset_minutes
    )
    v8 = version == "001.08"
    bic_tag = "BICFI" if v8 else "BIC"
    acct = stmt.account
    ccy = acct.currency
    created = _local(stmt.created_at, stmt.utc_offset_minutes).isoformat(timespec="seconds")
    offset = _offset(stmt.utc_offset_minutes)
    debits, credits = _totals(stmt)
    n_debit = int((stmt.entries.column("amount_minor").to_numpy() < 0).sum())
    n_entries = len(text)
    svcr = f"<{bic_tag}>{escape_xml(acct.bic)}</{bic_tag}>" if acct.bic else ""
    sid = escape_xml(stmt.statement_id)
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.{version}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
        "  <BkToCstmrStmt>",
        "    <GrpHdr>",
        f"      <MsgId>{sid}</MsgId>",
        f"      <CreDtTm>{created}</CreDtTm>",
        "    </GrpHdr>",
        "    <Stmt>",
        f"      <Id>{sid}</Id>",
        f"      <ElctrncSeqNb>{stmt.sequence}</ElctrncSeqNb>",
        f"      <CreDtTm>{created}</CreDtTm>",
        "      <FrToDt>",
        f"        <FrDtTm>{stmt.period_start.isoformat()}T00:00:00{offset}</FrDtTm>",
        f"        <ToDtTm>{stmt.period_end.isoformat()}T23:59:59{offset}</ToDtTm>",
        "      </FrToDt>",
        "      <Acct>",
        f"        <Id><Othr><Id>{escape_xml(acct.number)}</Id></Othr></Id>",
        f"        <Ccy>{ccy}</Ccy>",
        "        <Ownr>",
        f"          <Nm>{escape_xml(acct.owner_name)}</Nm>",
        f"          <Id><OrgId><Othr><Id>{escape_xml(acct.owner_id)}</Id>"
        "<SchmeNm><Prtry>USCC</Prtry></SchmeNm></Othr></OrgId></Id>",
        "        </Ownr>",
        f"        <Svcr><FinInstnId>{svcr}<Nm>{escape_xml(acct.bank_name)}</Nm>"
        "</FinInstnId></Svcr>",
        "      </Acct>",
        *_camt_balance("OPBD", stmt.opening_minor, stmt.period_start, ccy),
        *_camt_balance("CLBD", stmt.closing_minor, stmt.period_end, ccy),
        "      <TxsSummry>",
        f"        <TtlCdtNtries><NbOfNtries>{n_entries - n_debit}</NbOfNtries>"
        f"<Sum>{amount_text(credits, ccy)}</Sum></TtlCdtNtries>",
        f"        <TtlDbtNtries><NbOfNtries>{n_debit}</NbOfNtries>"
        f"<Sum>{amount_text(debits, ccy)}</Sum></TtlDbtNtries>",
        "      </TxsSummry>",
    ]
    tail = ["    </Stmt>", "  </BkToCstmrStmt>", "</Document>", ""]
    locations = [f"/Document/BkToCstmrStmt/Stmt[1]/Ntry[{i + 1}]" for i in range(n_entries)]
    return WrittenFile("\n".join(head + text.columns["ntry"] + tail).encode("utf-8"), locations)


def _camt_balance(code: str, minor: int, day: date, currency: str) -> list[str]:
    return [
        "      <Bal>",
        f"        <Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>",
        f'        <Amt Ccy="{currency}">{amount_text(minor, currency)}</Amt>',
        f"        <CdtDbtInd>{'CRDT' if minor >= 0 else 'DBIT'}</CdtDbtInd>",
        f"        <Dt><Dt>{day.isoformat()}</Dt></Dt>",
        "      </Bal>",
    ]


# -- CSV by profile ----------------------------------------------------------------------------

_DEFAULT_DIRECTIONS = {"debit": "借", "credit": "贷"}


@dataclass(frozen=True, slots=True)
class TabularLayout:
    """The columns a profile makes a writer print, in order."""

    fields: tuple[str, ...]
    headers: tuple[str, ...]
    date_format: str
    time_format: str | None
    period_format: str


_LAYOUTS: dict[int, tuple[Profile, TabularLayout]] = {}


def tabular_layout(profile: Profile) -> TabularLayout:
    """Which of the profile's columns to write (see the module rules)."""
    cached = _LAYOUTS.get(id(profile))
    if cached is not None and cached[0] is profile:
        return cached[1]
    layout = _layout(profile)
    if len(_LAYOUTS) > 256:
        _LAYOUTS.clear()
    _LAYOUTS[id(profile)] = (profile, layout)
    return layout


def _layout(profile: Profile) -> TabularLayout:
    date_format = profile.date_formats[0]
    has_time = "%H" in date_format
    pair = "debit" in profile.columns and "credit" in profile.columns
    fields: list[str] = []
    for name in profile.columns:
        if pair and name in ("amount", "direction"):
            continue
        if name == "time" and (has_time or not profile.time_formats):
            continue
        fields.append(name)
    period_format = next((f for f in profile.date_formats if "%H" not in f), date_format)
    return TabularLayout(
        fields=tuple(fields),
        headers=tuple(profile.columns[f][0] for f in fields),
        date_format=date_format,
        time_format=profile.time_formats[0] if "time" in fields else None,
        period_format=period_format,
    )


def render_tabular(entries: pa.Table, profile: Profile, currency: str) -> Rendered:
    """The cell text of every entry, one column per written field."""
    layout = tabular_layout(profile)
    directions = {
        k: (profile.direction_values.get(k) or (_DEFAULT_DIRECTIONS[k],))[0]
        for k in ("debit", "credit")
    }
    amount = entries.column("amount_minor")
    debit = pc.less(amount, 0)
    signed = "direction" not in layout.fields
    booked = entries.column("booked_local")
    columns: dict[str, list[str]] = {}
    for name in layout.fields:
        if name in ("date", "time"):
            fmt = layout.date_format if name == "date" else layout.time_format or "%H:%M:%S"
            values = _texts(pc.strftime(booked, format=fmt))
        elif name == "debit":
            values = pc.if_else(debit, amount_texts(amount, currency), "")
        elif name == "credit":
            values = pc.if_else(debit, "", amount_texts(amount, currency))
        elif name == "amount":
            values = amount_texts(amount, currency)
            if signed:
                values = pc.if_else(debit, _join("-", values), values)
        elif name == "direction":
            values = pc.if_else(debit, directions["debit"], directions["credit"])
        elif name == "balance":
            balance = entries.column("balance_after_minor")
            text = amount_texts(balance, currency)
            values = _texts(pc.if_else(pc.less(balance, 0), _join("-", text), text))
        elif name == "currency":
            values = pa.array([CURRENCY_ZH.get(currency, currency)] * entries.num_rows, pa.string())
        else:
            values = _texts(entries.column(name))
        columns[name] = values.to_pylist()
    return Rendered(columns)


def write_tabular(
    stmt: StatementData,
    profile: Profile,
    *,
    encoding: str | None = None,
    summary: bool = False,
    preamble_style: str = "colon",
    rendered: Rendered | None = None,
) -> WrittenFile:
    """One bank CSV export of ``stmt`` laid out by ``profile``."""
    if preamble_style not in PREAMBLE_STYLES:
        raise ValueError(f"preamble_style must be one of {PREAMBLE_STYLES}")
    layout = tabular_layout(profile)
    acct = stmt.account
    ccy = acct.currency
    text = rendered or render_tabular(stmt.entries, profile, ccy)
    rows: list[Sequence[str]] = []
    facts = {
        "account": acct.number,
        "owner": acct.owner_name,
        "credit_code": acct.owner_id,
        "currency": CURRENCY_ZH.get(ccy, ccy),
        "period": f"{stmt.period_start.strftime(layout.period_format)} 至 "
        f"{stmt.period_end.strftime(layout.period_format)}",
    }
    for key, names in profile.preamble.items():
        label, value = names[0], facts[key]
        if preamble_style == "cells":
            rows.append([label, value])
        else:
            rows.append([f"{label}{':' if preamble_style == 'colon' else '：'}{value}"])
    rows.append(layout.headers)
    first_line = len(rows) + 1
    n = len(text)
    if n:
        rows.extend(zip(*(text.columns[f] for f in layout.fields), strict=True))
    if summary:
        debits, credits = _totals(stmt)
        cells = [""] * len(layout.fields)
        for index, name in enumerate(layout.fields):
            if name == "debit":
                cells[index] = amount_text(debits, ccy)
            elif name == "credit":
                cells[index] = amount_text(credits, ccy)
            elif name == "amount":
                cells[index] = amount_text(debits + credits, ccy)
        cells[0] = profile.summary_markers[0]
        rows.append(cells)
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=profile.delimiter, lineterminator="\r\n").writerows(rows)
    data = buffer.getvalue().encode(encoding or profile.encodings[0])
    return WrittenFile(data, [str(first_line + i) for i in range(n)])


# -- account register --------------------------------------------------------------------------

REGISTER_HEADERS = ("账号", "户名", "统一社会信用代码", "币种", "开户日期")


def write_register(rows: Sequence[tuple[str, str, str, str, date]]) -> bytes:
    """A bank's account register (开户清单), UTF-8 with BOM: account, owner, credit code,
    currency (人民币 / 美元), opening date."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(REGISTER_HEADERS)
    for number, owner, code, currency, opened in rows:
        writer.writerow(
            [number, owner, code, CURRENCY_ZH.get(currency, currency), opened.isoformat()]
        )
    return buffer.getvalue().encode("utf-8-sig")
