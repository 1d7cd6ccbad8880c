"""Signed webhooks: institutions are told when a consented enterprise's grade changes.

Rules:
- The scoring engine raises an alert when a new evaluation lowers an enterprise's grade
  (``downgrade``) or raises its PD past a threshold (``pd_jump``). :func:`collect_events` turns
  each alert into one event (``score.downgraded`` / ``score.pd_jump``) and queues one delivery to
  every active endpoint subscribed to that type whose institution holds, at that moment, a live
  consent from the enterprise covering ``view_score`` (any purpose). Each queued delivery is an
  access to enterprise data and is audited (actor ``system``, the consent it rests on).
- A delivery is a POST of the JSON event with ``X-Flowbureau-Timestamp`` (Unix seconds) and
  ``X-Flowbureau-Signature: v1=<hex>``, the HMAC-SHA256 of ``<timestamp>.<body>`` under the
  endpoint's secret (shown once at creation, stored encrypted). Receivers check the signature
  and refuse timestamps older than a few minutes (:func:`verify_signature`, replay protection);
  ``X-Flowbureau-Event-Id`` lets them drop duplicates (delivery is at least once).
- A 2xx answer delivers it. Anything else (an error status, a timeout, a refused connection) is
  retried after ``webhook_retry_base_seconds`` doubling each time (capped at six hours), at most
  ``webhook_max_attempts`` tries; then it is ``failed``. A delivery whose consent was revoked or
  expired meanwhile is ``cancelled`` instead of sent. Every attempt's outcome is recorded.
- Deliveries are claimed with a lease (``locked_until``) in a committed update before sending,
  so several server processes never send the same attempt twice, and nothing is sent while a
  database transaction is open.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from flowbureau.errors import InputError, NotFoundError
from flowbureau.service import audit
from flowbureau.service.consent import INSTITUTION_ROLES, consent_status, require_role
from flowbureau.service.models import (
    Consent,
    Enterprise,
    Operation,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from flowbureau.service.principals import Principal
from flowbureau.service.settings import ServiceSettings
from flowbureau.service.vault import Vault

__all__ = [
    "EVENT_TYPES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DeliveryReport",
    "WebhookDispatcher",
    "collect_events",
    "create_endpoint",
    "deliver_due",
    "disable_endpoint",
    "list_deliveries",
    "list_endpoints",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

EVENT_TYPES: dict[str, str] = {"downgrade": "score.downgraded", "pd_jump": "score.pd_jump"}
"""Score alert kind -> webhook event type."""
SIGNATURE_HEADER = "X-Flowbureau-Signature"
TIMESTAMP_HEADER = "X-Flowbureau-Timestamp"
EVENT_ID_HEADER = "X-Flowbureau-Event-Id"
SECRET_PREFIX = "whsec_"
_SECRET_CONTEXT = "webhook_endpoints.secret"
_MAX_BACKOFF = timedelta(hours=6)
PENDING, DELIVERED, FAILED, CANCELLED = "pending", "delivered", "failed", "cancelled"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``v1=`` + HMAC-SHA256 of ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(
    secret: str, *, timestamp: str, signature: str, body: bytes, now: datetime, tolerance: int = 300
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now.timestamp() - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


def _check_url(url: str, *, production: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise InputError("the webhook URL must be an absolute http(s) URL", field="url")
    if production and parts.scheme != "https":
        raise InputError("webhook URLs must use https in production", field="url")
    if parts.username or parts.password:
        raise InputError("put no credentials in the webhook URL", field="url")
    return url


def create_endpoint(
    db: Session,
    *,
    principal: Principal,
    url: str,
    events: Sequence[str],
    vault: Vault,
    production: bool,
    now: datetime,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint of the caller's institution; return it and its secret (shown once)."""
    require_role(principal, *INSTITUTION_ROLES, action="managing webhooks")
    unknown = sorted(set(events) - set(EVENT_TYPES.values()))
    if unknown or not events:
        raise InputError(
            f"events must be among {', '.join(EVENT_TYPES.values())}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else ""),
            field="events",
        )
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(
        institution_id=principal.institution_id,
        url=_check_url(url, production=production),
        secret_enc=vault.encrypt(secret, context=_SECRET_CONTEXT),
        events=sorted(set(events)),
        created_at=now,
        created_by=principal.key_id or principal.id,
    )
    db.add(endpoint)
    db.flush()
    return endpoint, secret


def _own_endpoint(db: Session, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    require_role(principal, *INSTITUTION_ROLES, action="managing webhooks")
    endpoint = db.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.institution_id != principal.institution_id:
        raise NotFoundError(f"no webhook endpoint {endpoint_id} of your institution")
    return endpoint


def list_endpoints(db: Session, *, principal: Principal) -> list[WebhookEndpoint]:
    """The caller's institution's endpoints, newest first."""
    require_role(principal, *INSTITUTION_ROLES, action="managing webhooks")
    return list(
        db.execute(
            sa.select(WebhookEndpoint)
            .where(WebhookEndpoint.institution_id == principal.institution_id)
            .order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id)
        ).scalars()
    )


def disable_endpoint(
    db: Session, *, principal: Principal, endpoint_id: str, now: datetime
) -> WebhookEndpoint:
    """Stop sending to an endpoint (its pending deliveries are cancelled)."""
    endpoint = _own_endpoint(db, principal, endpoint_id)
    if endpoint.disabled_at is None:
        endpoint.disabled_at = now
        db.execute(
            sa.update(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == PENDING)
            .values(status=CANCELLED, last_error="endpoint disabled")
            .execution_options(synchronize_session=False)
        )
    return endpoint


def list_deliveries(
    db: Session, *, principal: Principal, endpoint_id: str, limit: int
) -> list[WebhookDelivery]:
    """The latest deliveries to one of the caller's endpoints, newest first."""
    endpoint = _own_endpoint(db, principal, endpoint_id)
    return list(
        db.execute(
            sa.select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint.id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
            .limit(limit)
        ).scalars()
    )


def _live_view_score_consent(
    db: Session, enterprise_id: str, institution_id: str, now: datetime
) -> Consent | None:
    consents = db.execute(
        sa.select(Consent)
        .where(Consent.enterprise_id == enterprise_id, Consent.institution_id == institution_id)
        .order_by(Consent.expires_at.desc(), Consent.id)
    ).scalars()
    for consent in consents:
        if consent_status(consent, now) == "live" and Operation.VIEW_SCORE.value in consent.scopes:
            return consent
    return None


def collect_events(db: Session, *, now: datetime, limit: int = 500) -> int:
    """Turn new score alerts into events and queue their deliveries; return events made."""
    from flowbureau.scoring.history import ScoreAlert, ScoreEvaluation

    seen = sa.select(WebhookEvent.alert_id)
    alerts = list(
        db.execute(
            sa.select(ScoreAlert)
            .where(ScoreAlert.id.not_in(seen))
            .order_by(ScoreAlert.created_at, ScoreAlert.id)
            .limit(limit)
        ).scalars()
    )
    endpoints = list(
        db.execute(
            sa.select(WebhookEndpoint).where(WebhookEndpoint.disabled_at.is_(None))
        ).scalars()
    )
    for alert in alerts:
        event_type = EVENT_TYPES.get(alert.kind, f"score.{alert.kind}")
        evaluation = db.get(ScoreEvaluation, alert.evaluation_id)
        event = WebhookEvent(
            alert_id=alert.id,
            event_type=event_type,
            credit_code=alert.enterprise_id,
            payload={
                "credit_code": alert.enterprise_id,
                "previous_grade": alert.previous_grade,
                "grade": alert.grade,
                "previous_pd": alert.previous_pd,
                "pd": alert.pd,
                "as_of": None if evaluation is None else evaluation.as_of.isoformat(),
                "model_version": None
                if evaluation is None
                else f"{evaluation.model_name}/v{evaluation.model_version:04d}",
            },
            created_at=now,
        )
        db.add(event)
        db.flush()
        enterprise = db.execute(
            sa.select(Enterprise).where(Enterprise.credit_code == alert.enterprise_id)
        ).scalar_one_or_none()
        if enterprise is None:
            continue  # nobody can have consent from an enterprise not on the platform
        for endpoint in endpoints:
            if event_type not in endpoint.events:
                continue
            consent = _live_view_score_consent(db, enterprise.id, endpoint.institution_id, now)
            if consent is None:
                continue
            delivery = WebhookDelivery(
                event_id=event.id,
                endpoint_id=endpoint.id,
                consent_id=consent.id,
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            db.add(delivery)
            db.flush()
            audit.append(
                db,
                audit.AuditRecord(
                    at=now,
                    actor_kind="system",
                    actor_id=None,
                    role=None,
                    operation=f"webhook_{Operation.VIEW_SCORE.value}",
                    resource=f"/v1/webhooks/{endpoint.id}/deliveries/{delivery.id}",
                    outcome="allowed",
                    institution_id=endpoint.institution_id,
                    enterprise_id=enterprise.id,
                    credit_code=alert.enterprise_id,
                    purpose=consent.purpose.value,
                    consent_id=consent.id,
                    reason=f"{event_type}: {alert.previous_grade} -> {alert.grade}",
                ),
            )
    return len(alerts)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one :func:`deliver_due` pass did."""

    delivered: int
    retrying: int
    failed: int
    cancelled: int


def _body(event: WebhookEvent) -> bytes:
    document = {
        "id": event.id,
        "type": event.event_type,
        "created_at": event.created_at.isoformat(),
        "data": event.payload,
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _backoff(settings: ServiceSettings, attempts: int) -> timedelta:
    seconds = settings.webhook_retry_base_seconds * 2 ** max(0, attempts - 1)
    return min(timedelta(seconds=seconds), _MAX_BACKOFF)


def deliver_due(
    sessions: sessionmaker[Session],
    *,
    vault: Vault,
    settings: ServiceSettings,
    client: httpx.Client,
    clock: Callable[[], datetime],
    limit: int = 50,
) -> DeliveryReport:
    """Send the deliveries that are due (one attempt each) and record the outcomes."""
    counts = {DELIVERED: 0, PENDING: 0, FAILED: 0, CANCELLED: 0}
    with sessions() as db:
        now = clock()
        due = list(
            db.execute(
                sa.select(WebhookDelivery.id)
                .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(limit)
            ).scalars()
        )
    lease = timedelta(seconds=settings.webhook_timeout_seconds * 2 + 30)
    for delivery_id in due:
        outcome = _attempt(
            sessions,
            delivery_id,
            vault=vault,
            settings=settings,
            client=client,
            clock=clock,
            lease=lease,
        )
        if outcome is not None:
            counts[outcome] += 1
    return DeliveryReport(counts[DELIVERED], counts[PENDING], counts[FAILED], counts[CANCELLED])


def _attempt(
    sessions: sessionmaker[Session],
    delivery_id: str,
    *,
    vault: Vault,
    settings: ServiceSettings,
    client: httpx.Client,
    clock: Callable[[], datetime],
    lease: timedelta,
) -> str | None:
    with sessions() as db:
        now = clock()
        claimed = db.execute(
            sa.update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_attempt_at <= now,
                sa.or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
            )
            .values(locked_until=now + lease)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            return None  # another process has it
        delivery = db.get_one(WebhookDelivery, delivery_id)
        endpoint = db.get_one(WebhookEndpoint, delivery.endpoint_id)
        event = db.get_one(WebhookEvent, delivery.event_id)
        consent = db.get_one(Consent, delivery.consent_id)
        if endpoint.disabled_at is not None or consent_status(consent, now) != "live":
            delivery.status = CANCELLED
            delivery.last_error = (
                "endpoint disabled" if endpoint.disabled_at else "consent no longer live"
            )
            delivery.locked_until = None
            db.commit()
            return CANCELLED
        url = endpoint.url
        secret = vault.decrypt(endpoint.secret_enc, context=_SECRET_CONTEXT)
        body = _body(event)
        db.commit()
    stamp = int(clock().timestamp())
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret, stamp, body),
        EVENT_ID_HEADER: event.id,
        "User-Agent": "flowbureau-webhooks/1",
    }
    status_code: int | None = None
    error: str | None = None
    try:
        response = client.post(url, content=body, headers=headers)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:300]
    with sessions() as db:
        now = clock()
        delivery = db.get_one(WebhookDelivery, delivery_id)
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_status_code = status_code
        delivery.last_error = error
        delivery.locked_until = None
        if error is None:
            delivery.status, delivery.delivered_at = DELIVERED, now
        elif delivery.attempts >= settings.webhook_max_attempts:
            delivery.status = FAILED
        else:
            delivery.next_attempt_at = now + _backoff(settings, delivery.attempts)
        outcome = delivery.status
        db.commit()
    if error is not None:
        log.info("webhook delivery %s to %s: %s (%s)", delivery_id, url, error, outcome)
    return outcome


class WebhookDispatcher:
    """A daemon thread that collects events and delivers webhooks every ``poll`` seconds."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        vault: Vault,
        settings: ServiceSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._settings = settings
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, client: httpx.Client) -> DeliveryReport:
        """One pass: new alerts become events and deliveries, then due deliveries are sent."""
        with self._sessions() as db:
            collect_events(db, now=self._clock())
            db.commit()
        return deliver_due(
            self._sessions,
            vault=self._vault,
            settings=self._settings,
            client=client,
            clock=self._clock,
        )

    def _loop(self) -> None:
        timeout = httpx.Timeout(self._settings.webhook_timeout_seconds)
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.run_once(client)
                except Exception:  # keep delivering after a bad pass; the next one retries
                    log.exception("webhook dispatch pass failed")
                wait = self._settings.webhook_poll_seconds - (time.monotonic() - started)
                self._stop.wait(max(wait, 0.1))

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait for the current pass."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._settings.webhook_timeout_seconds + 5)
