"""Credit evaluation applications: draft -> submitted -> evaluating -> evaluated.

Rules:
- An application is submitted only when the enterprise profile and the application itself are
  complete; otherwise :class:`~flowbureau.errors.IncompleteError` lists *every* missing field
  (``profile.<field>``, ``requested_amount``, ``term_months``) and nothing changes.
- ``submit=false`` keeps a draft, which :func:`submit_application` submits later.
- On submission the :class:`~flowbureau.service.providers.Evaluator` is asked for a score as of
  today. With a score, the application becomes ``evaluated`` and keeps it; without one (no model
  yet, or the model failed) it stays ``submitted`` with the reason, and is never given an
  invented score.
- Enterprise users see their own applications; institutions see one only under a live consent
  covering ``view_score`` (:func:`flowbureau.service.consent.require_access`), because it
  carries the evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.errors import ConflictError, IncompleteError, ModelError, NotFoundError
from flowbureau.schema import format_minor
from flowbureau.service import audit
from flowbureau.service.consent import audit_record, require_access
from flowbureau.service.models import (
    Application,
    ApplicationStatus,
    Enterprise,
    Operation,
    Purpose,
    Role,
)
from flowbureau.service.principals import Principal
from flowbureau.service.profiles import get_own_enterprise, missing_profile_fields
from flowbureau.service.providers import Evaluator, ScoreView
from flowbureau.service.schemas import ApplicationCreate, ApplicationPublic, Money

__all__ = [
    "NO_MODEL_REASON",
    "application_public",
    "application_view",
    "create_application",
    "list_applications",
    "submit_application",
    "view_application",
]

NO_MODEL_REASON = (
    "no credit model can score this enterprise yet; the application will be evaluated when one can"
)


def _missing(enterprise: Enterprise, application: Application) -> list[str]:
    missing = missing_profile_fields(enterprise)
    if application.requested_amount_minor is None:
        missing.append("requested_amount")
    if application.term_months is None:
        missing.append("term_months")
    return missing


def _submit(
    db: Session,
    *,
    principal: Principal,
    enterprise: Enterprise,
    application: Application,
    evaluator: Evaluator,
    request_id: str | None,
    now: datetime,
) -> None:
    missing = _missing(enterprise, application)
    if missing:
        raise IncompleteError(
            "complete the enterprise information and the application first",
            missing_fields=missing,
        )
    assert enterprise.credit_code is not None  # a complete profile has one
    application.status = ApplicationStatus.SUBMITTED
    application.submitted_at = now
    application.updated_at = now
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation="submit_application",
            resource=f"/v1/applications/{application.id}",
            outcome="done",
            request_id=request_id,
            enterprise_id=enterprise.id,
            credit_code=enterprise.credit_code,
        ),
    )
    application.status = ApplicationStatus.EVALUATING
    try:
        score = evaluator.evaluate(credit_code=enterprise.credit_code, as_of=now.date())
        reason = NO_MODEL_REASON
    except ModelError as exc:
        score, reason = None, f"evaluation failed, will be retried: {exc}"
    if score is None:
        application.status = ApplicationStatus.SUBMITTED
        application.status_reason = reason[:300]
        return
    application.status = ApplicationStatus.EVALUATED
    application.status_reason = None
    application.evaluation = score.model_dump(mode="json")
    application.evaluated_at = now


def create_application(
    db: Session,
    *,
    principal: Principal,
    data: ApplicationCreate,
    evaluator: Evaluator,
    request_id: str | None,
    now: datetime,
) -> Application:
    """Create an application of the caller's enterprise; submit it unless ``data.submit`` is off."""
    enterprise = get_own_enterprise(db, principal)
    amount = data.requested_amount
    application = Application(
        enterprise_id=enterprise.id,
        created_by=principal.id,
        status=ApplicationStatus.DRAFT,
        requested_amount_minor=None if amount is None else amount.minor,
        currency=None if amount is None else amount.currency,
        term_months=data.term_months,
        loan_purpose=data.loan_purpose,
        created_at=now,
        updated_at=now,
    )
    if data.submit:
        missing = _missing(enterprise, application)
        if missing:  # refuse before anything is stored
            raise IncompleteError(
                "complete the enterprise information and the application first",
                missing_fields=missing,
            )
    db.add(application)
    db.flush()
    if data.submit:
        _submit(
            db,
            principal=principal,
            enterprise=enterprise,
            application=application,
            evaluator=evaluator,
            request_id=request_id,
            now=now,
        )
    return application


def submit_application(
    db: Session,
    *,
    principal: Principal,
    application_id: str,
    evaluator: Evaluator,
    request_id: str | None,
    now: datetime,
) -> Application:
    """Submit a draft of the caller's enterprise (re-asking the evaluator if still submitted)."""
    enterprise = get_own_enterprise(db, principal)
    application = db.get(Application, application_id)
    if application is None or application.enterprise_id != enterprise.id:
        raise NotFoundError(f"no application {application_id} of this enterprise")
    if application.status not in {ApplicationStatus.DRAFT, ApplicationStatus.SUBMITTED}:
        raise ConflictError(f"application {application_id} is already {application.status.value}")
    _submit(
        db,
        principal=principal,
        enterprise=enterprise,
        application=application,
        evaluator=evaluator,
        request_id=request_id,
        now=now,
    )
    return application


def view_application(
    db: Session,
    *,
    principal: Principal,
    application_id: str,
    purpose: Purpose | None,
    resource: str,
    request_id: str | None,
    now: datetime,
) -> ApplicationPublic:
    """One application, under the access policy for ``view_score`` (audited).

    Drafts are private to their enterprise; a draft without a credit code yet is shown to its
    owner without an audit entry (it holds no enterprise data worth recording).
    """
    application = db.get(Application, application_id)
    if application is None:
        raise NotFoundError(f"no application {application_id}")
    enterprise = db.get_one(Enterprise, application.enterprise_id)
    is_owner = principal.role is Role.ENTERPRISE and principal.enterprise_id == enterprise.id
    if application.status is ApplicationStatus.DRAFT and not is_owner:
        raise NotFoundError(f"no application {application_id}")
    if enterprise.credit_code is None and is_owner:
        return application_public(application, enterprise)
    require_access(
        db,
        principal=principal,
        credit_code=enterprise.credit_code or "",
        operation=Operation.VIEW_SCORE,
        purpose=purpose,
        resource=resource,
        request_id=request_id,
        now=now,
    )
    return application_public(application, enterprise)


def application_view(db: Session, application: Application) -> ApplicationPublic:
    """The API view of an application, with its enterprise's credit code."""
    return application_public(application, db.get_one(Enterprise, application.enterprise_id))


def list_applications(
    db: Session,
    *,
    principal: Principal,
    after: tuple[datetime, str] | None,
    limit: int,
) -> Sequence[Application]:
    """The caller's enterprise's applications, oldest first after the keyset ``after``."""
    enterprise = get_own_enterprise(db, principal)
    stmt = sa.select(Application).where(Application.enterprise_id == enterprise.id)
    if after is not None:
        created, last_id = after
        stmt = stmt.where(
            sa.or_(
                Application.created_at > created,
                sa.and_(Application.created_at == created, Application.id > last_id),
            )
        )
    stmt = stmt.order_by(Application.created_at, Application.id).limit(limit)
    return db.execute(stmt).scalars().all()


def application_public(application: Application, enterprise: Enterprise) -> ApplicationPublic:
    """The API view of an application."""
    amount = None
    if application.requested_amount_minor is not None and application.currency:
        amount = Money(
            amount=Decimal(format_minor(application.requested_amount_minor, application.currency)),
            currency=application.currency,
        )
    return ApplicationPublic(
        id=application.id,
        enterprise_id=enterprise.id,
        credit_code=enterprise.credit_code,
        status=application.status,
        status_reason=application.status_reason,
        requested_amount=amount,
        term_months=application.term_months,
        loan_purpose=application.loan_purpose,
        evaluation=None
        if application.evaluation is None
        else ScoreView.model_validate(application.evaluation),
        created_at=application.created_at,
        submitted_at=application.submitted_at,
        evaluated_at=application.evaluated_at,
    )
