"""Tables of the platform service, on the shared :class:`flowbureau.storage.database.Base`.

Rules:
- Identifiers are random UUIDs (text), never sequential numbers that leak volumes; the audit
  log's ``seq`` is the exception, because its order is what the hash chain protects.
- Personal data is stored encrypted (``*_enc``, AES-GCM, :mod:`flowbureau.service.vault`);
  phones are also stored as a keyed HMAC (``phone_lookup``) so that sign-in can find them.
- Secrets are stored only as hashes: passwords (argon2id), SMS codes, refresh tokens, console
  session tokens and API keys (keyed or plain SHA-256 of high-entropy values). Webhook signing
  secrets are needed in clear to sign, so they are stored encrypted instead.
- Money is integer minor units plus an ISO 4217 currency; timestamps are aware UTC.
- The schema changes only through migrations (``flowbureau/migrations/versions``).
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from flowbureau.storage.database import Base, UTCDateTime

__all__ = [
    "ApiKey",
    "Application",
    "ApplicationStatus",
    "AuditEntry",
    "AuditHead",
    "AuthSession",
    "BankAccount",
    "Consent",
    "ConsoleSession",
    "Enterprise",
    "IdempotencyRecord",
    "Institution",
    "Operation",
    "OtpPurpose",
    "Purpose",
    "RefreshToken",
    "Role",
    "SmsCode",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "new_id",
]


def new_id() -> str:
    """A new random identifier (UUID4 text)."""
    return str(uuid.uuid4())


class Role(enum.StrEnum):
    """Who a principal is; decides what it may do (see :mod:`flowbureau.service.consent`)."""

    ENTERPRISE = "enterprise"
    ANALYST = "analyst"
    API_CLIENT = "api_client"
    OPERATOR = "operator"
    AUDITOR = "auditor"


class Operation(enum.StrEnum):
    """Operation types a consent (and an API key) can allow on an enterprise's data."""

    VIEW_SCORE = "view_score"
    VIEW_REPORT = "view_report"
    VIEW_TRANSACTIONS = "view_transactions"
    EXPORT = "export"
    ASK = "ask"


class Purpose(enum.StrEnum):
    """Why an institution looks at an enterprise's data; a consent names exactly one."""

    PRE_LOAN_REVIEW = "pre_loan_review"
    POST_LOAN_MONITORING = "post_loan_monitoring"


class OtpPurpose(enum.StrEnum):
    """What an SMS code may be used for."""

    REGISTER = "register"
    LOGIN = "login"


class ApplicationStatus(enum.StrEnum):
    """Life of a credit evaluation application: draft -> submitted -> evaluating -> evaluated."""

    DRAFT = "draft"
    SUBMITTED = "submitted"
    EVALUATING = "evaluating"
    EVALUATED = "evaluated"


def _enum(cls: type[enum.StrEnum], name: str) -> sa.Enum:
    return sa.Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )


class Institution(Base):
    """A financial institution (lender) that queries enterprises' data under consent."""

    __tablename__ = "institutions"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Enterprise(Base):
    """An SME and the information it entered (its profile); fields stay empty until entered."""

    __tablename__ = "enterprises"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    credit_code: Mapped[str | None] = mapped_column(sa.String(18), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    industry_code: Mapped[str | None] = mapped_column(sa.String(5))
    registration_date: Mapped[date | None] = mapped_column(sa.Date())
    registered_capital_minor: Mapped[int | None] = mapped_column(sa.BigInteger())
    registered_capital_currency: Mapped[str | None] = mapped_column(sa.String(3))
    legal_representative: Mapped[str | None] = mapped_column(sa.String(100))
    address: Mapped[str | None] = mapped_column(sa.String(300))
    contact_name: Mapped[str | None] = mapped_column(sa.String(100))
    contact_phone_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    bank_accounts: Mapped[list[BankAccount]] = relationship(
        back_populates="enterprise",
        cascade="all, delete-orphan",
        order_by="BankAccount.position",
    )


class BankAccount(Base):
    """One of an enterprise's bank accounts: the number encrypted, plus its pseudonym.

    ``account_id`` is the warehouse's account pseudonym
    (:func:`flowbureau.cleaning.identifiers.account_pseudonym`), so the accounts an enterprise
    declares can be matched with the accounts banks contribute statements for.
    """

    __tablename__ = "enterprise_bank_accounts"
    __table_args__ = (sa.UniqueConstraint("enterprise_id", "account_id"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    enterprise_id: Mapped[str] = mapped_column(
        sa.ForeignKey("enterprises.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(sa.Integer())
    bank_name: Mapped[str] = mapped_column(sa.String(200))
    currency: Mapped[str] = mapped_column(sa.String(3))
    account_enc: Mapped[bytes] = mapped_column(sa.LargeBinary())
    account_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    account_last4: Mapped[str] = mapped_column(sa.String(4))

    enterprise: Mapped[Enterprise] = relationship(back_populates="bank_accounts")


class User(Base):
    """A person who signs in: enterprise user, institution analyst, operator or auditor."""

    __tablename__ = "users"
    __table_args__ = (
        sa.CheckConstraint(
            "(role <> 'analyst') OR (institution_id IS NOT NULL)", name="analyst_institution"
        ),
        sa.CheckConstraint(
            "(role <> 'enterprise') OR (enterprise_id IS NOT NULL)", name="enterprise_owner"
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"))
    phone_lookup: Mapped[str] = mapped_column(sa.String(64), unique=True)
    phone_enc: Mapped[bytes] = mapped_column(sa.LargeBinary())
    password_hash: Mapped[str | None] = mapped_column(sa.String(200))
    display_name: Mapped[str | None] = mapped_column(sa.String(100))
    institution_id: Mapped[str | None] = mapped_column(sa.ForeignKey("institutions.id"), index=True)
    enterprise_id: Mapped[str | None] = mapped_column(sa.ForeignKey("enterprises.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SmsCode(Base):
    """An SMS one-time code, stored as a keyed hash; dies after its life or too many tries."""

    __tablename__ = "sms_codes"
    __table_args__ = (sa.Index("ix_sms_codes_phone_purpose", "phone_lookup", "purpose"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    phone_lookup: Mapped[str] = mapped_column(sa.String(64))
    purpose: Mapped[OtpPurpose] = mapped_column(_enum(OtpPurpose, "otp_purpose"))
    code_hash: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(sa.Integer(), default=0)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuthSession(Base):
    """A sign-in session: one family of rotated refresh tokens, revocable as a whole."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoke_reason: Mapped[str | None] = mapped_column(sa.String(100))


class RefreshToken(Base):
    """One refresh token of a session (SHA-256 of a random value); usable once."""

    __tablename__ = "refresh_tokens"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        sa.ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiKey(Base):
    """An institution's API key: public ``key_id`` plus SHA-256 of the whole secret key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    institution_id: Mapped[str] = mapped_column(sa.ForeignKey("institutions.id"), index=True)
    key_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    scopes: Mapped[list[str]] = mapped_column(sa.JSON())
    label: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rotated_from: Mapped[str | None] = mapped_column(sa.String(36))


class Application(Base):
    """A credit evaluation application of an enterprise and, once evaluated, its result."""

    __tablename__ = "applications"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    enterprise_id: Mapped[str] = mapped_column(sa.ForeignKey("enterprises.id"), index=True)
    created_by: Mapped[str] = mapped_column(sa.ForeignKey("users.id"))
    status: Mapped[ApplicationStatus] = mapped_column(_enum(ApplicationStatus, "app_status"))
    status_reason: Mapped[str | None] = mapped_column(sa.String(300))
    requested_amount_minor: Mapped[int | None] = mapped_column(sa.BigInteger())
    currency: Mapped[str | None] = mapped_column(sa.String(3))
    term_months: Mapped[int | None] = mapped_column(sa.Integer())
    loan_purpose: Mapped[str | None] = mapped_column(sa.String(300))
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Consent(Base):
    """An enterprise's consent: one institution, one purpose, some operations, until a time."""

    __tablename__ = "consents"
    __table_args__ = (
        sa.Index("ix_consents_enterprise_institution", "enterprise_id", "institution_id"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    enterprise_id: Mapped[str] = mapped_column(sa.ForeignKey("enterprises.id"))
    institution_id: Mapped[str] = mapped_column(sa.ForeignKey("institutions.id"), index=True)
    purpose: Mapped[Purpose] = mapped_column(_enum(Purpose, "consent_purpose"))
    scopes: Mapped[list[str]] = mapped_column(sa.JSON())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(sa.ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_by: Mapped[str | None] = mapped_column(sa.ForeignKey("users.id"))


class AuditEntry(Base):
    """One access to enterprise data, chained to the previous entry by SHA-256."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(sa.BigInteger(), primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_kind: Mapped[str] = mapped_column(sa.String(16))
    actor_id: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    role: Mapped[str | None] = mapped_column(sa.String(32))
    institution_id: Mapped[str | None] = mapped_column(sa.String(36))
    enterprise_id: Mapped[str | None] = mapped_column(sa.String(36), index=True)
    credit_code: Mapped[str | None] = mapped_column(sa.String(18), index=True)
    purpose: Mapped[str | None] = mapped_column(sa.String(32))
    consent_id: Mapped[str | None] = mapped_column(sa.String(36))
    operation: Mapped[str] = mapped_column(sa.String(32))
    resource: Mapped[str] = mapped_column(sa.String(500))
    outcome: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.String(300))
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))


class AuditHead(Base):
    """The one row holding the audit chain's last ``seq`` and ``hash`` (appends lock it)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(sa.BigInteger())
    hash: Mapped[str] = mapped_column(sa.String(64))


class IdempotencyRecord(Base):
    """The stored response of a POST sent with an ``Idempotency-Key``, replayed on retry."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (sa.UniqueConstraint("principal", "key"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    principal: Mapped[str] = mapped_column(sa.String(80))
    key: Mapped[str] = mapped_column(sa.String(200))
    method: Mapped[str] = mapped_column(sa.String(10))
    path: Mapped[str] = mapped_column(sa.String(500))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int] = mapped_column(sa.Integer())
    response_body: Mapped[str] = mapped_column(sa.Text())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ConsoleSession(Base):
    """A web console sign-in: the cookie carries a random token, the table its SHA-256."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookEndpoint(Base):
    """An institution's URL that receives signed notifications (grade changes)."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    institution_id: Mapped[str] = mapped_column(sa.ForeignKey("institutions.id"), index=True)
    url: Mapped[str] = mapped_column(sa.String(500))
    secret_enc: Mapped[bytes] = mapped_column(sa.LargeBinary())
    events: Mapped[list[str]] = mapped_column(sa.JSON())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(sa.String(36))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookEvent(Base):
    """Something institutions may be told about: one per score alert of the scoring engine."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    alert_id: Mapped[str] = mapped_column(sa.ForeignKey("score_alerts.id"), unique=True)
    event_type: Mapped[str] = mapped_column(sa.String(40))
    credit_code: Mapped[str] = mapped_column(sa.String(18), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One event to one endpoint: its attempts, the last answer and when to try again."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "endpoint_id"),
        sa.Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(sa.ForeignKey("webhook_events.id"))
    endpoint_id: Mapped[str] = mapped_column(sa.ForeignKey("webhook_endpoints.id"), index=True)
    consent_id: Mapped[str] = mapped_column(sa.ForeignKey("consents.id"))
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer(), default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer())
    last_error: Mapped[str | None] = mapped_column(sa.String(300))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
