"""Accounts: institutions, enterprise users who register themselves, staff users, sign-in.

Rules:
- An enterprise user registers with a phone, the SMS code sent to it (purpose ``register``)
  and a password; registering creates the user's (empty) enterprise too.
- Analysts, operators and auditors are created by an operator (``flowbureau admin
  create-user``); an analyst belongs to exactly one institution.
- A phone identifies one account. Phones are stored encrypted plus a keyed HMAC for lookup.
- Sign-in takes the phone with the password or with an SMS code (purpose ``login``). Attempts
  count against per-phone and per-IP limits whatever their outcome (a successful sign-in clears
  the phone's count, not the IP's), and the error never says whether the phone has an account.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.errors import AuthenticationError, ConflictError, InputError, NotFoundError
from flowbureau.service import audit
from flowbureau.service.consent import audit_record
from flowbureau.service.models import Enterprise, Institution, OtpPurpose, Role, User
from flowbureau.service.otp import PHONE_CONTEXT, consume_code, phone_lookup
from flowbureau.service.passwords import Passwords, check_password_policy
from flowbureau.service.principals import Principal
from flowbureau.service.ratelimit import Rate, RateLimiter
from flowbureau.service.settings import ServiceSettings
from flowbureau.service.vault import Vault

__all__ = [
    "authenticate",
    "create_institution",
    "create_staff_user",
    "find_institution",
    "list_institutions",
    "register_enterprise_user",
]


def _count_attempt(
    limiter: RateLimiter, settings: ServiceSettings, *, lookup: str, client_ip: str
) -> None:
    limiter.hit(
        f"login:ip:{client_ip}",
        Rate(settings.login_per_ip_per_15min, 900),
        what="sign-in attempts from this address",
    )
    limiter.hit(
        f"login:phone:{lookup}",
        Rate(settings.login_per_phone_per_15min, 900),
        what="sign-in attempts for this phone",
    )


def _phone_taken(db: Session, lookup: str) -> bool:
    return db.execute(sa.select(User.id).where(User.phone_lookup == lookup)).first() is not None


def register_enterprise_user(
    db: Session,
    *,
    phone: str,
    code: str,
    password: str,
    client_ip: str,
    vault: Vault,
    passwords: Passwords,
    limiter: RateLimiter,
    settings: ServiceSettings,
    request_id: str | None,
    now: datetime,
    display_name: str | None = None,
    enterprise_name: str | None = None,
) -> User:
    """Check the register code, then create the enterprise and its first user (audited)."""
    check_password_policy(password)
    _count_attempt(limiter, settings, lookup=phone_lookup(vault, phone), client_ip=client_ip)
    consume_code(
        db,
        phone=phone,
        purpose=OtpPurpose.REGISTER,
        code=code,
        vault=vault,
        settings=settings,
        now=now,
    )
    lookup = phone_lookup(vault, phone)
    if _phone_taken(db, lookup):
        raise ConflictError("this phone already has an account: sign in instead")
    enterprise = Enterprise(name=enterprise_name, created_at=now, updated_at=now)
    db.add(enterprise)
    db.flush()
    user = User(
        role=Role.ENTERPRISE,
        phone_lookup=lookup,
        phone_enc=vault.encrypt(phone, context=PHONE_CONTEXT),
        password_hash=passwords.hash(password),
        display_name=display_name,
        enterprise_id=enterprise.id,
        created_at=now,
    )
    db.add(user)
    db.flush()
    principal = Principal(
        kind="user", id=user.id, role=Role.ENTERPRISE, enterprise_id=enterprise.id
    )
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation="register",
            resource="/v1/auth/register",
            outcome="done",
            request_id=request_id,
            enterprise_id=enterprise.id,
        ),
    )
    return user


def create_staff_user(
    db: Session,
    *,
    role: Role,
    phone: str,
    password: str,
    vault: Vault,
    passwords: Passwords,
    now: datetime,
    institution_id: str | None = None,
    display_name: str | None = None,
) -> User:
    """Create an analyst (of ``institution_id``), operator or auditor."""
    if role not in {Role.ANALYST, Role.OPERATOR, Role.AUDITOR}:
        raise InputError(
            f"staff users are analysts, operators or auditors, not {role.value}", field="role"
        )
    if (role is Role.ANALYST) != (institution_id is not None):
        raise InputError(
            "an analyst needs an institution; operators and auditors belong to none",
            field="institution",
        )
    if institution_id is not None and db.get(Institution, institution_id) is None:
        raise NotFoundError(f"no institution {institution_id}")
    check_password_policy(password)
    lookup = phone_lookup(vault, phone)
    if _phone_taken(db, lookup):
        raise ConflictError("this phone already has an account")
    user = User(
        role=role,
        phone_lookup=lookup,
        phone_enc=vault.encrypt(phone, context=PHONE_CONTEXT),
        password_hash=passwords.hash(password),
        display_name=display_name,
        institution_id=institution_id,
        created_at=now,
    )
    db.add(user)
    db.flush()
    return user


def authenticate(
    db: Session,
    *,
    phone: str,
    client_ip: str,
    vault: Vault,
    passwords: Passwords,
    limiter: RateLimiter,
    settings: ServiceSettings,
    now: datetime,
    password: str | None = None,
    code: str | None = None,
) -> User:
    """Sign in with ``password`` or a login ``code``; raise AuthenticationError otherwise."""
    lookup = phone_lookup(vault, phone)
    _count_attempt(limiter, settings, lookup=lookup, client_ip=client_ip)
    user = db.execute(sa.select(User).where(User.phone_lookup == lookup)).scalar_one_or_none()
    if code is not None:
        consume_code(
            db,
            phone=phone,
            purpose=OtpPurpose.LOGIN,
            code=code,
            vault=vault,
            settings=settings,
            now=now,
        )
        if user is None or user.disabled_at is not None:
            raise AuthenticationError("wrong phone or SMS code")
        limiter.reset(f"login:phone:{lookup}")
        return user
    valid = passwords.verify(None if user is None else user.password_hash, password or "")
    if user is None or not valid or user.disabled_at is not None:
        raise AuthenticationError("wrong phone or password")
    if user.password_hash and passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password or "")
    limiter.reset(f"login:phone:{lookup}")  # the owner is back: typos before do not count
    return user


def create_institution(db: Session, *, name: str, now: datetime) -> Institution:
    """Create an institution; names are unique."""
    name = name.strip()
    if not name:
        raise InputError("an institution needs a name", field="name")
    if db.execute(sa.select(Institution.id).where(Institution.name == name)).first():
        raise ConflictError(f"an institution named {name!r} already exists")
    institution = Institution(name=name, created_at=now)
    db.add(institution)
    db.flush()
    return institution


def find_institution(db: Session, ref: str) -> Institution:
    """The institution whose id or exact name is ``ref``."""
    institution = (
        db.get(Institution, ref)
        or db.execute(sa.select(Institution).where(Institution.name == ref)).scalar_one_or_none()
    )
    if institution is None:
        raise NotFoundError(f"no institution with id or name {ref!r}")
    return institution


def list_institutions(db: Session) -> Sequence[Institution]:
    """All institutions by name."""
    return db.execute(sa.select(Institution).order_by(Institution.name)).scalars().all()
