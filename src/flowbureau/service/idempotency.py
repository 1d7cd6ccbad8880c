"""Idempotency keys on POST: a retried request replays the stored response instead of acting twice.

Rules (after the IETF draft "The Idempotency-Key HTTP Header Field"):
- A client may send ``Idempotency-Key: <unique value>`` (1-200 printable characters) with a
  POST. Keys are scoped to the caller (user or API key; anonymous callers share one scope).
- The first successful response is stored in the same transaction as the effect it reports,
  so either both are kept or neither. A retry with the same key and the same request (method,
  path, canonical body) gets the stored status and body back, with ``Idempotent-Replayed:
  true``; reusing the key for a different request is refused with 422.
- Two concurrent requests with one key: the second to commit fails on the unique constraint
  and gets 409 (retry it to get the replay).
- Stored responses are kept ``idempotency_hours``; expired ones are deleted on the next save.
- Routes that return credentials (sign-in, refresh, register) do not take idempotency keys:
  their responses must never be stored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.errors import InputError
from flowbureau.service.models import IdempotencyRecord

__all__ = ["IdempotencyKey", "StoredResponse", "request_fingerprint"]

MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response kept for replay."""

    status_code: int
    body: str


def request_fingerprint(method: str, path: str, body: object) -> str:
    """SHA-256 of the request's method, path and canonical JSON body."""
    payload = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """One request's idempotency key, bound to its caller and fingerprint."""

    scope: str
    key: str
    method: str
    path: str
    fingerprint: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.key) <= MAX_KEY_LENGTH or not self.key.isprintable():
            raise InputError(
                f"an Idempotency-Key has 1 to {MAX_KEY_LENGTH} printable characters",
                field="Idempotency-Key",
            )

    def lookup(self, db: Session, *, now: datetime) -> StoredResponse | None:
        """The stored response for this key, ``None`` if there is none; 422 if it was reused."""
        record = db.execute(
            sa.select(IdempotencyRecord).where(
                IdempotencyRecord.principal == self.scope,
                IdempotencyRecord.key == self.key,
                IdempotencyRecord.expires_at > now,
            )
        ).scalar_one_or_none()
        if record is None:
            return None
        if record.request_hash != self.fingerprint:
            raise InputError(
                f"Idempotency-Key {self.key!r} was already used for a different request "
                f"({record.method} {record.path}); use a new key for a new request",
                field="Idempotency-Key",
            )
        return StoredResponse(record.status_code, record.response_body)

    def save(
        self, db: Session, *, status_code: int, body: str, now: datetime, keep: timedelta
    ) -> None:
        """Store the response in the caller's transaction; drop expired records."""
        db.execute(
            sa.delete(IdempotencyRecord)
            .where(IdempotencyRecord.expires_at <= now)
            .execution_options(synchronize_session=False)
        )
        db.add(
            IdempotencyRecord(
                principal=self.scope,
                key=self.key,
                method=self.method,
                path=self.path,
                request_hash=self.fingerprint,
                status_code=status_code,
                response_body=body,
                created_at=now,
                expires_at=now + keep,
            )
        )
