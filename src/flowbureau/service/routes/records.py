"""The enterprise's records (identity resolution), update requests and financial figures;
operators' loading of sources, model training and freshness review."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from flowbureau.identity.freshness import FinancialsData, latest_financials
from flowbureau.identity.models import EnterpriseFinancials, IdentityLink, IdentityRecord
from flowbureau.schema import format_minor
from flowbureau.service import records
from flowbureau.service.deps import ContextDep, CurrentPrincipal, NowDep, RequestIdDep, SessionDep
from flowbureau.service.profiles import get_own_enterprise
from flowbureau.service.schemas import (
    AttributionPublic,
    FinancialsCreate,
    FinancialsDeclared,
    FinancialsPublic,
    IdentityModelPublic,
    LoadReportPublic,
    Money,
    RecordLinkPublic,
    SignedMoney,
    UpdateRequestPublic,
    problem_responses,
)

router = APIRouter(tags=["records"], responses=problem_responses(401, 403, 429))

LinkId = Annotated[str, Path(min_length=1, max_length=36)]


def record_link_public(link: IdentityLink, record: IdentityRecord) -> RecordLinkPublic:
    """The API view of a record matched to the enterprise."""
    return RecordLinkPublic(
        id=link.id,
        status=link.status,
        probability=link.probability,
        record_type=record.record_type,
        source=record.source,
        name=record.name,
        credit_code=record.credit_code,
        record_date=record.record_date,
        details=dict(record.details),
        verified_at=link.verified_at,
        stale=link.invalid_since is not None,
        invalid_reason=link.invalid_reason,
    )


def financials_public(row: EnterpriseFinancials) -> FinancialsPublic:
    """The API view of a declaration of financial figures."""

    def money(minor: int) -> Money:
        return Money(amount=format_minor(minor, row.currency), currency=row.currency)

    return FinancialsPublic(
        id=row.id,
        period_end=row.period_end,
        revenue=money(row.revenue_minor),
        total_assets=money(row.total_assets_minor),
        total_liabilities=money(row.total_liabilities_minor),
        net_profit=SignedMoney(
            amount=format_minor(row.net_profit_minor, row.currency),
            currency=row.currency,
        ),
        declared_at=row.declared_at,
    )


@router.get("/v1/enterprise/records")
def list_records(principal: CurrentPrincipal, session: SessionDep) -> list[RecordLinkPublic]:
    """Records matched to the caller's enterprise: attached, to confirm, rejected."""
    return [
        record_link_public(link, record)
        for link, record in records.enterprise_records(session, principal=principal)
    ]


@router.post("/v1/enterprise/records/match", responses=problem_responses(404))
def match_records(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    request_id: RequestIdDep,
    now: NowDep,
) -> AttributionPublic:
    """Match the enterprise's information to the records the platform holds."""
    result = records.match_records(
        session, context=context, principal=principal, request_id=request_id, now=now
    )
    return AttributionPublic(
        model_version=result.model_version,
        scored=result.scored,
        attached=result.attached,
        candidates=result.candidates,
    )


@router.post("/v1/enterprise/records/{link_id}/confirm", responses=problem_responses(404))
def confirm_record(
    *,
    link_id: LinkId,
    principal: CurrentPrincipal,
    session: SessionDep,
    request_id: RequestIdDep,
    now: NowDep,
) -> RecordLinkPublic:
    """This record is the enterprise's: attach it."""
    link = records.set_record_status(
        session, principal=principal, link_id=link_id, confirm=True, request_id=request_id, now=now
    )
    return record_link_public(link, session.get_one(IdentityRecord, link.record_id))


@router.post("/v1/enterprise/records/{link_id}/reject", responses=problem_responses(404))
def reject_record(
    *,
    link_id: LinkId,
    principal: CurrentPrincipal,
    session: SessionDep,
    request_id: RequestIdDep,
    now: NowDep,
) -> RecordLinkPublic:
    """This record is not the enterprise's: never attach it automatically."""
    link = records.set_record_status(
        session, principal=principal, link_id=link_id, confirm=False, request_id=request_id, now=now
    )
    return record_link_public(link, session.get_one(IdentityRecord, link.record_id))


@router.get("/v1/enterprise/update-requests", responses=problem_responses(422))
def list_update_requests(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    now: NowDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[UpdateRequestPublic]:
    """Update requests of the enterprise, newest first (the freshness policy is applied first)."""
    records.review(session, context=context, principal=principal, now=now)
    return [
        UpdateRequestPublic.model_validate(r)
        for r in records.requests_history(session, principal=principal, limit=limit)
    ]


@router.get("/v1/enterprise/financials", responses=problem_responses(404))
def get_financials(principal: CurrentPrincipal, session: SessionDep) -> FinancialsPublic | None:
    """The latest declaration of financial figures (null when none)."""
    enterprise = get_own_enterprise(session, principal)
    row = latest_financials(session, enterprise.id)
    return None if row is None else financials_public(row)


@router.post("/v1/enterprise/financials", status_code=201, responses=problem_responses(422))
def declare_financials(
    *,
    body: FinancialsCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    request_id: RequestIdDep,
    now: NowDep,
) -> FinancialsDeclared:
    """Declare key financial figures; resolves an open financial update request."""
    row, resolved = records.declare_financials(
        session,
        context=context,
        principal=principal,
        data=FinancialsData(
            period_end=body.period_end,
            currency=body.revenue.currency,
            revenue_minor=body.revenue.minor,
            total_assets_minor=body.total_assets.minor,
            total_liabilities_minor=body.total_liabilities.minor,
            net_profit_minor=body.net_profit.minor,
        ),
        request_id=request_id,
        now=now,
    )
    return FinancialsDeclared(
        financials=financials_public(row),
        resolved_request=None if resolved is None else UpdateRequestPublic.model_validate(resolved),
    )


@router.post("/v1/identity/sources")
def load_sources(
    principal: CurrentPrincipal, session: SessionDep, context: ContextDep, now: NowDep
) -> LoadReportPublic:
    """Operators: load bank accounts (warehouse) and public records (external-data directory)."""
    report = records.load_sources(session, context=context, principal=principal, now=now)
    return LoadReportPublic(added=report.added, refreshed=report.refreshed)


@router.post("/v1/identity/model", status_code=201, responses=problem_responses(422))
def train_identity_model(
    principal: CurrentPrincipal, session: SessionDep, context: ContextDep
) -> IdentityModelPublic:
    """Operators: train and save a new attribution model."""
    model = records.train_identity_model(session, context=context, principal=principal)
    return IdentityModelPublic(
        version=model.version,
        trained_at=str(model.manifest["trained_at"]),
        records=int(model.manifest["records"]),
    )


@router.post("/v1/identity/freshness-review")
def review_freshness(
    principal: CurrentPrincipal, session: SessionDep, context: ContextDep, now: NowDep
) -> dict[str, int]:
    """Operators: apply the freshness policy to every enterprise."""
    return {
        "open_requests": records.review_all(session, context=context, principal=principal, now=now)
    }
