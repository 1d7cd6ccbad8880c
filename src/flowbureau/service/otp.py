"""SMS one-time codes for registering and signing in.

Rules:
- A code is 6 random digits, stored only as a keyed HMAC (salted with the code's row id), and
  lives ``otp_ttl_seconds`` (5 minutes). A new code for the same phone and purpose replaces
  the previous one.
- A code allows ``otp_max_attempts`` (5) tries in all; the try that exhausts it kills it. Each
  wrong try is committed before the refusal, so retrying cannot undo the count.
- One code per phone and purpose every ``otp_resend_seconds`` (60 s); at most
  ``otp_per_phone_per_hour`` codes per phone and ``otp_per_ip_per_hour`` per client IP.
- The answer to a request never tells whether the phone has an account: a register request
  for a registered phone, or a sign-in request for an unknown one, gets the same answer, and
  the message sent to the phone says what happened instead of carrying a code.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.errors import AuthenticationError, RateLimitedError
from flowbureau.service.models import OtpPurpose, SmsCode, User
from flowbureau.service.ratelimit import Rate, RateLimiter
from flowbureau.service.settings import ServiceSettings
from flowbureau.service.sms import SmsSender
from flowbureau.service.vault import Vault

__all__ = ["CodeSent", "consume_code", "phone_lookup", "request_code"]

PHONE_CONTEXT = "users.phone"
_CODE_CONTEXT = "sms_codes.code"
_PURPOSE_WORDS = {OtpPurpose.REGISTER: "注册", OtpPurpose.LOGIN: "登录"}


@dataclass(frozen=True, slots=True)
class CodeSent:
    """What the requester learns: how long the code lives and when another may be asked."""

    expires_in: int
    resend_after: int


def phone_lookup(vault: Vault, phone: str) -> str:
    """The keyed HMAC under which a phone (E.164) is stored and found."""
    return vault.lookup(phone, context=PHONE_CONTEXT)


def _code_hash(vault: Vault, code_id: str, code: str) -> str:
    return vault.lookup(f"{code_id}:{code}", context=_CODE_CONTEXT)


def request_code(
    db: Session,
    *,
    phone: str,
    purpose: OtpPurpose,
    client_ip: str,
    vault: Vault,
    sender: SmsSender,
    limiter: RateLimiter,
    settings: ServiceSettings,
    now: datetime,
) -> CodeSent:
    """Issue and send a code for ``phone`` (E.164), enforcing the resend and volume limits."""
    lookup = phone_lookup(vault, phone)
    resend = timedelta(seconds=settings.otp_resend_seconds)
    last = db.execute(
        sa.select(SmsCode.created_at)
        .where(SmsCode.phone_lookup == lookup, SmsCode.purpose == purpose)
        .order_by(SmsCode.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if last is not None and now - last < resend:
        wait = resend - (now - last)
        raise RateLimitedError(
            f"a code was sent to this phone less than {settings.otp_resend_seconds} s ago",
            retry_after=max(1, int(wait.total_seconds() + 0.999)),
        )
    limiter.hit(
        f"otp:ip:{client_ip}",
        Rate(settings.otp_per_ip_per_hour, 3600),
        what="SMS code requests from this address",
    )
    limiter.hit(
        f"otp:phone:{lookup}",
        Rate(settings.otp_per_phone_per_hour, 3600),
        what="SMS codes to this phone",
    )
    user = db.execute(sa.select(User).where(User.phone_lookup == lookup)).scalar_one_or_none()
    has_account = user is not None and user.disabled_at is None
    db.execute(
        sa.update(SmsCode)
        .where(
            SmsCode.phone_lookup == lookup,
            SmsCode.purpose == purpose,
            SmsCode.consumed_at.is_(None),
        )
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    )
    row = SmsCode(
        phone_lookup=lookup,
        purpose=purpose,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.otp_ttl_seconds),
        attempts=0,
    )
    db.add(row)
    db.flush()
    minutes = settings.otp_ttl_seconds // 60
    if purpose is OtpPurpose.REGISTER and has_account:
        text = "【flowbureau】此手机号已注册，请直接登录。如非本人操作，请忽略。"
        row.consumed_at = now
    elif purpose is OtpPurpose.LOGIN and not has_account:
        text = "【flowbureau】此手机号尚未注册，请先注册。如非本人操作，请忽略。"
        row.consumed_at = now
    else:
        code = f"{secrets.randbelow(1_000_000):06d}"
        row.code_hash = _code_hash(vault, row.id, code)
        text = (
            f"【flowbureau】您的{_PURPOSE_WORDS[purpose]}验证码是 {code}，{minutes} 分钟内有效。"
            "请勿告诉他人。"
        )
    sender.send(phone, text)
    return CodeSent(expires_in=settings.otp_ttl_seconds, resend_after=settings.otp_resend_seconds)


def consume_code(
    db: Session,
    *,
    phone: str,
    purpose: OtpPurpose,
    code: str,
    vault: Vault,
    settings: ServiceSettings,
    now: datetime,
) -> None:
    """Accept ``code`` once, or count a wrong try (committed) and raise AuthenticationError."""
    lookup = phone_lookup(vault, phone)
    row = db.execute(
        sa.select(SmsCode)
        .where(
            SmsCode.phone_lookup == lookup,
            SmsCode.purpose == purpose,
            SmsCode.consumed_at.is_(None),
            SmsCode.code_hash.is_not(None),
        )
        .order_by(SmsCode.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    if row is None or row.expires_at <= now:
        raise AuthenticationError("no valid SMS code for this phone: request a new one")
    if hmac.compare_digest(row.code_hash or "", _code_hash(vault, row.id, code)):
        claimed = db.execute(
            sa.update(SmsCode)
            .where(SmsCode.id == row.id, SmsCode.consumed_at.is_(None))
            .values(consumed_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            raise AuthenticationError("this SMS code was already used: request a new one")
        return
    attempts = db.execute(
        sa.update(SmsCode)
        .where(SmsCode.id == row.id)
        .values(attempts=SmsCode.attempts + 1)
        .returning(SmsCode.attempts)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    left = settings.otp_max_attempts - attempts
    if left <= 0:
        db.execute(
            sa.update(SmsCode)
            .where(SmsCode.id == row.id)
            .values(consumed_at=now)
            .execution_options(synchronize_session=False)
        )
    db.commit()  # the wrong try must count even though this request fails
    if left <= 0:
        raise AuthenticationError("wrong SMS code; no tries left: request a new one")
    raise AuthenticationError(f"wrong SMS code ({left} tries left)")
