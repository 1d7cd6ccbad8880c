"""Chinese online-banking statement exports (CSV and XLSX), laid out by a bank profile.

A :class:`~flowbureau.formats.profiles.Profile` says which headers mean what
(:mod:`~flowbureau.formats.layout` finds them); this module frames the file and
:mod:`~flowbureau.formats.conversion` turns the rows into entries.

Rules:
- Encoding: a UTF-8 BOM or valid UTF-8 means UTF-8, else the profile's encodings in order
  (:mod:`flowbureau.formats.text`); undecodable bytes are an
  :class:`~flowbureau.errors.InputError` naming the line.
- The header row is the first of the first 30 lines (sheet rows) that resolves under the
  profile. Lines above it are the preamble: ``key: value`` / ``key：value`` in one cell, or
  ``key`` and ``value`` in adjacent cells, several pairs per line allowed, keys from the
  profile's ``[preamble]``: account, owner, unified social credit code (validated), currency
  (``人民币`` / ``CNY`` ...), period (``start 至 end``, ``~``, `` - ``, ``YYYYMMDD-YYYYMMDD``).
- Trailing blank and summary lines are cut before parsing, so footers whose cells do not line
  up with the header are fine; any other row whose cell count differs from the header's is a
  :class:`~flowbureau.errors.ParseError` naming its line.
- ``location`` is the 1-based line (CSV) or sheet row (XLSX); ``raw_text`` the line as written
  (XLSX: the row's cells joined with commas). XLSX reads the first worksheet; numeric cells
  are the doubles the workbook stores, written as their shortest decimal representation.
- Currency: a currency column, else the preamble's, else the profile's ``default_currency``
  (said in a warning).
- CSV bodies are parsed by ``pyarrow.csv`` in chunks of about 32 MiB of one UTF-8 buffer
  (GBK / GB18030 files are transcoded once). Rows map 1:1 onto non-empty lines unless a quoted
  value holds a line break; such a chunk is re-read with Python's ``csv`` module to keep exact
  line numbers.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowbureau.errors import FlowbureauError, InputError, ParseError
from flowbureau.formats.base import (
    BytesStatementReader,
    ParsedStatement,
    Sniff,
    reconcile,
    with_reconciliation_note,
)
from flowbureau.formats.conversion import (
    Body,
    Context,
    Converted,
    FileBody,
    Summary,
    convert,
    statement,
    statements_bulk,
)
from flowbureau.formats.layout import (
    DEFAULT_DIRECTIONS,
    MAX_HEADER_LINE,
    Layout,
    currency_code,
    find_layout,
    find_layout_in_lines,
    normalize_header,
    split_cells,
)
from flowbureau.formats.profiles import Profile
from flowbureau.formats.text import UTF8_BOM, choose_encoding, decode, first_bad_utf8_line
from flowbureau.schema import InvalidCodeError, currency_exponent, validate_credit_code

CHUNK_BYTES = 32 << 20
BULK_BYTES = 8 << 20
"""Joined bodies parsed and converted in one pass by :meth:`TabularReader.parse_many`."""
_IDEOGRAPHIC_SPACE = "\u3000".encode()
HEAD_BYTES = 64 << 10
XLSX_MAGIC = b"PK\x03\x04"
XLS_MAGIC = b"\xd0\xcf\x11\xe0"
ISO_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
"""How XLSX date cells are written as text (tried after the profile's formats)."""

MONEY_FIELDS = ("debit", "credit", "amount", "balance")
_PERIOD_SPLIT = re.compile(r"\s*(?:至|到|~|～|—|－|--|\s-\s)\s*")


@dataclass(frozen=True)
class Head:
    """The first lines (CSV) or rows (XLSX) of a file, or why they cannot be read.

    A CSV head keeps its lines as text (``lines``) and splits them into cells only when asked
    (``rows``); :meth:`layout` finds a profile's header row without splitting most lines.
    """

    rows_given: tuple[tuple[int, list[str]], ...] = ()
    problem: str | None = None
    lines: tuple[tuple[int, str], ...] | None = None
    delimiter: str = ","

    @functools.cached_property
    def rows(self) -> tuple[tuple[int, list[str]], ...]:
        """The first lines or rows as cells."""
        if self.lines is None:
            return self.rows_given
        return tuple((n, split_cells(t, self.delimiter)) for n, t in self.lines)

    @functools.cached_property
    def text(self) -> str:
        """The CSV lines joined with newlines, stray BOMs dropped (for substring checks)."""
        return "\n".join(t for _, t in self.lines or ()).replace("\ufeff", "")

    def layout(self, profile: Profile) -> Layout | str:
        """The profile's header row among these lines (see ``find_layout``)."""
        if self.lines is None:
            return find_layout(profile, self.rows_given)
        return find_layout_in_lines(profile, self.lines, self.delimiter, joined=self.text)


def read_head(path: Path, head: bytes, encodings: Sequence[str], delimiter: str) -> Head:
    """The first :data:`~flowbureau.formats.layout.MAX_HEADER_LINE` lines or rows."""
    if head.startswith(XLSX_MAGIC):
        stat = path.stat()
        return _xlsx_head(str(path), stat.st_mtime_ns, stat.st_size)
    if head.startswith(XLS_MAGIC):
        return Head((), "legacy .xls (BIFF) workbook: save it as .xlsx or CSV")
    return _text_head(head, tuple(encodings), delimiter)


@functools.lru_cache(maxsize=16)
def _text_head(head: bytes, encodings: tuple[str, ...], delimiter: str) -> Head:
    """A CSV head, cached: detection asks once per profile with the same bytes object (whose
    hash Python computes once)."""
    lines = _utf8_lines(head)
    if lines is None:
        encoding, why = choose_encoding(head, encodings)
        if why:
            return Head((), why)
        lines = _head_lines(head, encoding)
    return Head(lines=lines, delimiter=delimiter)


@functools.lru_cache(maxsize=4)
def _utf8_lines(head: bytes) -> tuple[tuple[int, str], ...] | None:
    """The head's first lines when it is UTF-8 (whatever encodings a profile allows, UTF-8
    content is read as UTF-8), else ``None``; decided once per head."""
    encoding, why = choose_encoding(head, ())
    return None if why else _head_lines(head, encoding)


def _head_lines(head: bytes, encoding: str) -> tuple[tuple[int, str], ...]:
    lines: list[tuple[int, str]] = []
    data = head.removeprefix(UTF8_BOM)
    start = 0
    for number in range(1, MAX_HEADER_LINE + 1):
        stop = data.find(b"\n", start)
        raw = data[start:] if stop < 0 else data[start:stop]
        try:
            text = raw.decode(encoding).rstrip("\r")
        except UnicodeDecodeError:
            break  # the sample ends inside a multi-byte character
        lines.append((number, text))
        if stop < 0:
            break
        start = stop + 1
    return tuple(lines)


@functools.lru_cache(maxsize=4)
def _xlsx_head(path: str, mtime_ns: int, size: int) -> Head:
    """The first rows of a workbook, cached: detection asks once per profile."""
    del mtime_ns, size  # only part of the cache key
    try:
        rows = list(xlsx_rows(Path(path).read_bytes(), Path(path), limit=MAX_HEADER_LINE))
    except InputError as exc:
        return Head((), exc.message)
    return Head(tuple(rows))


@dataclass(frozen=True)
class _Frame:
    """A CSV file cut into its parts: UTF-8 bytes, context, facts, body range, footer."""

    buf: bytes
    ctx: Context
    facts: dict[str, Any]
    body_start: int
    body_end: int
    first_line: int
    """Line number of the first body line (the one after the header)."""
    newlines: int
    """Line breaks in the body."""
    footer: list[Summary]


class TabularReader(BytesStatementReader):
    """One bank profile's CSV / XLSX export (``--format csv --profile NAME``)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.name = profile.name

    def sniff(self, path: Path, head: bytes) -> Sniff:
        """0.9 when a header row has every ``match`` header and resolves; 0.5 for a profile
        without ``match`` (the generic one); else 0 with the reason."""
        info = read_head(path, head, self.profile.encodings, self.profile.delimiter)
        if info.problem:
            return Sniff(0.0, info.problem)
        layout = info.layout(self.profile)
        if isinstance(layout, str):
            return Sniff(0.0, layout)
        missing = [m for m in self.profile.match if m not in layout.header]
        if missing:
            return Sniff(0.0, f"header row (line {layout.line}) lacks {', '.join(missing)}")
        if not self.profile.match:
            return Sniff(0.5, f"header synonyms cover date and amount (line {layout.line})")
        return Sniff(0.9, f"header row (line {layout.line}) has {', '.join(self.profile.match)}")

    def parse(self, data: bytes, path: Path) -> list[ParsedStatement]:
        """The file as one statement."""
        if data.startswith(XLSX_MAGIC):
            return [self._read_xlsx(data, path)]
        if data.startswith(XLS_MAGIC):
            raise ParseError(
                "legacy .xls (BIFF) workbooks are not supported: save it as .xlsx or CSV",
                file=path,
            )
        return [self._read_csv(data, path)]

    def parse_many(self, files: Sequence[tuple[bytes, Path]]) -> list[list[ParsedStatement]]:
        """Statements of many files, as ``read_file`` returns them (reconciliation warnings
        included), read in bulk.

        Each file is framed on its own (encoding, header, preamble, footer); bodies with the
        same header row and currency are then joined and parsed and converted in one pass
        (``BULK_BYTES`` at a time, in threads), and split back into statements whose entries
        are slices of one table (:class:`~flowbureau.formats.base.EntrySpan`). Files that
        need care (XLSX, full-width spaces or ``="`` cells, a quoted value spanning lines) are
        read one by one. If anything fails, the files are read again one by one, in order,
        so the error raised is exactly the one reading them one by one raises first.
        """
        try:
            return self._parse_many(files)
        except FlowbureauError:
            return [
                [with_reconciliation_note(s, reconcile(s)) for s in self.parse(data, path)]
                for data, path in files
            ]

    def _parse_many(self, files: Sequence[tuple[bytes, Path]]) -> list[list[ParsedStatement]]:
        results: list[list[ParsedStatement] | None] = [None] * len(files)
        groups: dict[tuple[tuple[str, ...], str], list[tuple[int, _Frame]]] = {}
        for index, (data, path) in enumerate(files):
            if data.startswith((XLSX_MAGIC, XLS_MAGIC)):
                results[index] = self._parse_one(data, path)
                continue
            frame = self._frame(data, path)
            body = (frame.body_start, frame.body_end)
            if not _plain(frame.buf, *body):
                results[index] = self._parse_one(data, path)
                continue
            key = (frame.ctx.layout.header, frame.ctx.currency)
            groups.setdefault(key, []).append((index, frame))
        chunks: list[list[tuple[int, _Frame]]] = []
        for members in groups.values():
            chunk: list[tuple[int, _Frame]] = []
            size = 0
            for member in members:
                chunk.append(member)
                size += member[1].body_end - member[1].body_start
                if size >= BULK_BYTES:
                    chunks.append(chunk)
                    chunk, size = [], 0
            if chunk:
                chunks.append(chunk)
        workers = min(len(chunks), os.cpu_count() or 1, 8)
        if workers <= 1:
            converted = [self._convert_chunk(chunk) for chunk in chunks]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                converted = list(pool.map(self._convert_chunk, chunks))
        for chunk, statements in zip(chunks, converted, strict=True):
            for (index, _), parsed in zip(chunk, statements, strict=True):
                results[index] = parsed
        return [
            parsed if parsed is not None else self._parse_one(*files[index])
            for index, parsed in enumerate(results)
        ]

    def _parse_one(self, data: bytes, path: Path) -> list[ParsedStatement]:
        return [with_reconciliation_note(s, reconcile(s)) for s in self.parse(data, path)]

    def _convert_chunk(
        self, chunk: Sequence[tuple[int, _Frame]]
    ) -> list[list[ParsedStatement] | None]:
        """One parse + conversion of the chunk's joined bodies, split back per file (or all
        ``None`` when the joined body cannot map rows 1:1 onto lines)."""
        parts: list[bytes] = []
        files: list[FileBody] = []
        virtual = 1
        for _, frame in chunk:
            body = frame.buf[frame.body_start : frame.body_end]
            lines = frame.newlines
            if body and not body.endswith(b"\n"):
                body += b"\n"
                lines += 1
            files.append(FileBody(frame.ctx, frame.facts, virtual, frame.first_line, frame.footer))
            virtual += lines
            parts.append(body)
        joined = b"".join(parts)
        ctx = chunk[0][1].ctx
        try:
            rows = _csv_body(joined, 0, len(joined), 1, ctx, bulk=True, plain=True)
        except _NotOneRowPerLineError:
            return [None] * len(chunk)
        pairs = statements_bulk(convert(rows, ctx), files)
        return [[with_reconciliation_note(parsed, diff)] for parsed, diff in pairs]

    def _context(
        self,
        path: Path,
        layout: Layout,
        preamble: Sequence[tuple[int, list[str]]],
        *,
        extra_formats: tuple[str, ...] = (),
        delimiter: str | None = None,
    ) -> tuple[Context, dict[str, Any]]:
        profile = self.profile
        facts = _preamble(profile, preamble, path)
        stated = facts.get("currency")
        warnings = []
        if stated is None and "currency" not in layout.columns:
            warnings.append(
                f"no currency stated; {profile.default_currency} assumed (profile "
                f"{profile.name} default_currency)"
            )
        ctx = Context(
            path=path,
            layout=layout,
            account=facts.get("account"),
            currency=stated or profile.default_currency,
            date_formats=tuple(dict.fromkeys((*profile.date_formats, *extra_formats))),
            time_formats=profile.time_formats,
            directions={
                k: tuple(profile.direction_values.get(k, ())) or DEFAULT_DIRECTIONS[k]
                for k in ("debit", "credit")
            },
            delimiter=delimiter or profile.delimiter,
            summary_markers=profile.summary_markers,
            warnings=warnings,
        )
        return ctx, facts

    def _frame(self, data: bytes, path: Path) -> _Frame:
        """Where a CSV file's parts are (preamble facts, header, body, footer); raises on a bad
        encoding, a missing header row or a bad preamble value."""
        profile = self.profile
        encoding, why = choose_encoding(data[:HEAD_BYTES], profile.encodings)
        if why:
            line = first_bad_utf8_line(data[:HEAD_BYTES])
            raise InputError(why, file=path, line=line, field="encoding")
        if encoding == "utf-8":
            buf, start = data, len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
        else:
            buf, start = decode(data, encoding, file=path).encode("utf-8"), 0
        sample_end = min(len(buf), start + HEAD_BYTES)
        texts: list[tuple[int, str]] = []
        offset = start
        for number in range(1, MAX_HEADER_LINE + 1):
            stop = buf.find(b"\n", offset, sample_end)
            if stop < 0 and sample_end < len(buf):
                break  # the sample ends inside a line
            raw = buf[offset : sample_end if stop < 0 else stop]
            try:
                text = raw.decode("utf-8").rstrip("\r")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"not valid UTF-8 ({exc.reason}); the file mixes encodings or is damaged",
                    file=path,
                    line=number,
                    field="encoding",
                ) from None
            texts.append((number, text))
            if stop < 0:
                break
            offset = stop + 1
        layout = find_layout_in_lines(profile, texts, profile.delimiter)
        if isinstance(layout, str):
            raise ParseError(f"not a {profile.name} export: {layout}", file=path, line=1)
        preamble = [(n, split_cells(t, profile.delimiter)) for n, t in texts if n < layout.line]
        ctx, facts = self._context(path, layout, preamble)
        body_start = start
        for _ in range(layout.line):
            stop = buf.find(b"\n", body_start)
            body_start = len(buf) if stop < 0 else stop + 1
        body_end = _body_end(buf, body_start, ctx)
        first_line = layout.line + 1
        newlines = buf.count(b"\n", body_start, body_end)
        footer = _footer(buf, body_end, first_line + newlines, ctx)
        return _Frame(buf, ctx, facts, body_start, body_end, first_line, newlines, footer)

    def _read_csv(self, data: bytes, path: Path) -> ParsedStatement:
        frame = self._frame(data, path)
        buf, ctx = frame.buf, frame.ctx
        jobs = []
        line = frame.first_line
        for begin, end in _chunks(buf, frame.body_start, frame.body_end):
            jobs.append((begin, end, line))
            line += buf.count(b"\n", begin, end)

        def work(job: tuple[int, int, int]) -> Converted:
            return convert(_csv_body(buf, *job, ctx), ctx)

        # Arrow releases the GIL: chunks are parsed and converted in parallel; map() hands
        # results (and the first error) back in file order.
        if len(jobs) <= 1:
            converted = [work(job) for job in jobs]
        else:
            with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1, 8)) as pool:
                converted = list(pool.map(work, jobs))
        return statement(ctx, converted, frame.footer, frame.facts, ())

    def _read_xlsx(self, data: bytes, path: Path) -> ParsedStatement:
        rows = list(xlsx_rows(data, path))
        layout = find_layout(self.profile, rows)
        if isinstance(layout, str):
            raise ParseError(f"not a {self.profile.name} export: {layout}", file=path, line=1)
        preamble = [r for r in rows if r[0] < layout.line]
        ctx, facts = self._context(
            path, layout, preamble, extra_formats=ISO_DATE_FORMATS, delimiter=","
        )
        width = len(layout.header)
        body = [(n, c) for n, c in rows if n > layout.line and any(x.strip() for x in c)]
        for number, cells in body:
            if len(cells) > width and any(c.strip() for c in cells[width:]):
                raise ParseError(
                    f"row has cells beyond the header's {width} columns", file=path, line=number
                )
        columns = {
            i: pa.array([c[i] if i < len(c) else "" for _, c in body], pa.string())
            for i in layout.needed
        }
        converted = convert(
            Body(
                cells=columns,
                lines=pa.array([n for n, _ in body], pa.int64()),
                raw=pa.array([",".join(c).rstrip(",") for _, c in body], pa.string()),
            ),
            ctx,
        )
        return statement(ctx, [converted], [], facts, ())


def xlsx_rows(data: bytes, path: Path, limit: int | None = None) -> Iterator[tuple[int, list[str]]]:
    """Rows of the first worksheet as text cells, numbered from 1."""
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, OSError) as exc:
        raise ParseError(f"not a readable XLSX workbook: {exc}", file=path) from None
    try:
        if not book.worksheets:
            raise ParseError("the workbook has no worksheet", file=path)
        rows = book.worksheets[0].iter_rows(values_only=True)
        for number, values in enumerate(rows, start=1):
            if limit is not None and number > limit:
                break
            yield number, [_xlsx_text(v) for v in values]
    finally:
        book.close()


def _xlsx_text(value: Any) -> str:
    """A cell value as the text a CSV export would carry."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.hour or value.minute or value.second:
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return value.strftime("%Y-%m-%d")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, float):
        # Workbooks store numbers as doubles; the shortest repr is the number they display.
        return format(Decimal(repr(value)), "f")
    return str(value)


def _preamble_keys(profile: Profile) -> dict[str, str]:
    return {normalize_header(n): fact for fact, names in profile.preamble.items() for n in names}


def _preamble(
    profile: Profile, rows: Sequence[tuple[int, list[str]]], path: Path
) -> dict[str, Any]:
    """Statement facts from the ``key: value`` lines above the header row."""
    keys = _preamble_keys(profile)
    found: dict[str, Any] = {}
    for number, cells in rows:
        texts = [c.strip() for c in cells]
        index = 0
        while index < len(texts):
            pair = re.match(r"^([^:：]*)[:：](.*)$", texts[index])
            key, value = (pair.group(1), pair.group(2)) if pair else (texts[index], "")
            fact = keys.get(normalize_header(key))
            index += 1
            if fact is None:
                continue
            value = value.strip()
            if not value and index < len(texts):
                value, index = texts[index], index + 1
            if value and fact not in found:
                cache = (fact, value, profile.date_formats)
                known = _FACTS.get(cache)
                if known is None:
                    known = _fact(
                        fact, value, line=number, profile=profile, path=path, key=key.strip()
                    )
                    if len(_FACTS) >= 4096:
                        _FACTS.clear()
                    _FACTS[cache] = known
                found[fact] = known
    return found


_FACTS: dict[tuple[str, str, tuple[str, ...]], Any] = {}
"""Preamble values already read (a value depends only on the fact, its text and the date
formats; one that fails is never stored, so its error is raised with its own file and line)."""


def _fact(fact: str, value: str, *, line: int, profile: Profile, path: Path, key: str) -> Any:
    if fact == "credit_code":
        try:
            return validate_credit_code(value)
        except InvalidCodeError as exc:
            raise InputError(str(exc), file=path, line=line, field=key) from None
    if fact == "currency":
        code = currency_code(value)
        if code is None:
            raise InputError(f"unknown currency {value!r}", file=path, line=line, field=key)
        return code
    if fact == "period":
        parts = _PERIOD_SPLIT.split(value)
        compact = re.fullmatch(r"([0-9]{8})-([0-9]{8})", value)
        if compact:
            parts = list(compact.groups())
        if len(parts) != 2:
            raise InputError(
                f"period {value!r} is not 'start 至 end'", file=path, line=line, field=key
            )
        formats = [*profile.date_formats, "%Y%m%d", "%Y-%m-%d"]
        return tuple(_date(p, formats, path, line, key) for p in parts)
    return value


def _date(text: str, formats: Sequence[str], path: Path, line: int, key: str) -> date:
    for fmt in formats:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise InputError(
        f"{text!r} matches none of the date formats {list(formats)}",
        file=path,
        line=line,
        field=key,
    )


def _body_end(buf: bytes, body_start: int, ctx: Context) -> int:
    """Where the records end: trailing blank and summary lines are not records.

    Walks back line by line from the end, within the last ``HEAD_BYTES`` of the body (a line
    cut by that window is not judged).
    """
    end = len(buf)
    window = max(body_start, end - HEAD_BYTES)
    cut = stop = end
    while True:
        newline = buf.rfind(b"\n", window, stop)
        begin = window if newline < 0 else newline + 1
        if newline < 0 and window != body_start:
            break  # the window starts inside a line
        try:
            text = buf[begin:stop].decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            break
        if not (ctx.blank_line.match(text) or ctx.summary_line.match(text)):
            break
        cut = begin
        if newline < 0:
            break
        stop = newline
    return max(cut, body_start)


def _footer(buf: bytes, body_end: int, line: int, ctx: Context) -> list[Summary]:
    """The summary rows after the records (``line`` is the line at ``body_end``)."""
    summaries = []
    for offset, raw in enumerate(buf[body_end:].split(b"\n")):
        text = raw.decode("utf-8").rstrip("\r")
        if ctx.summary_line.match(text):
            summaries.append(ctx.summary(line + offset, split_cells(text, ctx.delimiter)))
    return summaries


def _chunks(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int]]:
    """``[begin, end)`` byte ranges of about ``CHUNK_BYTES`` that end after a newline."""
    begin = start
    while begin < end:
        stop = buf.find(b"\n", begin + CHUNK_BYTES, end) if end - begin > CHUNK_BYTES else -1
        stop = end if stop == -1 else stop + 1
        yield begin, stop
        begin = stop


class _NotOneRowPerLineError(Exception):
    """A bulk body whose rows do not map 1:1 onto its non-empty lines (read per file)."""


def _csv_body(
    buf: bytes,
    begin: int,
    end: int,
    first_line: int,
    ctx: Context,
    *,
    bulk: bool = False,
    plain: bool | None = None,
) -> Body:
    """The rows of ``buf[begin:end]`` via pyarrow.csv, with exact line numbers.

    With ``bulk`` (several files' bodies joined), a body that needs Python's ``csv`` module
    (a quoted value spanning lines, or one pyarrow cannot read) raises
    :class:`_NotOneRowPerLineError` instead: a quote left open in one file must not swallow the
    next file's lines, so such bodies are read file by file. ``plain`` says whether the body
    has neither full-width spaces nor ``="`` (looked up when ``None``).
    """
    import pyarrow.csv as pacsv

    width = len(ctx.layout.header)
    names = [f"c{i}" for i in range(width)]
    chunk = pa.py_buffer(buf).slice(begin, end - begin)
    lines = _lines(chunk, buf, begin, first_line, ctx)
    bad: list[Any] = []

    def on_invalid(row: Any) -> str:
        if not ctx.blank_line.match((row.text or "").rstrip("\r")):
            bad.append(row)
        return "skip"

    columns = ctx.layout.columns
    money = [f for f in MONEY_FIELDS if f in columns] if "currency" not in columns else []
    exponent = currency_exponent(ctx.currency)
    decimals = {names[columns[f]]: pa.decimal128(18, exponent) for f in money}
    table = None
    # First try: the CSV parser reads the money columns as exact decimals of the currency's
    # scale (it refuses to drop digits). Anything unusual (thousands separators, too many
    # decimals, text) makes it fail, and the text path below finds and names the problem.
    for typed in (decimals, {}) if decimals else ({},):
        bad.clear()
        try:
            table = pacsv.read_csv(
                pa.BufferReader(chunk),
                # One block per chunk: chunks run in parallel, each column is one array.
                read_options=pacsv.ReadOptions(
                    column_names=names, use_threads=False, block_size=end - begin + 1
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=ctx.delimiter, invalid_row_handler=on_invalid
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={**dict.fromkeys(names, pa.string()), **typed},
                    include_columns=[names[i] for i in ctx.layout.needed],
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            break
        except pa.ArrowInvalid:
            continue
    if table is None:  # e.g. an unterminated quote: let Python's csv say where
        if bulk:
            raise _NotOneRowPerLineError
        return _python_body(buf, begin, end, first_line, ctx)
    if bad:
        row = bad[0]
        found = buf.find((row.text or "").encode("utf-8"), begin, end) if row.text else -1
        raise ParseError(
            f"row has {row.actual_columns} cells, the header (line {ctx.layout.line}) has "
            f"{row.expected_columns}",
            file=ctx.path,
            line=first_line + buf.count(b"\n", begin, found) if found >= 0 else None,
        )
    nonempty = pc.not_equal(pc.binary_length(lines), 0)
    if pc.all(nonempty).as_py():
        raw, numbers = lines, pa.array(np.arange(first_line, first_line + len(lines)))
    else:
        raw = lines.filter(nonempty)
        numbers = pc.add(pc.indices_nonzero(nonempty), first_line)
    if len(raw) != table.num_rows:  # a quoted value spans lines
        if bulk:
            raise _NotOneRowPerLineError
        return _python_body(buf, begin, end, first_line, ctx)
    parsed = {
        f: names[columns[f]]
        for f in money
        if pa.types.is_decimal(table.schema.field(names[columns[f]]).type)
    }
    return Body(
        cells={
            i: table.column(names[i]).combine_chunks()
            for i in ctx.layout.needed
            if names[i] not in parsed.values()
        },
        lines=pc.cast(numbers, pa.int64()),
        raw=raw,
        money={f: _unscaled(table.column(n).combine_chunks()) for f, n in parsed.items()},
        plain=plain if plain is not None else _plain(buf, begin, end),
    )


def _plain(buf: bytes, begin: int, end: int) -> bool:
    """True when ``buf[begin:end]`` has no full-width space (U+3000) and no ``="``.

    Looks for the space's rare lead byte with ``find`` (memchr) and checks the rest there:
    searching the three-byte sequence itself is slow in CJK text, whose continuation bytes
    keep matching its last byte.
    """
    if buf.find(b'="', begin, end) >= 0:
        return False
    at = buf.find(b"\xe3", begin, end)
    while at >= 0:
        if buf.startswith(_IDEOGRAPHIC_SPACE, at):
            return False
        at = buf.find(b"\xe3", at + 1, end)
    return True


def _unscaled(values: pa.Array) -> pa.Array:
    """The unscaled integers of a decimal128 array of precision <= 18 (its minor units).

    Arrow stores decimal128 as 16-byte little-endian two's complement integers; below 10**18
    the low 8 bytes hold the value exactly, so this is a zero-arithmetic view.
    """
    assert values.type.precision <= 18
    assert values.offset == 0
    low = np.frombuffer(values.buffers()[1], dtype=np.int64)[0 : 2 * len(values) : 2]
    return pa.Array.from_buffers(
        pa.int64(), len(values), [values.buffers()[0], pa.py_buffer(np.ascontiguousarray(low))]
    )


def _lines(chunk: pa.Buffer, buf: bytes, begin: int, first_line: int, ctx: Context) -> pa.Array:
    """The chunk's physical lines (``\\r`` trimmed), validated as UTF-8.

    Built from the newline positions in one vectorised pass: the line texts are the chunk's
    bytes without its ``\\n`` (a newline never sits inside a UTF-8 sequence, so each line is
    valid UTF-8 exactly when the chunk is).
    """
    size = chunk.size
    view = np.frombuffer(buf, dtype=np.uint8, count=size, offset=begin)
    breaks = np.flatnonzero(view == ord("\n"))
    count = len(breaks) + (0 if size and view[-1] == ord("\n") else 1)
    starts = np.concatenate(([0], breaks + 1))[:count]
    ends = np.concatenate((breaks, [size]))[:count]
    offsets = np.concatenate(([0], np.cumsum(ends - starts))).astype(np.int64)
    values = pa.py_buffer(np.ascontiguousarray(view[view != ord("\n")]))
    lines = pa.Array.from_buffers(pa.large_string(), count, [None, pa.py_buffer(offsets), values])
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        data = buf[begin : begin + size]
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"not valid UTF-8 ({exc.reason}); the file mixes encodings or is damaged",
                file=ctx.path,
                line=first_line + data.count(b"\n", 0, exc.start),
                field="encoding",
            ) from None
        raise
    if buf.find(b"\r", begin, begin + size) >= 0:
        lines = pc.utf8_rtrim(lines, characters="\r")
    return pc.cast(lines, pa.string())


def _python_body(buf: bytes, begin: int, end: int, first_line: int, ctx: Context) -> Body:
    """Exact but slower: Python's csv module, for bodies with line breaks inside values."""
    text = buf[begin:end].decode("utf-8")
    physical = text.split("\n")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=ctx.delimiter)
    width = len(ctx.layout.header)
    columns: dict[int, list[str]] = {i: [] for i in ctx.layout.needed}
    numbers: list[int] = []
    raws: list[str] = []
    consumed = 0
    try:
        for cells in reader:
            start, consumed = consumed, reader.line_num
            source = "\n".join(p.rstrip("\r") for p in physical[start:consumed])
            if not cells or ctx.blank_line.match(source):
                continue
            if len(cells) != width:
                raise ParseError(
                    f"row has {len(cells)} cells, the header (line {ctx.layout.line}) has {width}",
                    file=ctx.path,
                    line=first_line + start,
                )
            for i, column in columns.items():
                column.append(cells[i])
            numbers.append(first_line + start)
            raws.append(source)
    except csv.Error as exc:
        raise ParseError(f"CSV syntax: {exc}", file=ctx.path, line=first_line + consumed) from None
    return Body(
        cells={i: pa.array(v, pa.string()) for i, v in columns.items()},
        lines=pa.array(numbers, pa.int64()),
        raw=pa.array(raws, pa.string()),
    )
