"""An enterprise's records as the service offers them: identity resolution and freshness.

Rules:
- Operators load the sources (:func:`load_sources`: the warehouse's bank accounts and the
  public records in the external-data directory) and train the attribution model
  (:func:`train_identity_model`: on the records plus every enterprise's own information).
- An enterprise user sees the records attached to its enterprise and the candidates to confirm
  (:func:`enterprise_records`), runs the matching (:func:`match_records`), confirms or rejects a
  record, sees its update requests (:func:`review`) and declares its financial figures.
- Saving the profile (:func:`after_profile_saved`) re-attributes the enterprise's records when
  a model is trained and resolves an open profile update request (the cascade and the
  re-evaluation of :func:`flowbureau.identity.freshness.apply_update`); declaring financial
  figures does the same for a financial request.
- Without a trained identity model nothing is attached automatically; the enterprise is told so
  (:class:`~flowbureau.service.providers.NotYetAvailableError` where a match is asked for).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.identity import attribution, freshness
from flowbureau.identity.model import IdentityModel, MatchInput, train_model
from flowbureau.identity.models import (
    EnterpriseFinancials,
    IdentityLink,
    IdentityRecord,
    UpdateRequest,
)
from flowbureau.identity.sources import LoadReport, load_bank_accounts, load_public_records
from flowbureau.service.consent import require_role
from flowbureau.service.context import ServiceContext
from flowbureau.service.models import Enterprise, Role
from flowbureau.service.principals import Principal
from flowbureau.service.profiles import get_own_enterprise
from flowbureau.service.providers import NotYetAvailableError

__all__ = [
    "after_profile_saved",
    "declare_financials",
    "enterprise_records",
    "external_dir",
    "load_sources",
    "match_records",
    "requests_history",
    "review",
    "review_all",
    "set_record_status",
    "train_identity_model",
]


def external_dir(context: ServiceContext) -> Path:
    """The external-data directory (the same one credit scoring reads)."""
    settings = context.settings
    return settings.scoring.external_dir or settings.data_dir / "external"


def load_sources(
    db: Session,
    *,
    context: ServiceContext,
    principal: Principal | None,
    now: datetime,
    directory: Path | None = None,
) -> LoadReport:
    """Load bank and public records (operators; ``principal`` None for the platform itself)."""
    if principal is not None:
        require_role(principal, Role.OPERATOR, action="loading identity records")
    from flowbureau.storage.warehouse import Warehouse

    settings = context.settings
    report = load_bank_accounts(
        db, warehouse=Warehouse(settings.warehouse_dir, settings.warehouse), now=now
    )
    public_dir = directory or external_dir(context)
    if public_dir.is_dir():
        public = load_public_records(db, directory=public_dir, vault=context.vault, now=now)
        for kind, count in public.added.items():
            report.added[kind] = report.added.get(kind, 0) + count
        for kind, count in public.refreshed.items():
            report.refreshed[kind] = report.refreshed.get(kind, 0) + count
    return report


def train_identity_model(
    db: Session, *, context: ServiceContext, principal: Principal | None, seed: int = 0
) -> IdentityModel:
    """Train and save a new attribution model on the records and the enterprises' entries."""
    if principal is not None:
        require_role(principal, Role.OPERATOR, action="training the identity model")
    records: list[MatchInput] = [
        attribution.record_input(r) for r in db.execute(sa.select(IdentityRecord)).scalars()
    ]
    entries = [
        attribution.enterprise_entry(e, context.vault)
        for e in db.execute(sa.select(Enterprise).where(Enterprise.name.is_not(None))).scalars()
    ]
    model = train_model(records + entries, seed=seed)
    model.save(context.identity_dir)
    return model


def _model_or_explain(context: ServiceContext) -> IdentityModel:
    model = context.identity_model()
    if model is None:
        raise NotYetAvailableError(
            "records cannot be matched yet: the platform has not trained its identity model"
        )
    return model


def match_records(
    db: Session,
    *,
    context: ServiceContext,
    principal: Principal,
    request_id: str | None,
    now: datetime,
) -> attribution.Attribution:
    """Match the caller's enterprise's information to the records the platform holds."""
    enterprise = get_own_enterprise(db, principal)
    result = attribution.attribute(
        db,
        enterprise=enterprise,
        model=_model_or_explain(context),
        vault=context.vault,
        settings=context.settings.identity,
        principal=principal,
        request_id=request_id,
        now=now,
    )
    freshness.review_enterprise(db, enterprise=enterprise, policy=context.freshness, now=now)
    return result


def enterprise_records(
    db: Session, *, principal: Principal
) -> list[tuple[IdentityLink, IdentityRecord]]:
    """The caller's enterprise's attached, candidate and rejected records."""
    enterprise = get_own_enterprise(db, principal)
    return [
        (link, record)
        for link, record in db.execute(
            sa.select(IdentityLink, IdentityRecord)
            .join(IdentityRecord, IdentityRecord.id == IdentityLink.record_id)
            .where(IdentityLink.enterprise_id == enterprise.id)
            .order_by(IdentityLink.status, IdentityRecord.record_type, IdentityRecord.id)
        ).all()
    ]


def set_record_status(
    db: Session,
    *,
    principal: Principal,
    link_id: str,
    confirm: bool,
    request_id: str | None,
    now: datetime,
) -> IdentityLink:
    """The enterprise confirms (attaches) or rejects one of its record links."""
    return attribution.set_link_status(
        db,
        enterprise=get_own_enterprise(db, principal),
        link_id=link_id,
        confirm=confirm,
        principal=principal,
        request_id=request_id,
        now=now,
    )


def review(
    db: Session, *, context: ServiceContext, principal: Principal, now: datetime
) -> list[UpdateRequest]:
    """Apply the freshness policy to the caller's enterprise; its open update requests."""
    enterprise = get_own_enterprise(db, principal)
    return freshness.review_enterprise(db, enterprise=enterprise, policy=context.freshness, now=now)


def review_all(
    db: Session, *, context: ServiceContext, principal: Principal | None, now: datetime
) -> int:
    """Apply the freshness policy to every enterprise (operators); open requests in all."""
    if principal is not None:
        require_role(principal, Role.OPERATOR, action="reviewing the freshness of records")
    opened = 0
    for enterprise in db.execute(sa.select(Enterprise).order_by(Enterprise.id)).scalars():
        opened += len(
            freshness.review_enterprise(
                db, enterprise=enterprise, policy=context.freshness, now=now
            )
        )
    return opened


def _reattribute(
    db: Session,
    context: ServiceContext,
    *,
    enterprise: Enterprise,
    principal: Principal,
    request_id: str | None,
    now: datetime,
) -> attribution.Attribution | None:
    model = context.identity_model()
    if model is None:
        return None
    return attribution.attribute(
        db,
        enterprise=enterprise,
        model=model,
        vault=context.vault,
        settings=context.settings.identity,
        principal=principal,
        request_id=request_id,
        now=now,
    )


def after_profile_saved(
    db: Session,
    *,
    context: ServiceContext,
    principal: Principal,
    enterprise: Enterprise,
    request_id: str | None,
    now: datetime,
) -> UpdateRequest | None:
    """Re-attribute the records and resolve an open profile update request (with its cascade)."""
    has_links = (
        db.execute(
            sa.select(IdentityLink.id).where(IdentityLink.enterprise_id == enterprise.id).limit(1)
        ).first()
        is not None
    )
    open_profile = any(r.kind == "profile" for r in freshness.open_requests(db, enterprise.id))
    if not has_links and not open_profile and context.identity_model() is None:
        return None
    return freshness.apply_update(
        db,
        enterprise=enterprise,
        kind="profile",
        principal=principal,
        policy=context.freshness,
        evaluator=context.evaluator(db),
        reattribute=lambda: _reattribute(
            db, context, enterprise=enterprise, principal=principal, request_id=request_id, now=now
        ),
        request_id=request_id,
        now=now,
    )


def declare_financials(
    db: Session,
    *,
    context: ServiceContext,
    principal: Principal,
    data: freshness.FinancialsData,
    request_id: str | None,
    now: datetime,
) -> tuple[EnterpriseFinancials, UpdateRequest | None]:
    """Declare financial figures; resolves an open financial update request (re-evaluating)."""
    enterprise = get_own_enterprise(db, principal)
    row = freshness.declare_financials(
        db, enterprise=enterprise, data=data, principal=principal, request_id=request_id, now=now
    )
    resolved = freshness.apply_update(
        db,
        enterprise=enterprise,
        kind="financial",
        principal=principal,
        policy=context.freshness,
        evaluator=context.evaluator(db),
        reattribute=None,
        request_id=request_id,
        now=now,
    )
    return row, resolved


def requests_history(db: Session, *, principal: Principal, limit: int) -> Sequence[UpdateRequest]:
    """The caller's enterprise's update requests, newest first (open and resolved)."""
    enterprise = get_own_enterprise(db, principal)
    return (
        db.execute(
            sa.select(UpdateRequest)
            .where(UpdateRequest.enterprise_id == enterprise.id)
            .order_by(UpdateRequest.created_at.desc(), UpdateRequest.id)
            .limit(limit)
        )
        .scalars()
        .all()
    )
