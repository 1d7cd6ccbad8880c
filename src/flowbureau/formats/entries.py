"""Entries built one at a time, for the record-oriented formats (MT940, camt, BAI2, OFX).

Rules:
- :class:`RawEntry` mirrors :data:`~flowbureau.schema.RAW_ENTRY_SCHEMA` field for field; the
  table built from a list of them always has exactly that schema.
- An entry that cannot be admitted is built with :meth:`RawEntry.invalid`: ``amount_minor``
  0, ``status`` ``INVALID:<reason>``, everything else (above all ``raw_text``) kept.
- ``to_minor_or_reason`` is the single place the record formats turn a printed amount into
  minor units: either the exact integer or the reason it is not representable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa

from flowbureau.formats.base import BOOKED, invalid_status
from flowbureau.schema import RAW_ENTRY_SCHEMA, MoneyError, to_minor

PLACEHOLDER_BOOKED = datetime(1970, 1, 1)
"""``booked_local`` of an INVALID entry whose date is missing: the column is non-nullable and
the entry is quarantined, never stored, so the value only fills the slot."""


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One entry as a reader saw it; see ``RAW_ENTRY_SCHEMA`` for the meaning of each field."""

    booked_local: datetime
    amount_minor: int
    currency: str
    location: str
    status: str = BOOKED
    account_number: str | None = None
    booked_offset_minutes: int | None = None
    value_date: date | None = None
    balance_after_minor: int | None = None
    counterparty_name: str | None = None
    counterparty_account: str | None = None
    counterparty_bank: str | None = None
    description: str | None = None
    reference: str | None = None
    end_to_end_id: str | None = None
    tx_code: str | None = None
    raw_text: str | None = None

    def invalid(self, reason: str) -> RawEntry:
        """This entry marked for quarantine with ``reason`` (amount 0, text kept)."""
        return replace(self, status=invalid_status(reason), amount_minor=0)


def entries_table(entries: Iterable[RawEntry]) -> pa.Table:
    """A ``RAW_ENTRY_SCHEMA`` table of ``entries`` in order."""
    return pa.Table.from_pylist([asdict(e) for e in entries], schema=RAW_ENTRY_SCHEMA)


def to_minor_or_reason(amount: Decimal, currency: str) -> tuple[int, str | None]:
    """``(minor units, None)`` when exact, else ``(0, reason)``; never rounds."""
    try:
        return to_minor(amount, currency), None
    except MoneyError as exc:
        return 0, str(exc)


def clean_text(value: str | None) -> str | None:
    """``value`` stripped, or ``None`` when empty."""
    if value is None:
        return None
    value = value.strip()
    return value or None
