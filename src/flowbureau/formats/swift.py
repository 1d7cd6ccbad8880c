"""SWIFT MT940 customer statements and MT942 interim transaction reports.

The ``mt-940`` library parses each tag's value (the tag grammars, amounts and dates, the
structured ``:86:`` sub-fields); this module frames the file itself so that every problem has
a line number and no entry can be merged into another.

Rules:
- Text is UTF-8, else ISO-8859-1 (said in a warning). SWIFT envelope blocks (``{1:..}{2:..}{4:``
  and ``-}``) and transmission control characters (SOH, ETX, ...) are framing, not content.
- A tag starts at a line beginning ``:NN:``/``:NNa:`` (or a lone ``:`` line followed by
  ``NN:``, as some Sparkassen wrap it). A statement starts at ``:20:``; a tag before the first
  ``:20:`` or text outside any tag is a :class:`~flowbureau.errors.ParseError` at its line.
- Each tag value is parsed with the library's parser for that tag; a value that does not follow
  the tag's grammar is a ``ParseError`` naming the tag's line and the tag (``field=":61:"``).
  Balances must match ``1!a6!n3!a15d`` exactly and carry an ISO 4217 currency, so trailing
  garbage is never silently cut off. ``:25:`` and each balance appear at most once.
- One entry per ``:61:``: ``location`` is the line of the ``:61:`` tag, ``raw_text`` the
  ``:61:`` line through its ``:86:``. The value date is the first six digits; the booking date
  is the optional entry date (MMDD) when given, else the value date.
- ``:86:`` is kept as ``description`` (structured ``?NN``/``/KEY/`` text joined without line
  breaks as the bank wrapped it, free text joined with spaces). Counterparty name / account /
  BIC and references come from ``?32``/``?33``, ``?31``, ``?30``, ``EREF+``/``KREF+`` (German
  structured details) or ``/NAME/``, ``/IBAN/``, ``/BIC/``, ``/CNTP/``, ``/EREF/`` (Dutch
  style). ``reference`` is the bank reference (``//...``), else the customer reference.
- MT942 (no ``:60x:``/``:62x:``): entries are booked; reconciliation does not apply; the
  ``:90D:``/``:90C:`` counts and sums are checked against the entries (mismatch: warning).
- An amount with more decimals than its currency allows becomes an ``INVALID:`` entry.
- The library moves an impossible value date (30 February, which some German banks print for
  interest postings) to the month's last day; the reader says so in a warning with the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from flowbureau.errors import ParseError
from flowbureau.formats.base import BytesStatementReader, ParsedStatement, Sniff, StatementFacts
from flowbureau.formats.entries import RawEntry, clean_text, entries_table, to_minor_or_reason
from flowbureau.formats.text import UTF8_BOM
from flowbureau.schema import InvalidCodeError, MoneyError, currency_exponent, to_minor

_TAG_RE = re.compile(r"^:(?P<tag>[0-9]{2}|NS)(?P<sub>[A-Z])?:")
_SPLIT_TAG_RE = re.compile(r"^(?:[0-9]{2}|NS)[A-Z]?:")
_BLOCK_HEAD_RE = re.compile(r"^(?:\{[0-9A-Z]{1,3}:[^{}]*\})*\{4:")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
"""SWIFT control characters (all C0 controls but tab, LF and CR, and DEL): ignored when sniffing."""
_TAG_LINE_RE = re.compile(rb"\n[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*:")
"""A line that starts with ``:`` once control characters are removed."""
_PREFIX = 256


def _clean(raw: bytes) -> bytes:
    return raw.translate(None, _CONTROL_BYTES)


_BALANCE_RE = re.compile(r"[CD][0-9]{6}[A-Z]{3}[0-9]*,?[0-9]*")
_STRUCTURED_86 = re.compile(r"^[0-9]{3}\?[0-9]{2}")
_SNIFF_TAG_RE = re.compile(
    rb"^:(?:20|21|25|28C?|60[FM]?|61|62[FM]?|64|65|86|90[CD]|13D|34F|NS):", re.MULTILINE
)
_SLASH_KEYS = frozenset(
    [
        "TRTP",
        "IBAN",
        "BIC",
        "NAME",
        "REMI",
        "EREF",
        "MARF",
        "CSID",
        "PREF",
        "RTRN",
        "ISDT",
        "ORDP",
        "BENM",
        "CNTP",
        "ADDR",
        "PURP",
        "ULTC",
        "ULTD",
        "ULTB",
        "SVCL",
        "CDTRREF",
        "CDTRREFTP",
    ]
)
_OPENING = ("60F", "60M", "60")
_CLOSING = ("62F", "62M", "62")
_UNIQUE = ("25", "28C", "28", *_OPENING, *_CLOSING, "64", "13D")
_NO_REFERENCE = {"", "NONREF", "NOTPROVIDED"}


@dataclass
class _Tag:
    """One tag of the file: its name (``61``, ``60F``, ``NS``), first line and value lines."""

    name: str
    line: int
    lines: list[str] = field(default_factory=list)

    @property
    def value(self) -> str:
        return "\n".join(self.lines).strip()

    @property
    def field(self) -> str:
        return f":{self.name}:"


@dataclass
class _Entry:
    """A ``:61:`` with what the library made of it and the tags that belong to it."""

    tag: _Tag
    data: dict[str, Any]
    details: list[_Tag] = field(default_factory=list)
    detail_data: dict[str, Any] = field(default_factory=dict)


class Mt940Reader(BytesStatementReader):
    """SWIFT MT940 and MT942 (``--format mt940``)."""

    name = "mt940"

    def sniff(self, path: Path, head: bytes) -> Sniff:
        """MT940 when the text starts with a SWIFT envelope or ``:20:``, likely with other tags."""
        raw = head.removeprefix(UTF8_BOM)
        # Control bytes are ignored. Removing them from the whole head is costly, so only a
        # prefix is cleaned to judge how the text starts (the whole head when the prefix holds
        # too little text), and the whole head only when a tag line may exist.
        stripped = raw[:_PREFIX].translate(None, _CONTROL_BYTES).lstrip()
        if len(stripped) < 16 and len(raw) > _PREFIX:  # too little left to judge the start
            stripped = _clean(raw).lstrip()
        if re.match(rb"\{1:F[0-9]{2}", stripped) and b"{4:" in _clean(raw):
            return Sniff(1.0, "SWIFT FIN envelope {1:...}{4:")
        if stripped.startswith(b":20:"):
            return Sniff(0.95, "starts with the :20: statement tag")
        if (stripped.startswith(b":") or _TAG_LINE_RE.search(raw)) and _SNIFF_TAG_RE.search(
            _clean(raw)
        ):
            return Sniff(
                0.6, "has SWIFT statement tags (:25:, :61:, ...) but does not start with :20:"
            )
        return Sniff(0.0, "no SWIFT tag (:20:, :25:, :61:, ...) at the start of a line")

    def parse(self, data: bytes, path: Path) -> list[ParsedStatement]:
        """Every statement of the file; ``ParseError`` with line and tag on malformed input."""
        import mt940

        text, decoded = _decode(data)
        tags, headers = _tokenize(text, path)
        if not tags:
            raise ParseError(
                "no SWIFT tags (:20:, :25:, :61:, ...) found",
                file=path,
                line=headers[0] if headers else 1,
            )
        file_warnings = list(decoded)
        if headers:
            shown = ", ".join(map(str, headers[:10])) + (" ..." if len(headers) > 10 else "")
            file_warnings.append(f"skipped bank message header line(s) {shown}")
        blocks: list[list[_Tag]] = []
        for tag in tags:
            if tag.name == "20":
                blocks.append([tag])
            elif not blocks:
                raise ParseError(
                    f"tag {tag.field} before the first :20: (a statement starts with :20:); "
                    "this is not a complete MT940/MT942 statement",
                    file=path,
                    line=tag.line,
                    field=tag.field,
                )
            else:
                blocks[-1].append(tag)
        options = mt940.Options.all()
        return [
            _statement(block, path, options, list(file_warnings if i == 0 else ()))
            for i, block in enumerate(blocks)
        ]


def _decode(data: bytes) -> tuple[str, tuple[str, ...]]:
    data = data.removeprefix(UTF8_BOM)
    warnings: list[str] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        warnings.append("file is not UTF-8; read as ISO-8859-1")
    controls = len(_CONTROL_RE.findall(text))
    if controls:
        text = _CONTROL_RE.sub("", text)
        warnings.append(f"removed {controls} transmission control character(s) (SOH, ETX, ...)")
    return text, tuple(warnings)


def _tokenize(text: str, path: Path) -> tuple[list[_Tag], list[int]]:
    """The file's tags in order, and the lines of bank message headers that were skipped.

    Before the first tag of a message (file start, or after a ``-`` message end) banks put
    header lines such as ``ABNANL2A`` / ``940`` or ``:940:``; those are not statement content.
    """
    import mt940

    known = mt940.tags.TAG_BY_ID
    tags: list[_Tag] = []
    headers: list[int] = []
    current: _Tag | None = None
    lines = text.split("\n")
    colon_line: int | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        head = _BLOCK_HEAD_RE.match(line)
        if head:
            current = None
            line = line[head.end() :]
            if not line.strip():
                continue
        if line.startswith("-}") or line.strip() == "-":
            current = None
            continue
        if line == ":" and number < len(lines) and _SPLIT_TAG_RE.match(lines[number]):
            colon_line = number
            continue
        if colon_line is not None:
            line, start, colon_line = ":" + line, colon_line, None
        else:
            start = number
        match = _TAG_RE.match(line)
        if match and _known(match, known):
            name = match.group("tag") + (match.group("sub") or "")
            current = _Tag(name, start, [line[match.end() :]])
            tags.append(current)
        elif current is not None:
            current.lines.append(line)
        elif line.strip():
            headers.append(number)
    return tags, headers


def _known(match: re.Match[str], known: dict[Any, Any]) -> bool:
    tag = match.group("tag")
    full = tag + (match.group("sub") or "")
    return full in known or (int(tag) if tag.isdigit() else tag) in known


def _apply(trs: Any, tag: _Tag, path: Path) -> tuple[dict[str, Any], str | None]:
    """Run the library's parser for one tag; returns its result and a date-fixup note."""
    key: Any = int(tag.name[:2]) if tag.name[:2].isdigit() else tag.name
    parser = trs.tags.get(tag.name) or trs.tags[key]
    note = None
    try:
        parsed = _grammar(parser, trs, tag)
        before = dict(parsed)
        for processor in trs.processors.get(f"pre_{parser.slug}", []):
            parsed = processor(trs, parser, parsed)
        if parsed.get("day") != before.get("day"):
            note = (
                f"line {tag.line}: value date 20{before.get('year')}-{before.get('month')}-"
                f"{before.get('day')} does not exist; the library reads it as day "
                f"{parsed.get('day')} of that month"
            )
        result = parser(trs, parsed)
        for processor in trs.processors.get(f"post_{parser.slug}", []):
            result = processor(trs, parser, parsed, result)
    except RuntimeError:
        raise ParseError(
            f"value does not follow the {tag.field} grammar: {tag.value[:60]!r}",
            file=path,
            line=tag.line,
            field=tag.field,
        ) from None
    except (ValueError, ArithmeticError, KeyError, TypeError, IndexError) as exc:
        raise ParseError(
            f"cannot read {tag.field} value {tag.value[:60]!r}: {exc}",
            file=path,
            line=tag.line,
            field=tag.field,
        ) from None
    return dict(result), note


def _grammar(parser: Any, trs: Any, tag: _Tag) -> dict[str, Any]:
    """The tag's fields; a ``:61:`` the standard grammar rejects gets the library's bank
    variants (ASN Bank puts the counterparty IBAN where the reference belongs, GLS a
    longer code)."""
    import mt940

    candidates = [parser]
    if tag.name == "61":
        candidates += [mt940.tags.StatementASNB(), mt940.tags.StatementGLS()]
    for candidate in candidates:
        # Matching first keeps the library from logging every failed attempt as an error.
        if candidate.re.match(tag.value):
            return dict(candidate.parse(trs, tag.value))
    raise RuntimeError(tag.value)


def _statement(block: list[_Tag], path: Path, options: Any, warnings: list[str]) -> ParsedStatement:
    import mt940

    trs = mt940.models.Transactions(options=options)
    seen: dict[str, _Tag] = {}
    entries: list[_Entry] = []
    statement_tags: dict[str, _Tag] = {}
    in_entry = False  # True from a :61: until a tag other than its :86: / :NS:
    for tag in block:
        if tag.name in _UNIQUE:
            if tag.name in seen:
                raise ParseError(
                    f"second {tag.field} in the statement that starts at line {block[0].line} "
                    f"(first at line {seen[tag.name].line})",
                    file=path,
                    line=tag.line,
                    field=tag.field,
                )
            seen[tag.name] = tag
        if tag.name in (*_OPENING, *_CLOSING, "64", "65") and not _BALANCE_RE.fullmatch(tag.value):
            raise ParseError(
                f"balance {tag.value[:40]!r} does not follow 1!a6!n3!a15d "
                "(D/C mark, YYMMDD, currency, amount with decimal comma)",
                file=path,
                line=tag.line,
                field=tag.field,
            )
        result, note = _apply(trs, tag, path)
        if note:
            warnings.append(note)
        if tag.name == "61":
            entries.append(_Entry(tag, result))
            in_entry = True
        elif tag.name in ("86", "NS") and in_entry:
            entries[-1].details.append(tag)
            entries[-1].detail_data.update(result)
        elif tag.name != "86":
            trs.data.update(result)
            statement_tags[tag.name] = tag
            in_entry = False
        # A :86: outside an entry (before the first :61: or after the balances, as ING
        # writes its totals) describes the statement; it belongs to no entry.
    return _build(block, path, trs=trs, entries=entries, tags=statement_tags, warnings=warnings)


def _balance(
    trs: Any, names: tuple[str, ...], tags: dict[str, _Tag], currency: str | None, path: Path
) -> tuple[int | None, date | None]:
    import mt940

    for name in names:
        tag = tags.get(name)
        if tag is None:
            continue
        slug = mt940.tags.TAG_BY_ID[int(name) if name.isdigit() else name].slug
        balance = trs.data[slug]
        amount = balance.amount
        if amount.currency != currency:
            raise ParseError(
                f"balance currency {amount.currency!r} differs from the statement currency "
                f"{currency!r}",
                file=path,
                line=tag.line,
                field=tag.field,
            )
        try:
            minor = to_minor(amount.amount, amount.currency)
        except (MoneyError, InvalidCodeError) as exc:
            raise ParseError(str(exc), file=path, line=tag.line, field=tag.field) from None
        return minor, date(balance.date.year, balance.date.month, balance.date.day)
    return None, None


def _build(
    block: list[_Tag],
    path: Path,
    *,
    trs: Any,
    entries: list[_Entry],
    tags: dict[str, _Tag],
    warnings: list[str],
) -> ParsedStatement:
    first_balance = next((tags[n] for n in (*_OPENING, *_CLOSING, "34") if n in tags), None)
    currency = trs.currency
    if currency is not None:
        try:
            currency_exponent(currency)
        except InvalidCodeError as exc:
            where = first_balance or block[0]
            raise ParseError(str(exc), file=path, line=where.line, field=where.field) from None
    elif entries:
        raise ParseError(
            "the statement states no currency (no :60F:/:62F: balance or :34F: floor limit)",
            file=path,
            line=block[0].line,
            field=":60F:",
        )
    opening, opened = _balance(trs, _OPENING, tags, currency, path)
    closing, closed = _balance(trs, _CLOSING, tags, currency, path)
    interim = not any(n in tags for n in (*_OPENING, *_CLOSING))
    if not interim and closing is None:
        warnings.append(f"statement at line {block[0].line} has no closing balance (:62F:/:62M:)")
    if not interim and opening is None:
        warnings.append(f"statement at line {block[0].line} has no opening balance (:60F:/:60M:)")
    account = clean_text(trs.data.get("account_identification"))
    raw = [_entry(e, account, currency or "", path) for e in entries]
    if interim:
        warnings.extend(_check_sums(trs, raw, tags))
    reference = clean_text(trs.data.get("transaction_reference"))
    number = trs.data.get("statement_number")
    if reference and number:
        sequence = trs.data.get("sequence_number")
        reference = f"{reference}/{number}" + (f"/{sequence}" if sequence else "")
    dates = [e.booked_local.date() for e in raw]
    indicated = trs.data.get("date")  # :13D: of an MT942
    period_end = closed or (indicated.date() if isinstance(indicated, datetime) else None)
    facts = StatementFacts(
        account_number=account,
        currency=currency,
        opening_balance_minor=opening,
        closing_balance_minor=closing,
        period_start=opened or (min(dates) if dates else None),
        period_end=period_end or (max(dates) if dates else None),
        statement_ref=reference,
        location=str(block[0].line),
    )
    return ParsedStatement(facts=facts, entries=entries_table(raw), warnings=tuple(warnings))


def _entry(entry: _Entry, account: str | None, currency: str, path: Path) -> RawEntry:
    data = entry.data
    amount = data["amount"]
    value_date: date = data["date"]
    booked: date = data.get("entry_date") or value_date
    details = _details(entry)
    reference = clean_text(data.get("bank_reference"))
    customer = clean_text(data.get("customer_reference"))
    if not reference and customer and customer.upper() not in _NO_REFERENCE:
        reference = customer
    if not reference:
        reference = details.get("reference")
    code = clean_text(data.get("id"))
    gvc = details.get("gvc")
    account_of_counterparty = details.get("account") or _iban_in(
        data.get("customer_reference"), data.get("extra_details")
    )
    name = details.get("name")
    raw = RawEntry(
        booked_local=datetime(booked.year, booked.month, booked.day),
        value_date=date(value_date.year, value_date.month, value_date.day),
        amount_minor=0,
        currency=currency,
        location=str(entry.tag.line),
        account_number=account,
        counterparty_name=" ".join(name.split()) if name else None,
        counterparty_account=account_of_counterparty,
        counterparty_bank=details.get("bank"),
        description=details.get("description") or clean_text(data.get("extra_details")),
        reference=reference,
        end_to_end_id=details.get("end_to_end"),
        tx_code="/".join(c for c in (code, gvc) if c) or None,
        raw_text="\n".join(_raw_lines(entry)),
    )
    minor, reason = to_minor_or_reason(Decimal(amount.amount), currency)
    if reason is not None:
        return raw.invalid(reason)
    return replace(raw, amount_minor=minor)


def _iban_in(*texts: str | None) -> str | None:
    """A valid IBAN that starts one of ``texts`` (ASN Bank and Rabobank put the counterparty's
    there), else ``None``."""
    from stdnum import iban

    for text in texts:
        token = (text or "").strip().split(maxsplit=1)
        if token and iban.is_valid(token[0]):
            return str(iban.compact(token[0]))
    return None


def _raw_lines(entry: _Entry) -> list[str]:
    lines = [f":{entry.tag.name}:" + entry.tag.lines[0], *entry.tag.lines[1:]]
    for tag in entry.details:
        lines.append(f":{tag.name}:" + tag.lines[0])
        lines.extend(tag.lines[1:])
    return [line for line in lines if line.strip()]


def _details(entry: _Entry) -> dict[str, str | None]:
    """Description, counterparty and references from the entry's ``:86:``."""
    texts = [t for t in entry.details if t.name == "86"]
    if not texts:
        return {}
    lines = [line.rstrip() for tag in texts for line in tag.lines if line.strip()]
    joined = "".join(lines)
    data = entry.detail_data
    if _STRUCTURED_86.match(joined):
        end_to_end = clean_text(data.get("end_to_end_reference"))
        return {
            "description": joined,
            "name": clean_text(data.get("applicant_name")),
            "account": clean_text(data.get("applicant_iban") or data.get("gvc_applicant_iban")),
            "bank": clean_text(data.get("applicant_bin") or data.get("gvc_applicant_bin")),
            "end_to_end": None if (end_to_end or "").upper() in _NO_REFERENCE else end_to_end,
            "reference": clean_text(data.get("customer_reference")),
            "gvc": clean_text(data.get("transaction_code")),
        }
    slash = _slash_fields(joined)
    if slash:
        counterparty = (slash.get("CNTP") or "").split("/")
        end_to_end = clean_text(slash.get("EREF"))

        def part(index: int) -> str | None:
            return clean_text(counterparty[index]) if len(counterparty) > index else None

        return {
            "description": joined,
            "name": clean_text(slash.get("NAME")) or part(2),
            "account": clean_text(slash.get("IBAN")) or part(0),
            "bank": clean_text(slash.get("BIC")) or part(1),
            "end_to_end": None if (end_to_end or "").upper() in _NO_REFERENCE else end_to_end,
            "reference": clean_text(slash.get("PREF") or slash.get("MARF")),
        }
    return {"description": " ".join(line.strip() for line in lines)}


def _slash_fields(text: str) -> dict[str, str]:
    """``/KEY/value/KEY/value`` details (Dutch banks, SEPA) as a dict; empty if not that style."""
    tokens = text.split("/")
    if len(tokens) < 3 or tokens[0].strip() or tokens[1] not in _SLASH_KEYS:
        return {}
    found: dict[str, list[str]] = {}
    key: str | None = None
    for token in tokens[1:]:
        if token in _SLASH_KEYS:
            key = token
            found.setdefault(key, [])
        elif key is not None:
            found[key].append(token)
    return {k: "/".join(v).strip("/") for k, v in found.items()}


def _check_sums(trs: Any, entries: list[RawEntry], tags: dict[str, _Tag]) -> list[str]:
    warnings: list[str] = []
    for name, slug, sign in (("90D", "sum_debit_entries", -1), ("90C", "sum_credit_entries", 1)):
        stated = trs.data.get(slug)
        if stated is None:
            continue
        mine = [e.amount_minor for e in entries if e.amount_minor * sign > 0]
        try:
            stated_minor = to_minor(abs(Decimal(stated.amount)), stated.currency)
        except (MoneyError, InvalidCodeError) as exc:
            warnings.append(f"line {tags[name].line}: {name} not checked: {exc}")
            continue
        count = int(stated.number) if stated.number else None
        total = abs(sum(mine))
        if stated_minor != total or (count is not None and count != len(mine)):
            warnings.append(
                f"line {tags[name].line}: :{name}: states {count} entries totalling "
                f"{stated_minor} minor units; the statement has {len(mine)} totalling {total}"
            )
    return warnings
