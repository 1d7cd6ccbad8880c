"""Who is calling: a signed-in user (JWT access token) or an institution's API key.

Rules:
- Every credential arrives as ``Authorization: Bearer <token>``; a token starting ``fbk_`` is
  an API key, anything else must be an access token of a live session of an enabled user.
- An API key's principal has role ``api_client``, its institution and its scopes; a user's
  principal has the user's role, institution (analysts) or enterprise (enterprise users).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from flowbureau.errors import AuthenticationError
from flowbureau.service.apikeys import API_KEY_PREFIX, VerifiedKey, verify_api_key
from flowbureau.service.models import Operation, Role, User
from flowbureau.service.tokens import TokenIssuer, session_is_live

__all__ = ["Principal", "api_key_principal", "resolve_bearer"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    kind: Literal["user", "api_key"]
    id: str
    role: Role
    institution_id: str | None = None
    enterprise_id: str | None = None
    scopes: frozenset[Operation] = frozenset()
    key_id: str | None = None

    @property
    def idempotency_scope(self) -> str:
        """The namespace of this caller's idempotency keys."""
        return f"{self.kind}:{self.id}"


def api_key_principal(key: VerifiedKey) -> Principal:
    """The principal of a verified API key: role ``api_client``, its institution and scopes."""
    return Principal(
        kind="api_key",
        id=key.id,
        role=Role.API_CLIENT,
        institution_id=key.institution_id,
        scopes=frozenset(Operation(s) for s in key.scopes),
        key_id=key.key_id,
    )


def resolve_bearer(db: Session, *, token: str, issuer: TokenIssuer, now: datetime) -> Principal:
    """Authenticate a Bearer token; raise :class:`AuthenticationError` saying why not."""
    if token.startswith(API_KEY_PREFIX):
        return api_key_principal(verify_api_key(db, presented=token, now=now))
    claims = issuer.decode(token, now=now)
    if not session_is_live(db, session_id=claims.session_id, now=now):
        raise AuthenticationError("this session has ended (signed out or revoked): sign in again")
    user = db.get(User, claims.user_id)
    if user is None or user.disabled_at is not None:
        raise AuthenticationError("this account no longer exists or is disabled")
    return Principal(
        kind="user",
        id=user.id,
        role=user.role,
        institution_id=user.institution_id,
        enterprise_id=user.enterprise_id,
    )
