"""Settings of the platform service (``FLOWBUREAU_SERVICE__*``), a :mod:`flowbureau.config` group.

Rules:
- Every limit has a safe default; operators tune them per deployment, e.g.
  ``FLOWBUREAU_SERVICE__ACCESS_TOKEN_MINUTES=10``.
- The SMS backend itself is the top-level ``FLOWBUREAU_SMS_BACKEND`` (``console``, ``file:PATH``
  or an ``http(s)://`` gateway URL); the gateway's credentials live here.
- In-process rate limits hold per server process; with several workers or hosts set
  ``FLOWBUREAU_REDIS_URL`` so that every process shares one budget.
- Webhooks are retried with exponential backoff (``webhook_retry_base_seconds`` doubling, at most
  ``webhook_max_attempts`` tries); a worker thread in each server process delivers them every
  ``webhook_poll_seconds`` (0 turns it off, e.g. when a separate process delivers).
- This module imports pydantic only: :mod:`flowbureau.config` imports it at start-up.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

__all__ = ["ServiceSettings"]


class ServiceSettings(BaseModel):
    """Limits, lifetimes and gateways of the HTTP service."""

    access_token_minutes: int = Field(
        default=15, ge=1, le=60, description="Lifetime of a JWT access token."
    )
    refresh_token_days: int = Field(
        default=30, ge=1, le=365, description="Lifetime of a sign-in session's refresh tokens."
    )
    otp_ttl_seconds: int = Field(default=300, ge=30, description="Life of an SMS code.")
    otp_max_attempts: int = Field(default=5, ge=1, description="Wrong tries that kill an SMS code.")
    otp_resend_seconds: int = Field(
        default=60, ge=1, description="Minimum wait before another code to the same phone."
    )
    otp_per_phone_per_hour: int = Field(
        default=5, ge=1, description="SMS codes per phone per hour."
    )
    otp_per_ip_per_hour: int = Field(
        default=20, ge=1, description="SMS codes requested from one client IP per hour."
    )
    login_per_phone_per_15min: int = Field(
        default=10, ge=1, description="Sign-in attempts (password or code) per phone per 15 min."
    )
    login_per_ip_per_15min: int = Field(
        default=50, ge=1, description="Sign-in attempts from one client IP per 15 minutes."
    )
    api_key_requests_per_minute: int = Field(
        default=120, ge=1, description="Requests one institution API key may make per minute."
    )
    consent_max_days: int = Field(
        default=366, ge=1, description="Longest validity an enterprise may give a consent."
    )
    idempotency_hours: int = Field(
        default=24, ge=1, description="How long a POST's Idempotency-Key replays its response."
    )
    sms_http_username: str | None = Field(
        default=None, description="Basic-auth user of the HTTP SMS gateway."
    )
    sms_http_password: SecretStr | None = Field(
        default=None, description="Basic-auth password of the HTTP SMS gateway."
    )
    sms_http_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of one call to the HTTP SMS gateway."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Browser origins allowed to call the API (CORS)."
    )
    trust_forwarded_for: bool = Field(
        default=False,
        description="Take the client IP from X-Forwarded-For (only behind a trusted proxy).",
    )
    argon2_time_cost: int = Field(default=3, ge=1, description="argon2id passes.")
    argon2_memory_kib: int = Field(
        default=65536, ge=1024, description="argon2id memory (RFC 9106 second profile: 64 MiB)."
    )
    argon2_parallelism: int = Field(default=4, ge=1, description="argon2id lanes.")
    console_session_hours: int = Field(
        default=12, ge=1, le=168, description="Lifetime of a web console sign-in."
    )
    webhook_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Timeout of one webhook delivery attempt."
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=30, description="Delivery attempts before a webhook is given up."
    )
    webhook_retry_base_seconds: int = Field(
        default=30, ge=1, description="Wait before the 2nd attempt; doubles after each failure."
    )
    webhook_poll_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How often a server process looks for webhooks to deliver (0: never).",
    )
