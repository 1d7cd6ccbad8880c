"""The audit log: an append-only, hash-chained record of every access to enterprise data.

Rules:
- Every read of an enterprise's data (allowed or denied) and every change an enterprise makes
  to what others may see (profile, applications, consents) appends one :class:`AuditRecord`:
  who (actor, role, institution), what (operation, resource, enterprise), why (purpose,
  consent), when, and the outcome.
- Entries are numbered ``1, 2, 3, ...`` (``seq``) and chained: ``hash`` is SHA-256 over a
  canonical JSON of the entry's fields including ``prev_hash``, the previous entry's hash
  (:data:`GENESIS_HASH` for the first). The ``audit_head`` row holds the last ``seq`` and
  ``hash``; an append updates it first, which serialises concurrent appends on every backend.
- :func:`verify` recomputes the chain and names the first broken row: an edited row, a missing
  row, a re-linked row, or rows cut off the end (the head disagrees). Someone able to rewrite
  the whole table *and* the head can forge a consistent chain; anchoring the head in the
  consortium ledger closes that gap.
- Appending never commits: the caller's unit of work decides (reads commit the entry at once,
  see :func:`flowbureau.service.consent.require_access`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.errors import StorageError
from flowbureau.service.models import AuditEntry, AuditHead
from flowbureau.storage.database import QueuedWriterConnection

__all__ = [
    "GENESIS_HASH",
    "AuditLink",
    "AuditRecord",
    "AuditVerification",
    "append",
    "entry_hash",
    "list_entries",
    "verify",
]

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first entry."""

HEAD_ID = 1


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What one audit entry says, before it is numbered and chained."""

    at: datetime
    actor_kind: str
    actor_id: str | None
    role: str | None
    operation: str
    resource: str
    outcome: str
    institution_id: str | None = None
    enterprise_id: str | None = None
    credit_code: str | None = None
    purpose: str | None = None
    consent_id: str | None = None
    reason: str | None = None
    request_id: str | None = None


_HASHED_FIELDS: tuple[str, ...] = (
    "seq",
    "at",
    "actor_kind",
    "actor_id",
    "role",
    "institution_id",
    "enterprise_id",
    "credit_code",
    "purpose",
    "consent_id",
    "operation",
    "resource",
    "outcome",
    "reason",
    "request_id",
    "prev_hash",
)


def entry_hash(fields: dict[str, object]) -> str:
    """SHA-256 (hex) of the canonical JSON of an entry's :data:`_HASHED_FIELDS`."""
    canonical = {}
    for name in _HASHED_FIELDS:
        value = fields[name]
        canonical[name] = (
            value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
        )
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"flowbureau-audit-v1\n" + payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditLink:
    """Where :func:`append` put an entry in the chain."""

    seq: int
    hash: str


_HEAD_TABLE = cast(sa.Table, AuditHead.__table__)
_ENTRY_TABLE = cast(sa.Table, AuditEntry.__table__)
_head = _HEAD_TABLE.c
_ADVANCE_HEAD = (
    sa.update(_HEAD_TABLE)
    .where(_head.id == HEAD_ID)
    .values(seq=_head.seq + 1)
    .returning(_head.seq, _head.hash)
)
_INSERT_ENTRY = sa.insert(_ENTRY_TABLE)
_SET_HEAD_HASH = (
    sa.update(_HEAD_TABLE).where(_head.id == HEAD_ID).values(hash=sa.bindparam("new_hash"))
)
_RECORD_FIELDS: tuple[str, ...] = tuple(
    name for name in AuditRecord.__dataclass_fields__ if name != "seq"
)


_ENTRY_COLUMNS: tuple[str, ...] = (*_RECORD_FIELDS, "seq", "prev_hash", "hash")
_SQLITE_ADVANCE_HEAD = (
    f"UPDATE {_HEAD_TABLE.name} SET seq = seq + 1 WHERE id = {HEAD_ID} RETURNING seq, hash"
)
_SQLITE_INSERT_ENTRY = (
    f"INSERT INTO {_ENTRY_TABLE.name} ({', '.join(_ENTRY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _ENTRY_COLUMNS)})"
)
_SQLITE_SET_HEAD_HASH = f"UPDATE {_HEAD_TABLE.name} SET hash = ? WHERE id = {HEAD_ID}"


def _sqlite_driver(session: Session | sa.Connection) -> QueuedWriterConnection | None:
    """The session's SQLite driver connection, in a transaction the session will commit."""
    connection = session.connection() if isinstance(session, Session) else session
    if connection.dialect.name != "sqlite":
        return None
    if not connection.in_transaction():
        connection.begin()  # so that the caller's commit() commits what is written below
    driver = connection.connection.driver_connection
    if not isinstance(driver, QueuedWriterConnection) or driver.isolation_level is None:
        return None  # not ours, or in autocommit mode: the three statements must be one unit
    return driver


def append(session: Session | sa.Connection, record: AuditRecord) -> AuditLink:
    """Number, chain and add ``record`` to the log in ``session`` (not committed).

    Three statements (advance the head, insert the entry, store the head's hash) run on the
    session's connection (or on a plain connection): every audited request pays for them. On
    SQLite they run on the driver connection directly, values bound with the columns' own
    SQLAlchemy types: the same rows for a fifth of the CPU, and that is the time the writer
    lock is held (:class:`~flowbureau.storage.database.QueuedWriterConnection`), during which
    every other writer of every process waits. Elsewhere (PostgreSQL) they are Core statements
    built once.
    """
    fields: dict[str, object] = {name: getattr(record, name) for name in _RECORD_FIELDS}
    driver = _sqlite_driver(session)
    if driver is not None:
        return _append_sqlite(driver, session, fields)
    head = session.execute(_ADVANCE_HEAD).one_or_none()
    if head is None:
        raise StorageError("the audit log has no head row: run `flowbureau db upgrade`")
    fields["seq"] = head.seq
    fields["prev_hash"] = head.hash
    digest = entry_hash(fields)
    session.execute(_INSERT_ENTRY, {**fields, "hash": digest})
    session.execute(_SET_HEAD_HASH, {"new_hash": digest})
    return AuditLink(int(head.seq), digest)


def _append_sqlite(
    driver: QueuedWriterConnection, session: Session | sa.Connection, fields: dict[str, object]
) -> AuditLink:
    dialect = session.get_bind().dialect if isinstance(session, Session) else session.dialect
    bound = {
        name: value if (process := _bind_processor(name, dialect)) is None else process(value)
        for name, value in fields.items()
    }
    driver.take_writer_lock()
    cursor = driver.cursor()
    try:
        rows = cursor.execute(_SQLITE_ADVANCE_HEAD).fetchall()
        if not rows:
            raise StorageError("the audit log has no head row: run `flowbureau db upgrade`")
        seq, prev_hash = int(rows[0][0]), str(rows[0][1])
        fields["seq"], fields["prev_hash"] = seq, prev_hash
        digest = entry_hash(fields)
        bound.update(seq=seq, prev_hash=prev_hash, hash=digest)
        cursor.execute(_SQLITE_INSERT_ENTRY, [bound[name] for name in _ENTRY_COLUMNS])
        cursor.execute(_SQLITE_SET_HEAD_HASH, (digest,))
    finally:
        cursor.close()
    return AuditLink(seq, digest)


_BIND_PROCESSORS: dict[tuple[str, str], Callable[[Any], Any] | None] = {}


def _bind_processor(column: str, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
    """The bind processor of an entry column's type on ``dialect`` (cached per name)."""
    key = (column, dialect.name)
    if key not in _BIND_PROCESSORS:
        _BIND_PROCESSORS[key] = _ENTRY_TABLE.c[column].type.bind_processor(dialect)
    return _BIND_PROCESSORS[key]


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """Outcome of :func:`verify`: rows checked and the first broken row, if any."""

    rows: int
    head_seq: int
    broken_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when the whole chain and the head agree."""
        return self.problem is None


def verify(session: Session) -> AuditVerification:
    """Recompute the chain; report the first row whose content, link or number is wrong."""
    head = session.get(AuditHead, HEAD_ID)
    if head is None:
        raise StorageError("the audit log has no head row: run `flowbureau db upgrade`")
    expected_seq, prev_hash, rows = 1, GENESIS_HASH, 0
    stream = session.execute(
        sa.select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=500)
    ).scalars()
    for entry in stream:
        rows += 1
        if entry.seq != expected_seq:
            return AuditVerification(
                rows,
                head.seq,
                expected_seq,
                f"row {expected_seq} is missing (the next row is {entry.seq}): deleted",
            )
        if entry.prev_hash != prev_hash:
            return AuditVerification(
                rows,
                head.seq,
                entry.seq,
                f"row {entry.seq} does not link to row {entry.seq - 1} (prev_hash differs)",
            )
        fields = {name: getattr(entry, name) for name in _HASHED_FIELDS}
        if entry_hash(fields) != entry.hash:
            return AuditVerification(
                rows,
                head.seq,
                entry.seq,
                f"row {entry.seq} does not match its hash: edited after it was written",
            )
        expected_seq, prev_hash = entry.seq + 1, entry.hash
    last_seq = expected_seq - 1
    if head.seq != last_seq or head.hash != prev_hash:
        return AuditVerification(
            rows,
            head.seq,
            last_seq + 1,
            f"the head says {head.seq} rows but the chain ends at row {last_seq}: "
            "rows were cut off the end or the head was edited",
        )
    return AuditVerification(rows, head.seq)


def list_entries(
    session: Session,
    *,
    before_seq: int | None = None,
    limit: int = 50,
    credit_code: str | None = None,
    actor_id: str | None = None,
    institution_id: str | None = None,
    operation: str | None = None,
    outcome: str | None = None,
) -> Sequence[AuditEntry]:
    """Entries newest first, optionally only those before ``before_seq`` and matching filters."""
    stmt = sa.select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if before_seq is not None:
        stmt = stmt.where(AuditEntry.seq < before_seq)
    for column, value in (
        (AuditEntry.credit_code, credit_code),
        (AuditEntry.actor_id, actor_id),
        (AuditEntry.institution_id, institution_id),
        (AuditEntry.operation, operation),
        (AuditEntry.outcome, outcome),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    return session.execute(stmt).scalars().all()
