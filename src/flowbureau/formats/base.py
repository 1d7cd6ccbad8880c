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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa

from flowbureau.schema import RAW_ENTRY_SCHEMA


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
class ParsedStatement:
    """One statement of a file: its facts, booked entries and reported-only pending entries."""

    facts: StatementFacts
    entries: pa.Table
    pending: pa.Table = field(default_factory=RAW_ENTRY_SCHEMA.empty_table)
    warnings: tuple[str, ...] = ()


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
