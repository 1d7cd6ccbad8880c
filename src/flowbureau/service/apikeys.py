"""Institution API keys: created, scoped, rotated and revoked by operators; used as Bearer tokens.

Rules:
- A key reads ``fbk_<key id>_<secret>``: the key id (16 hex characters) is public and finds the
  row; the secret is 256 random bits. Only SHA-256 of the whole key is stored (the key is
  high-entropy, so a slow hash adds nothing) and compared in constant time. The clear key is
  shown once, at creation or rotation.
- Scopes are operation types (:class:`~flowbureau.service.models.Operation`); a key can do no
  more than its scopes *and* the enterprise's consent allow.
- Rotation issues a new key with the same institution, scopes and label and retires the old
  one at once, or after a grace period so that deployed clients can switch over.
- Every request made with a key counts against its rate limit (``api_key_requests_per_minute``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.errors import AuthenticationError, InputError, NotFoundError
from flowbureau.service.models import ApiKey, Institution, Operation

__all__ = [
    "API_KEY_PREFIX",
    "StoredKey",
    "VerifiedKey",
    "api_key_state",
    "authenticate_api_key",
    "check_presented_key",
    "create_api_key",
    "list_api_keys",
    "normalize_scopes",
    "presented_key_id",
    "revoke_api_key",
    "rotate_api_key",
    "verify_api_key",
]

API_KEY_PREFIX = "fbk_"
_KEY_PATTERN = re.compile(r"fbk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def normalize_scopes(scopes: Iterable[str], *, field: str = "scopes") -> list[str]:
    """Validate operation-type scopes; return them sorted without duplicates."""
    allowed = {op.value for op in Operation}
    chosen = sorted(set(scopes))
    unknown = [s for s in chosen if s not in allowed]
    if unknown or not chosen:
        raise InputError(
            f"scopes must be a non-empty subset of {', '.join(sorted(allowed))}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
            field=field,
        )
    return chosen


def create_api_key(
    db: Session,
    *,
    institution_id: str,
    scopes: Iterable[str],
    now: datetime,
    label: str | None = None,
    rotated_from: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key for an institution; return the row and the clear key (shown only now)."""
    if db.get(Institution, institution_id) is None:
        raise NotFoundError(f"no institution {institution_id}")
    key_id = secrets.token_hex(8)
    key = f"{API_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        institution_id=institution_id,
        key_id=key_id,
        key_hash=_hash(key),
        scopes=normalize_scopes(scopes),
        label=label,
        created_at=now,
        rotated_from=rotated_from,
    )
    db.add(row)
    db.flush()
    return row, key


def _by_key_id(db: Session, key_id: str) -> ApiKey:
    row = _find(db, key_id)
    if row is None:
        raise NotFoundError(f"no API key with id {key_id}")
    return row


def rotate_api_key(
    db: Session, *, key_id: str, now: datetime, grace: timedelta = timedelta(0)
) -> tuple[ApiKey, str]:
    """Replace a live key by a new one; the old one stops working after ``grace``."""
    old = _by_key_id(db, key_id)
    if api_key_state(old, now) != "live":
        raise InputError(f"API key {key_id} is already retired", field="key_id")
    new, key = create_api_key(
        db,
        institution_id=old.institution_id,
        scopes=old.scopes,
        label=old.label,
        now=now,
        rotated_from=old.id,
    )
    if grace > timedelta(0):
        old.expires_at = now + grace
    else:
        old.revoked_at = now
    return new, key


class _KeyLifetime(Protocol):
    @property
    def revoked_at(self) -> datetime | None: ...

    @property
    def expires_at(self) -> datetime | None: ...


def api_key_state(row: _KeyLifetime, now: datetime) -> Literal["live", "expired", "revoked"]:
    """Whether a key works at ``now``, was revoked, or expired (after a rotation's grace)."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "live"


def revoke_api_key(db: Session, *, key_id: str, now: datetime) -> ApiKey:
    """Revoke a key at once (revoking a revoked key changes nothing)."""
    row = _by_key_id(db, key_id)
    if row.revoked_at is None:
        row.revoked_at = now
    return row


def list_api_keys(db: Session, *, institution_id: str) -> Sequence[ApiKey]:
    """An institution's keys, oldest first (live and retired)."""
    return (
        db.execute(
            sa.select(ApiKey)
            .where(ApiKey.institution_id == institution_id)
            .order_by(ApiKey.created_at, ApiKey.id)
        )
        .scalars()
        .all()
    )


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    """What a request needs of a live key (read with one indexed Core query, no ORM object)."""

    id: str
    key_id: str
    institution_id: str
    scopes: tuple[str, ...]


_keys = ApiKey.__table__.c
KEY_CHECK_COLUMNS = (
    _keys.id,
    _keys.key_id,
    _keys.key_hash,
    _keys.institution_id,
    _keys.scopes,
    _keys.expires_at,
    _keys.revoked_at,
)
"""The columns a key check reads (:func:`verify_api_key`; also selected by the open API's
one-query read in :mod:`flowbureau.service.consent`)."""
_VERIFY_KEY = sa.select(*KEY_CHECK_COLUMNS).where(_keys.key_id == sa.bindparam("key_id"))
"""Built once: every API request runs it, and building a statement costs more than running it."""


class StoredKey(Protocol):
    """The stored columns of a key that :func:`check_presented_key` needs (a row of a query)."""

    @property
    def id(self) -> str: ...

    @property
    def key_id(self) -> str: ...

    @property
    def key_hash(self) -> str: ...

    @property
    def institution_id(self) -> str: ...

    @property
    def scopes(self) -> list[str]: ...

    @property
    def revoked_at(self) -> datetime | None: ...

    @property
    def expires_at(self) -> datetime | None: ...


def presented_key_id(presented: str) -> str | None:
    """The public key id of a well-formed key (``None`` for anything else)."""
    match = _KEY_PATTERN.fullmatch(presented)
    return None if match is None else match.group(1)


def check_presented_key(row: StoredKey | None, *, presented: str, now: datetime) -> VerifiedKey:
    """Check ``presented`` against the stored key ``row`` found by its key id.

    Raises :class:`AuthenticationError` for an unknown (``row`` is ``None``) or wrong key (the
    SHA-256 is compared in constant time), and for a revoked key or one past its rotation grace.
    """
    if row is None or not hmac.compare_digest(row.key_hash, _hash(presented)):
        raise AuthenticationError("invalid API key")
    state = api_key_state(row, now)
    if state != "live":
        raise AuthenticationError(f"API key {row.key_id} is {state}")
    return VerifiedKey(row.id, row.key_id, row.institution_id, tuple(row.scopes))


def verify_api_key(db: Session | sa.Connection, *, presented: str, now: datetime) -> VerifiedKey:
    """Check ``presented`` against the stored hash and the key's state, on every request.

    Raises :class:`AuthenticationError` for an unknown or wrong key, and for a revoked key or
    one past its rotation grace (nothing is cached, so a revocation applies to the next request).
    """
    key_id = presented_key_id(presented)
    row = None if key_id is None else db.execute(_VERIFY_KEY, {"key_id": key_id}).one_or_none()
    return check_presented_key(row, presented=presented, now=now)


def authenticate_api_key(db: Session, *, presented: str, now: datetime) -> ApiKey:
    """Return the live key matching ``presented`` or raise :class:`AuthenticationError`."""
    verified = verify_api_key(db, presented=presented, now=now)
    row = db.get(ApiKey, verified.id)
    if row is None:  # deleted between the two reads
        raise AuthenticationError("invalid API key")
    return row


def _find(db: Session, key_id: str) -> ApiKey | None:
    return db.execute(sa.select(ApiKey).where(ApiKey.key_id == key_id)).scalar_one_or_none()
