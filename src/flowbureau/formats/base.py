"""The contract every statement reader fulfils.

A reader turns one file into :class:`ParsedStatement` objects: statement-level facts plus an
Arrow table of entries in :data:`~flowbureau.schema.RAW_ENTRY_SCHEMA`. Readers do not assign
ids, pseudonymise, clean or store: the ingest pipeline does that for every format alike.

Rules:
- ``sniff`` looks only at the first bytes and returns a confidence in [0, 1] with the reason
  (0 with why not), so detection can explain itself when nothing or too much matches.
- ``read`` either returns every statement of the file or raises
  :class:`~flowbureau.errors.InputError` naming file, line (or XML path) and field.
  Records that are readable but not admissible (e.g. a required field empty) are *not*
  errors: they are emitted as entries and quarantined later by the cleaning step, so that a
  bank can see every problem of a file in one pass.
- Pending / informational entries go to ``pending`` (reported, never stored).
- The INVALID rule: an entry that is readable but cannot be admitted as it stands (its amount
  has more decimals than its currency allows, a required value such as the date or the amount
  is empty, ...) is emitted in ``entries`` with ``status = "INVALID:<reason>"``,
  ``amount_minor = 0`` and its original text in ``raw_text``. Money is never rounded or
  altered to make it fit. The cleaning step quarantines every entry whose status starts with
  ``INVALID:`` with that reason and never stores it; :func:`reconcile` therefore shows such a
  file as not reconciling, which is the truth.
- Statement-level problems that do not make the file unreadable (a balance in another
  currency, a summary row whose totals disagree with the entries, a running balance that
  jumps) are listed in ``ParsedStatement.warnings`` with their line or path.
- ``reconcile`` is the one balance check every format shares: closing minus (opening plus
  the sum of the entries); ``None`` when the statement states no opening or no closing
  balance or its entries are not all in the statement currency.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from flowbureau.schema import RAW_ENTRY_SCHEMA

BOOKED = "BOOK"
"""``status`` of a booked entry (the only kind that is stored)."""

_NO_ENTRIES = RAW_ENTRY_SCHEMA.empty_table()  # immutable: one shared empty table

INVALID_PREFIX = "INVALID:"
"""``status`` prefix of a readable entry that must be quarantined (see the module rules)."""


def invalid_status(reason: str) -> str:
    """The ``status`` of an entry quarantined for ``reason``."""
    return f"{INVALID_PREFIX}{reason}"


@dataclass(frozen=True, slots=True)
class StatementFacts:
    """What a statement says about itself (all optional: formats differ in what they carry)."""

    account_number: str | None = None
    owner_name: str | None = None
    owner_id: str | None = None
    servicer: str | None = None
    currency: str | None = None
    opening_balance_minor: int | None = None
    closing_balance_minor: int | None = None
    period_start: date | None = None
    period_end: date | None = None
    statement_ref: str | None = None
    location: str = "1"


@dataclass(frozen=True, slots=True)
class EntrySpan:
    """Where a statement's entries sit in a table shared by the statements of one bulk read:
    ``entries`` is ``table.slice(offset, entries.num_rows)``, so a consumer can take a run of
    statements as one slice instead of concatenating thousands of small tables."""

    table: pa.Table
    offset: int


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """One statement of a file: its facts, booked entries and reported-only pending entries."""

    facts: StatementFacts
    entries: pa.Table
    pending: pa.Table = field(default_factory=lambda: _NO_ENTRIES)
    warnings: tuple[str, ...] = ()
    span: EntrySpan | None = field(default=None, compare=False, repr=False)
    """Set by bulk reads (see :class:`EntrySpan`); ``None`` for a statement read alone."""


@dataclass(frozen=True, slots=True)
class Sniff:
    """A reader's verdict on whether it can read a file."""

    confidence: float
    reason: str


class StatementReader(ABC):
    """One statement format (or one bank CSV profile)."""

    name: str
    """Short identifier used by ``--format`` / ``--profile``."""

    @abstractmethod
    def sniff(self, path: Path, head: bytes) -> Sniff:
        """Judge from the first bytes of ``path`` whether this reader applies."""

    @abstractmethod
    def read(self, path: Path) -> list[ParsedStatement]:
        """Parse the whole file; raise ``InputError`` with a location on malformed input."""


class BytesStatementReader(StatementReader):
    """A reader that parses a file's content from memory, so ``read_file`` reads each file once."""

    def read(self, path: Path) -> list[ParsedStatement]:
        """Read ``path`` and parse it (see :meth:`parse`)."""
        return self.parse(path.read_bytes(), path)

    @abstractmethod
    def parse(self, data: bytes, path: Path) -> list[ParsedStatement]:
        """Parse ``data``, the content of ``path`` (named in errors and warnings)."""


def reconcile(statement: ParsedStatement) -> int | None:
    """Closing balance minus (opening balance + sum of the entries), in minor units.

    0 means the statement reconciles. ``None`` when it cannot be checked: no opening or no
    closing balance stated, or an entry in another currency than the statement. Entries with
    an ``INVALID:`` status count as 0 (their amount could not be admitted), so a file with
    such entries does not reconcile unless the quarantined amounts net to zero.
    """
    facts = statement.facts
    if facts.opening_balance_minor is None or facts.closing_balance_minor is None:
        return None
    entries = statement.entries
    if entries.num_rows:
        currencies = pc.unique(entries.column("currency")).to_pylist()
        if currencies != [facts.currency]:
            return None
    total = pc.sum(entries.column("amount_minor")).as_py() or 0
    return int(facts.closing_balance_minor - (facts.opening_balance_minor + total))


def with_reconciliation_note(statement: ParsedStatement, diff: int | None) -> ParsedStatement:
    """The statement with a warning when ``diff`` (its :func:`reconcile`) is non-zero."""
    if not diff:
        return statement
    facts = statement.facts
    note = (
        f"statement at {facts.location} does not reconcile: closing {facts.closing_balance_minor}"
        f" - opening {facts.opening_balance_minor} - entries = {diff} minor units"
    )
    return replace(statement, warnings=(*statement.warnings, note))
