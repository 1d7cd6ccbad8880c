"""Request and response bodies of the HTTP API (``XCreate`` / ``XUpdate`` / ``XPublic``).

Rules:
- Bodies validate what can be checked without the database: phone numbers (E.164), unified
  social credit codes (check digit), GB/T 4754 industry codes, money (exact in its currency's
  minor units), SMS code format, password length. Problems come back as 422 naming the field.
- Money is ``{"amount": "1234.56", "currency": "CNY"}``: a decimal string (numbers are
  accepted on input), never a binary float.
- Timestamps must carry a time zone; responses give them in UTC.
- Responses never carry secrets or clear account numbers (only the last four digits).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from flowbureau.errors import InputError
from flowbureau.schema import InvalidCodeError, to_minor, validate_credit_code
from flowbureau.service.identifiers import normalize_industry_code, normalize_phone
from flowbureau.service.models import ApplicationStatus, Operation, OtpPurpose, Purpose, Role
from flowbureau.service.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from flowbureau.service.providers import ScoreView

T = TypeVar("T")


def _as_value_error(check: Callable[[str], str]) -> Callable[[str], str]:
    def validate(value: str) -> str:
        try:
            return check(value)
        except (InputError, InvalidCodeError) as exc:
            raise ValueError(getattr(exc, "message", str(exc))) from None

    return validate


Phone = Annotated[
    str,
    Field(min_length=5, max_length=32, examples=["13800138000", "+8613800138000"]),
    AfterValidator(_as_value_error(normalize_phone)),
]
"""A phone number, normalised to E.164."""

CreditCode = Annotated[
    str,
    Field(min_length=18, max_length=18, examples=["91350100M000100Y43"]),
    AfterValidator(_as_value_error(validate_credit_code)),
]
"""An 18-character unified social credit code (GB 32100-2015) with a valid check digit."""

IndustryCode = Annotated[
    str,
    Field(min_length=1, max_length=6, examples=["C3511"]),
    AfterValidator(_as_value_error(normalize_industry_code)),
]
"""A GB/T 4754-2017 industry code, normalised to letter + digits."""

SmsCodeText = Annotated[str, Field(pattern=r"^[0-9]{6}$", examples=["123456"])]
Password = Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class Money(BaseModel):
    """An amount in major units of an ISO 4217 currency, exact in its minor units."""

    amount: Decimal = Field(ge=0, max_digits=20, examples=["5000000.00"])
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")

    @model_validator(mode="after")
    def _exact(self) -> Money:
        to_minor(self.amount, self.currency)  # MoneyError (a ValueError) -> 422
        return self

    @property
    def minor(self) -> int:
        """The amount in integer minor units."""
        return to_minor(self.amount, self.currency)


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` to get the next (null: no more)."""

    items: list[T]
    next_cursor: str | None


class ProblemItem(BaseModel):
    """One request validation problem."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem details body (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="urn:flowbureau:problem:<slug>, or about:blank.")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = Field(default=None, description="Matches X-Request-ID.")
    field: str | None = Field(default=None, description="The offending field, if one.")
    missing_fields: list[str] | None = Field(
        default=None, description="Every required field still missing (422)."
    )
    errors: list[ProblemItem] | None = Field(
        default=None, description="Every validation problem of the request (422)."
    )
    retry_after: int | None = Field(default=None, description="Seconds to wait (429).")


# --- auth -----------------------------------------------------------------------------------


class SmsCodeRequest(BaseModel):
    """Ask for an SMS code to register or sign in."""

    phone: Phone
    purpose: OtpPurpose


class SmsCodeSent(BaseModel):
    """The code is on its way (or the phone was told why none was sent)."""

    expires_in: int = Field(description="Seconds the code stays valid.")
    resend_after: int = Field(description="Seconds before another code may be requested.")


class RegisterCreate(BaseModel):
    """Register an enterprise user with the SMS code sent to the phone."""

    phone: Phone
    code: SmsCodeText
    password: Password
    role: Literal[Role.ENTERPRISE] = Field(
        default=Role.ENTERPRISE,
        description="Only enterprise users register themselves; operators create analysts, "
        "operators and auditors (`flowbureau admin create-user`).",
    )
    display_name: str | None = Field(default=None, max_length=100)
    enterprise_name: str | None = Field(default=None, max_length=200)


class LoginRequest(BaseModel):
    """Sign in with the phone plus either the password or an SMS code (purpose login)."""

    phone: Phone
    password: str | None = Field(default=None, max_length=MAX_PASSWORD_LENGTH)
    code: SmsCodeText | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> LoginRequest:
        if (self.password is None) == (self.code is None):
            raise ValueError("give either password or code")
        return self


class RefreshRequest(BaseModel):
    """A refresh token to exchange (refresh) or to end its session (logout)."""

    refresh_token: str = Field(min_length=1, max_length=200)


class TokenPublic(BaseModel):
    """An access token (short-lived JWT) and a refresh token (single use, rotated)."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token stays valid.")


class PrincipalPublic(BaseModel):
    """Who the caller is."""

    kind: Literal["user", "api_key"]
    id: str
    role: Role
    institution_id: str | None
    enterprise_id: str | None
    scopes: list[Operation]


# --- institutions ---------------------------------------------------------------------------


class InstitutionPublic(BaseModel):
    """An institution an enterprise can give consent to."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str


# --- enterprise profile ---------------------------------------------------------------------


class BankAccountCreate(BaseModel):
    """One of the enterprise's bank accounts."""

    bank_name: Text
    account_number: str = Field(pattern=r"^[0-9A-Za-z \-]{6,40}$", examples=["6222 0212 3456 7890"])
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")


class BankAccountPublic(BaseModel):
    """A bank account as shown back: never the whole number."""

    id: str
    bank_name: str
    currency: str
    account_last4: str


class ProfileUpdate(BaseModel):
    """The enterprise's information; PUT replaces it whole, absent fields become empty."""

    name: Text | None = None
    credit_code: CreditCode | None = None
    industry_code: IndustryCode | None = None
    registration_date: date | None = None
    registered_capital: Money | None = None
    legal_representative: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    address: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    contact_name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    contact_phone: Phone | None = None
    bank_accounts: list[BankAccountCreate] = Field(default_factory=list, max_length=20)


class ProfilePublic(BaseModel):
    """The enterprise's information and what is still missing before it can apply."""

    id: str
    name: str | None
    credit_code: str | None
    industry_code: str | None
    registration_date: date | None
    registered_capital: Money | None
    legal_representative: str | None
    address: str | None
    contact_name: str | None
    contact_phone: str | None
    bank_accounts: list[BankAccountPublic]
    missing_fields: list[str] = Field(description="Required before an application is accepted.")
    updated_at: datetime


# --- applications ---------------------------------------------------------------------------


class ApplicationCreate(BaseModel):
    """A credit evaluation application; ``submit`` false keeps it as a draft."""

    requested_amount: Money | None = None
    term_months: int | None = Field(default=None, ge=1, le=360)
    loan_purpose: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    submit: bool = True


class ApplicationPublic(BaseModel):
    """An application, its status and, once evaluated, the evaluation."""

    id: str
    enterprise_id: str
    credit_code: str | None
    status: ApplicationStatus
    status_reason: str | None
    requested_amount: Money | None
    term_months: int | None
    loan_purpose: str | None
    evaluation: ScoreView | None
    created_at: datetime
    submitted_at: datetime | None
    evaluated_at: datetime | None


# --- consents -------------------------------------------------------------------------------


class ConsentCreate(BaseModel):
    """Let one institution see some of the enterprise's data for one purpose until a time."""

    institution_id: str = Field(min_length=1, max_length=36)
    purpose: Purpose
    scopes: list[Operation] = Field(min_length=1, max_length=len(Operation))
    expires_at: AwareDatetime


class ConsentPublic(BaseModel):
    """A consent and its state now."""

    id: str
    enterprise_id: str
    credit_code: str | None
    institution_id: str
    institution_name: str
    purpose: Purpose
    scopes: list[Operation]
    expires_at: datetime
    created_at: datetime
    revoked_at: datetime | None
    status: Literal["live", "expired", "revoked"]


# --- audit ----------------------------------------------------------------------------------


class AuditEntryPublic(BaseModel):
    """One audit log entry."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    actor_kind: str
    actor_id: str | None
    role: str | None
    institution_id: str | None
    enterprise_id: str | None
    credit_code: str | None
    purpose: str | None
    consent_id: str | None
    operation: str
    resource: str
    outcome: str
    reason: str | None
    request_id: str | None
    prev_hash: str
    hash: str


class AuditVerificationPublic(BaseModel):
    """Result of re-computing the audit chain."""

    ok: bool
    rows: int
    head_seq: int
    broken_seq: int | None
    problem: str | None


# --- records (identity resolution and freshness) -------------------------------------------


class RecordLinkPublic(BaseModel):
    """A record the platform holds, as matched to the caller's enterprise."""

    id: str = Field(description="The link id (confirm or reject with it).")
    status: Literal["attached", "candidate", "rejected"]
    probability: float = Field(description="Attribution probability (Fellegi-Sunter).")
    record_type: str
    source: str
    name: str | None
    credit_code: str | None
    record_date: date | None
    details: dict[str, Any]
    verified_at: datetime | None
    stale: bool
    invalid_reason: str | None


class AttributionPublic(BaseModel):
    """What one matching run did."""

    model_version: str
    scored: int
    attached: int
    candidates: int


class UpdateRequestPublic(BaseModel):
    """A request to update stale information, and (once done) the re-evaluation."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: Literal["profile", "financial"]
    items: list[dict[str, Any]]
    status: Literal["open", "done"]
    created_at: datetime
    resolved_at: datetime | None
    evaluation: dict[str, Any] | None


class SignedMoney(BaseModel):
    """An amount that may be negative (a loss), exact in its currency's minor units."""

    amount: Decimal = Field(max_digits=20, examples=["-125000.00"])
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")

    @model_validator(mode="after")
    def _exact(self) -> SignedMoney:
        to_minor(self.amount, self.currency)
        return self

    @property
    def minor(self) -> int:
        """The amount in integer minor units."""
        return to_minor(self.amount, self.currency)


class FinancialsCreate(BaseModel):
    """Key financial figures for the period ending ``period_end`` (one currency)."""

    period_end: date
    revenue: Money
    total_assets: Money
    total_liabilities: Money
    net_profit: SignedMoney

    @model_validator(mode="after")
    def _one_currency(self) -> FinancialsCreate:
        currencies = {
            self.revenue.currency,
            self.total_assets.currency,
            self.total_liabilities.currency,
            self.net_profit.currency,
        }
        if len(currencies) != 1:
            raise ValueError("give every figure in the same currency")
        return self


class FinancialsPublic(BaseModel):
    """A declaration of financial figures."""

    id: str
    period_end: date
    revenue: Money
    total_assets: Money
    total_liabilities: Money
    net_profit: SignedMoney
    declared_at: datetime


class FinancialsDeclared(BaseModel):
    """The declaration and the update request it resolved (with the re-evaluation), if any."""

    financials: FinancialsPublic
    resolved_request: UpdateRequestPublic | None


class LoadReportPublic(BaseModel):
    """Records added and refreshed per record type."""

    added: dict[str, int]
    refreshed: dict[str, int]


class IdentityModelPublic(BaseModel):
    """A trained attribution model."""

    version: str
    trained_at: str
    records: int


# --- webhooks -------------------------------------------------------------------------------


class WebhookEndpointCreate(BaseModel):
    """A URL of the caller's institution to notify, and the events it wants."""

    url: str = Field(min_length=8, max_length=500, examples=["https://bank.example/hooks/fb"])
    events: list[str] = Field(
        default_factory=lambda: ["score.downgraded", "score.pd_jump"],
        min_length=1,
        max_length=10,
    )


class WebhookEndpointPublic(BaseModel):
    """A webhook endpoint (its secret is shown only when it is created)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    events: list[str]
    created_at: datetime
    disabled_at: datetime | None


class WebhookEndpointCreated(WebhookEndpointPublic):
    """A new endpoint and its signing secret: keep it, it is not shown again."""

    secret: str = Field(description="HMAC-SHA256 key of the X-Flowbureau-Signature header.")


class WebhookDeliveryPublic(BaseModel):
    """One event sent (or being sent) to an endpoint."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    event_id: str
    consent_id: str
    status: Literal["pending", "delivered", "failed", "cancelled"]
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting problem-details answers for ``statuses``."""
    return {status: {"model": Problem} for status in statuses}
