"""Loading the records the platform holds into ``identity_records``.

Rules:
- Bank records come from the warehouse's ``accounts`` view (each bank's account register and
  the account facts of its statements): one record per bank and account pseudonym, with the
  owner's name and, when the bank gave one, the credit code.
- Public records come from a directory holding ``enterprises.csv`` (the business registry, record
  type ``registration``) and ``{penalties,inspections,online_lending,judgments}.csv``, either
  flat (scoring's external-data directory, ``data_dir/external``) or in the layout of
  ``docs/synth.md`` (``registry/`` and ``public_records/``). Only the identifying
  columns and a few facts for display are kept. Unlike scoring's loaders, a row whose credit
  code is missing or has a wrong check digit is kept (its code as null, the text in
  ``details.credit_code_as_printed``): finding whose record it is, is this package's job.
- A file missing a required column raises :class:`~flowbureau.errors.InputError` naming the file
  and column, and nothing of the load is written (the caller's transaction rolls back).
- Loading is an upsert by ``(source, source_ref)``: loading again refreshes ``loaded_at`` (the
  source still says so) and the fields, never duplicates. Records that vanished from a source
  are kept: links and history refer to them.
- Phones are stored as the vault's keyed HMAC of their digits (:func:`phone_key`), never clear.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.cleaning.normalise import normalise_name
from flowbureau.errors import InputError
from flowbureau.identity.models import IdentityRecord
from flowbureau.schema import is_valid_credit_code
from flowbureau.service.vault import Vault

if TYPE_CHECKING:
    from flowbureau.storage.warehouse import Warehouse

__all__ = [
    "PHONE_CONTEXT",
    "LoadReport",
    "RecordData",
    "load_bank_accounts",
    "load_public_records",
    "name_key",
    "phone_key",
    "upsert_records",
]

PHONE_CONTEXT = "identity_records.phone"
_NAME_KEY_LENGTH = 4
_DIGITS = re.compile(r"\D")


def name_key(name_norm: str | None) -> str | None:
    """The blocking key of a normalised name: its first four characters once 省 and 市 are
    dropped (``福州市源川...`` and ``福州源川...`` share ``福州源川``)."""
    if not name_norm:
        return None
    return name_norm.replace("省", "").replace("市", "")[:_NAME_KEY_LENGTH] or None


def phone_key(vault: Vault, phone: str | None) -> str | None:
    """The keyed HMAC of a phone's digits (country prefix 86 dropped), or None."""
    if not phone:
        return None
    digits = _DIGITS.sub("", phone)
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return vault.lookup(digits, context=PHONE_CONTEXT) if len(digits) >= 7 else None


@dataclass(frozen=True, slots=True)
class RecordData:
    """One source record before it is stored."""

    source: str
    source_ref: str
    record_type: str
    name: str | None
    credit_code: str | None
    phone_lookup: str | None = None
    account_id: str | None = None
    legal_representative: str | None = None
    record_date: date | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadReport:
    """How many records a load added and refreshed, per record type."""

    added: dict[str, int] = field(default_factory=dict)
    refreshed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Records added plus refreshed."""
        return sum(self.added.values()) + sum(self.refreshed.values())


def upsert_records(
    db: Session, records: Sequence[RecordData], *, now: datetime, report: LoadReport
) -> None:
    """Insert new records and refresh known ones (see the module rules)."""
    by_source: dict[str, list[RecordData]] = {}
    for record in records:
        by_source.setdefault(record.source, []).append(record)
    for source, items in by_source.items():
        known: dict[str, IdentityRecord] = {}
        refs = [r.source_ref for r in items]
        for start in range(0, len(refs), 500):
            chunk = refs[start : start + 500]
            rows = db.execute(
                sa.select(IdentityRecord).where(
                    IdentityRecord.source == source, IdentityRecord.source_ref.in_(chunk)
                )
            ).scalars()
            known.update({row.source_ref: row for row in rows})
        for item in items:
            norm = normalise_name(item.name)
            values: dict[str, Any] = {
                "record_type": item.record_type,
                "name": item.name,
                "name_norm": norm,
                "name_key": name_key(norm),
                "credit_code": item.credit_code,
                "phone_lookup": item.phone_lookup,
                "account_id": item.account_id,
                "legal_representative": item.legal_representative,
                "record_date": item.record_date,
                "details": item.details,
                "loaded_at": now,
            }
            row = known.get(item.source_ref)
            if row is None:
                row = IdentityRecord(source=source, source_ref=item.source_ref, **values)
                db.add(row)
                known[item.source_ref] = row
                report.added[item.record_type] = report.added.get(item.record_type, 0) + 1
            else:
                for key, value in values.items():
                    setattr(row, key, value)
                report.refreshed[item.record_type] = report.refreshed.get(item.record_type, 0) + 1
    db.flush()


# -- public sources ---------------------------------------------------------------------------


def _rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for column in required:
            if column not in header:
                raise InputError(
                    f"{path.name} has no column {column!r}", file=str(path), line=1, field=column
                )
        for row in reader:
            yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}


def _code(text: str, details: dict[str, Any]) -> str | None:
    code = text.strip().upper()
    if code and is_valid_credit_code(code):
        return code
    if code:
        details["credit_code_as_printed"] = code
    return None


def _date(text: str, path: Path, line: int, column: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(
            f"{text!r} is not a date (YYYY-MM-DD)", file=str(path), line=line, field=column
        ) from None


def _int(text: str, path: Path, line: int, column: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(
            f"{text!r} is not an integer", file=str(path), line=line, field=column
        ) from None


def _registry(path: Path, vault: Vault) -> Iterator[RecordData]:
    required = ("credit_code", "name", "legal_representative", "phone", "registration_date")
    for line, row in _rows(path, required):
        details: dict[str, Any] = {
            "registration_date": row["registration_date"] or None,
            "registered_capital_minor": _int(
                row.get("registered_capital_minor", ""), path, line, "registered_capital_minor"
            ),
            "address": row.get("address") or None,
            "division": row.get("division") or None,
        }
        code = _code(row["credit_code"], details)
        yield RecordData(
            source="registry",
            source_ref=row["credit_code"] or f"line:{line}",
            record_type="registration",
            name=row["name"] or None,
            credit_code=code,
            phone_lookup=phone_key(vault, row["phone"]),
            legal_representative=normalise_name(row["legal_representative"] or None),
            record_date=_date(row["registration_date"], path, line, "registration_date"),
            details=details,
        )


_PUBLIC: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    # file stem: (record type, key column, date column, detail columns)
    "penalties": (
        "penalty",
        "record_id",
        "date",
        ("authority", "decision_no", "severity", "fine_minor", "reason"),
    ),
    "inspections": ("inspection", "record_id", "date", ("authority", "product", "result")),
    "online_lending": (
        "online_lending",
        "loan_id",
        "opened_on",
        ("platform", "principal_minor", "status", "max_overdue_days", "overdue_amount_minor"),
    ),
    "judgments": (
        "judgment",
        "case_no",
        "date",
        ("court", "role", "cause", "amount_minor"),
    ),
}
"""Public record files: record type, key column, date column and the facts kept for display."""


def _public(path: Path, stem: str) -> Iterator[RecordData]:
    record_type, key, day, columns = _PUBLIC[stem]
    for line, row in _rows(path, (key, "credit_code", day)):
        details: dict[str, Any] = {}
        for column in columns:
            value = row.get(column) or None
            details[column] = (
                _int(value, path, line, column) if value and column.endswith("_minor") else value
            )
        yield RecordData(
            source=stem,
            source_ref=row[key] or f"line:{line}",
            record_type=record_type,
            name=row.get("name") or row.get("enterprise_name") or None,
            credit_code=_code(row["credit_code"], details),
            record_date=_date(row[day], path, line, day),
            details=details,
        )


def load_public_records(db: Session, *, directory: Path, vault: Vault, now: datetime) -> LoadReport:
    """Load the registry and public records under ``directory`` (absent files are skipped)."""
    report = LoadReport()
    if not directory.is_dir():
        raise InputError("not a directory", file=str(directory), field="directory")
    registry = _find(directory, "registry", "enterprises.csv")
    if registry is not None:
        upsert_records(db, list(_registry(registry, vault)), now=now, report=report)
    for stem in _PUBLIC:
        path = _find(directory, "public_records", f"{stem}.csv")
        if path is not None:
            upsert_records(db, list(_public(path, stem)), now=now, report=report)
    return report


def _find(directory: Path, folder: str, name: str) -> Path | None:
    for path in (directory / name, directory / folder / name):
        if path.is_file():
            return path
    return None


# -- bank records -----------------------------------------------------------------------------

_ACCOUNTS_SQL = """
SELECT account_id, bank_id, enterprise_id, owner_name, currency
FROM accounts
ORDER BY bank_id, account_id
"""


def load_bank_accounts(db: Session, *, warehouse: Warehouse, now: datetime) -> LoadReport:
    """Load one ``bank_account`` record per account of the warehouse's ``accounts`` view."""
    report = LoadReport()
    if not warehouse.manifest().files("accounts"):
        return report
    with warehouse.connect() as engine:
        rows = engine.query(_ACCOUNTS_SQL).to_pylist()
    records = []
    for row in rows:
        details: dict[str, Any] = {"bank_id": row["bank_id"], "currency": row["currency"]}
        records.append(
            RecordData(
                source="bank",
                source_ref=f"{row['bank_id']}:{row['account_id']}",
                record_type="bank_account",
                name=row["owner_name"],
                credit_code=_code(row["enterprise_id"] or "", details),
                account_id=row["account_id"],
                details=details,
            )
        )
    upsert_records(db, records, now=now, report=report)
    return report
