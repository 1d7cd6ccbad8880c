"""The open API for institutions: ``/v1/enterprises`` search, score, report, transactions.

Every route here calls :func:`flowbureau.service.consent.require_access` (or the search
variant) before reading, so each read is checked against role policy, a live matching consent
and the operation type, and is audited. The score, report and summary reads authenticate,
decide, audit and read in one synchronous unit of work
(:func:`~flowbureau.service.deps.authenticated_session`): one worker-thread hop per request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials

from flowbureau.errors import InputError
from flowbureau.service import consent
from flowbureau.service.context import ServiceContext
from flowbureau.service.deps import (
    BearerDep,
    ContextDep,
    CurrentPrincipal,
    NowDep,
    ProviderDep,
    RequestIdDep,
    SessionDep,
    authenticated_session,
)
from flowbureau.service.models import Operation, Purpose
from flowbureau.service.providers import (
    EnterpriseDataProvider,
    EnterpriseSummary,
    NotYetAvailableError,
    ReportView,
    ScoreView,
    TransactionsSummaryView,
)
from flowbureau.service.schemas import CreditCode, problem_responses

_View = TypeVar("_View")

router = APIRouter(tags=["open api"], responses=problem_responses(401, 403, 422, 429))

CreditCodePath = Annotated[CreditCode, Path(description="Unified social credit code.")]
PurposeQuery = Annotated[
    Purpose | None,
    Query(description="Why the institution looks (required for institutions)."),
]
AsOfQuery = Annotated[
    date | None, Query(description="The date the answer is as of (default: today).")
]


def _resource(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _as_of(as_of: date | None, today: date) -> date:
    if as_of is None:
        return today
    if as_of > today:
        raise InputError(f"as_of {as_of} is in the future", field="as_of")
    return as_of


@router.get("/v1/enterprises")
def search_enterprises(
    *,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    provider: ProviderDep,
    request_id: RequestIdDep,
    now: NowDep,
    q: Annotated[str, Query(min_length=1, max_length=100, description="Name or code part.")],
    purpose: PurposeQuery = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[EnterpriseSummary]:
    """Enterprises matching ``q`` among those the caller may see (consented, or its own)."""
    return list(
        consent.search_enterprises(
            session,
            principal=principal,
            q=q,
            purpose=purpose,
            provider=provider,
            limit=limit,
            resource=_resource(request),
            request_id=request_id,
            now=now,
        )
    )


def _consented_read(
    read: Callable[[EnterpriseDataProvider, date], _View | None],
    *,
    operation: Operation,
    credit_code: str,
    request: Request,
    context: ServiceContext,
    credentials: HTTPAuthorizationCredentials | None,
    request_id: str | None,
    now: datetime,
    purpose: Purpose | None,
    as_of: date | None,
) -> tuple[_View | None, date]:
    """Authenticate, decide and audit access for ``operation``, then ``read`` as of the day."""
    with authenticated_session(context, credentials, now) as (session, principal):
        day = _as_of(as_of, now.date())
        consent.require_access(
            session,
            principal=principal,
            credit_code=credit_code,
            operation=operation,
            purpose=purpose,
            resource=_resource(request),
            request_id=request_id,
            now=now,
        )
        return read(context.provider_factory(session), day), day


@router.get("/v1/enterprises/{credit_code}/score", responses=problem_responses(404))
def get_score(
    *,
    credit_code: CreditCodePath,
    request: Request,
    context: ContextDep,
    credentials: BearerDep,
    request_id: RequestIdDep,
    now: NowDep,
    purpose: PurposeQuery = None,
    as_of: AsOfQuery = None,
) -> ScoreView:
    """PD, score, grade, reasons and model version (consent must cover view_score)."""
    score, day = _consented_read(
        lambda provider, day: provider.score(credit_code, day),
        operation=Operation.VIEW_SCORE,
        credit_code=credit_code,
        request=request,
        context=context,
        credentials=credentials,
        request_id=request_id,
        now=now,
        purpose=purpose,
        as_of=as_of,
    )
    if score is None:
        raise NotYetAvailableError(
            f"no score for {credit_code} as of {day} yet: no credit model has scored it"
        )
    return score


@router.get("/v1/enterprises/{credit_code}/report", responses=problem_responses(404))
def get_report(
    *,
    credit_code: CreditCodePath,
    request: Request,
    context: ContextDep,
    credentials: BearerDep,
    request_id: RequestIdDep,
    now: NowDep,
    purpose: PurposeQuery = None,
    as_of: AsOfQuery = None,
) -> ReportView:
    """The credit report as JSON (consent must cover view_report)."""
    report, _ = _consented_read(
        lambda provider, day: provider.report(credit_code, day),
        operation=Operation.VIEW_REPORT,
        credit_code=credit_code,
        request=request,
        context=context,
        credentials=credentials,
        request_id=request_id,
        now=now,
        purpose=purpose,
        as_of=as_of,
    )
    if report is None:
        raise NotYetAvailableError(f"no report for {credit_code} yet")
    return report


@router.get("/v1/enterprises/{credit_code}/transactions/summary", responses=problem_responses(404))
def get_transactions_summary(
    *,
    credit_code: CreditCodePath,
    request: Request,
    context: ContextDep,
    credentials: BearerDep,
    request_id: RequestIdDep,
    now: NowDep,
    purpose: PurposeQuery = None,
    as_of: AsOfQuery = None,
) -> TransactionsSummaryView:
    """Transaction totals up to ``as_of`` (consent must cover view_transactions)."""
    summary, day = _consented_read(
        lambda provider, day: provider.transactions_summary(credit_code, day),
        operation=Operation.VIEW_TRANSACTIONS,
        credit_code=credit_code,
        request=request,
        context=context,
        credentials=credentials,
        request_id=request_id,
        now=now,
        purpose=purpose,
        as_of=as_of,
    )
    if summary is None:
        raise NotYetAvailableError(
            f"no transactions of {credit_code} up to {day}: no bank has contributed them yet"
        )
    return summary
