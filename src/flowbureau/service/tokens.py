"""Sign-in sessions: short JWT access tokens and rotated, revocable refresh tokens.

Rules:
- An access token is a JWT (HS256, key derived from ``settings.secret_key`` with HKDF) with
  ``sub`` (user id), ``role``, ``sid`` (session id), ``iat``, ``exp``, ``iss`` and ``aud``; it
  lives ``access_token_minutes``. Every request also checks that its session is not revoked,
  so signing out or a detected theft ends access at once, not when the token expires.
- A refresh token is an opaque random value (``fbr_...``); only its SHA-256 is stored. Each one
  is usable once: :func:`refresh` marks it used and issues the next one in the same session.
- Presenting a refresh token that was already used means two parties hold it (theft): the whole
  session is revoked, that revocation is committed, and the caller must sign in again.
- A session lives at most ``refresh_token_days`` from sign-in, however often it is refreshed.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.errors import AuthenticationError
from flowbureau.service.models import AuthSession, RefreshToken, User
from flowbureau.service.settings import ServiceSettings
from flowbureau.service.vault import derive_key

__all__ = [
    "AccessClaims",
    "TokenIssuer",
    "TokenPair",
    "end_session",
    "refresh",
    "session_is_live",
    "start_session",
]

REFRESH_PREFIX = "fbr_"
_ALGORITHM = "HS256"
_ISSUER = "flowbureau"
_AUDIENCE = "flowbureau-api"


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a successful sign-in or refresh returns."""

    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified content of an access token."""

    user_id: str
    session_id: str
    expires_at: datetime


class TokenIssuer:
    """Signs and verifies access tokens with a key derived from the service secret."""

    def __init__(self, secret: str, settings: ServiceSettings) -> None:
        self._key = derive_key(secret, "jwt/hs256")
        self.access_lifetime = timedelta(minutes=settings.access_token_minutes)
        self.session_lifetime = timedelta(days=settings.refresh_token_days)

    def access_token(self, *, user: User, session_id: str, now: datetime) -> str:
        """A signed access token for ``user`` in session ``session_id``."""
        claims: dict[str, Any] = {
            "sub": user.id,
            "role": user.role.value,
            "sid": session_id,
            "iat": int(now.timestamp()),
            "exp": int((now + self.access_lifetime).timestamp()),
            "iss": _ISSUER,
            "aud": _AUDIENCE,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def decode(self, token: str, *, now: datetime) -> AccessClaims:
        """Verify signature, issuer, audience and expiry (against ``now``); return the claims."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=_AUDIENCE,
                issuer=_ISSUER,
                options={
                    "verify_exp": False,  # checked below against the service clock
                    "verify_iat": False,  # likewise: the service clock, not the OS clock
                    "require": ["sub", "sid", "exp", "iss", "aud"],
                },
            )
            expires = datetime.fromtimestamp(int(claims["exp"]), tz=now.tzinfo)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthenticationError(f"invalid access token: {exc}") from None
        if expires <= now:
            raise AuthenticationError("the access token has expired: refresh it")
        return AccessClaims(str(claims["sub"]), str(claims["sid"]), expires)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_refresh(db: Session, session_id: str, now: datetime) -> str:
    token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    db.add(RefreshToken(session_id=session_id, token_hash=_hash(token), issued_at=now))
    return token


def start_session(db: Session, *, user: User, issuer: TokenIssuer, now: datetime) -> TokenPair:
    """Open a sign-in session for ``user`` and return its first token pair."""
    auth_session = AuthSession(
        user_id=user.id, created_at=now, expires_at=now + issuer.session_lifetime
    )
    db.add(auth_session)
    db.flush()
    return TokenPair(
        access_token=issuer.access_token(user=user, session_id=auth_session.id, now=now),
        refresh_token=_new_refresh(db, auth_session.id, now),
        expires_in=int(issuer.access_lifetime.total_seconds()),
    )


def _revoke(db: Session, auth_session: AuthSession, reason: str, now: datetime) -> None:
    if auth_session.revoked_at is None:
        auth_session.revoked_at = now
        auth_session.revoke_reason = reason


def refresh(db: Session, *, refresh_token: str, issuer: TokenIssuer, now: datetime) -> TokenPair:
    """Exchange a refresh token for a new pair; a reused token revokes its whole session."""
    stored = db.execute(
        sa.select(RefreshToken).where(RefreshToken.token_hash == _hash(refresh_token))
    ).scalar_one_or_none()
    if stored is None:
        raise AuthenticationError("unknown refresh token")
    auth_session = db.get_one(AuthSession, stored.session_id)
    if auth_session.revoked_at is not None:
        raise AuthenticationError("this session was revoked: sign in again")
    if auth_session.expires_at <= now:
        raise AuthenticationError("this session has expired: sign in again")
    # Mark it used only if nobody else did in the meantime (two concurrent refreshes).
    claimed = db.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.id == stored.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        _revoke(db, auth_session, "refresh token reuse", now)
        db.commit()  # the revocation must outlive the refusal below
        raise AuthenticationError(
            "this refresh token was already used, so it may have been stolen: "
            "the session is revoked, sign in again"
        )
    user = db.get_one(User, auth_session.user_id)
    if user.disabled_at is not None:
        raise AuthenticationError("this account is disabled")
    return TokenPair(
        access_token=issuer.access_token(user=user, session_id=auth_session.id, now=now),
        refresh_token=_new_refresh(db, auth_session.id, now),
        expires_in=int(issuer.access_lifetime.total_seconds()),
    )


def end_session(db: Session, *, refresh_token: str, now: datetime) -> None:
    """Sign out: revoke the session a refresh token belongs to (unknown tokens are ignored)."""
    stored = db.execute(
        sa.select(RefreshToken).where(RefreshToken.token_hash == _hash(refresh_token))
    ).scalar_one_or_none()
    if stored is not None:
        _revoke(db, db.get_one(AuthSession, stored.session_id), "signed out", now)


def session_is_live(db: Session, *, session_id: str, now: datetime) -> bool:
    """True when session ``session_id`` exists, is not revoked and has not expired."""
    auth_session = db.get(AuthSession, session_id)
    return (
        auth_session is not None
        and auth_session.revoked_at is None
        and auth_session.expires_at > now
    )
