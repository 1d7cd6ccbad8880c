"""The open API for institutions: ``/v1/enterprises`` search, score, report, transactions.

Every route here calls :func:`flowbureau.service.consent.require_access` (or the search
variant) before reading, so each read is checked against role policy, a live matching consent
and the operation type, and is audited. The score, report and summary reads authenticate,
decide, audit and read in one synchronous function on one pooled connection
(:func:`~flowbureau.service.deps.read_connection`): one worker-thread hop per request, the API
key and the consents in one query, the view serialised once (``docs/service.md#performance``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel

from flowbureau.errors import InputError
from flowbureau.service import consent
from flowbureau.service.context import ServiceContext
from flowbureau.service.deps import (
    BearerDep,
    CurrentPrincipal,
    NowDep,
    ProviderDep,
    RequestIdDep,
    SessionDep,
    authenticate_for_read,
    read_connection,
    session_on,
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
    read: Callable[[EnterpriseDataProvider, date], BaseModel | None],
    *,
    operation: Operation,
    credit_code: str,
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    purpose: Purpose | None,
    as_of: date | None,
    missing: Callable[[date], str],
) -> Response:
    """Authenticate, decide and audit access for ``operation``, then ``read`` as of the day.

    One worker-thread hop and one pooled connection per request; the view is serialised once
    by pydantic (the route's ``response_model`` documents it; FastAPI does not validate a
    returned ``Response`` again). ``missing(day)`` says why there is nothing when ``read``
    finds nothing (404).
    """
    context: ServiceContext = request.app.state.context
    request_id: str | None = getattr(request.state, "request_id", None)
    now = context.clock()
    with read_connection(context) as connection:
        principal, lookup = authenticate_for_read(
            connection, credentials, context, now, credit_code=credit_code
        )
        day = _as_of(as_of, now.date())
        consent.require_access(
            connection,
            principal=principal,
            credit_code=credit_code,
            operation=operation,
            purpose=purpose,
            resource=_resource(request),
            request_id=request_id,
            now=now,
            lookup=lookup,
        )
        with session_on(context, connection) as session:
            view = read(context.provider_factory(session), day)
    if view is None:
        raise NotYetAvailableError(missing(day))
    return Response(view.model_dump_json(by_alias=True), media_type="application/json")


@router.get(
    "/v1/enterprises/{credit_code}/score",
    response_model=ScoreView,
    responses=problem_responses(404),
)
def get_score(
    *,
    credit_code: CreditCodePath,
    request: Request,
    credentials: BearerDep,
    purpose: PurposeQuery = None,
    as_of: AsOfQuery = None,
) -> Response:
    """PD, score, grade, reasons and model version (consent must cover view_score)."""
    return _consented_read(
        lambda provider, day: provider.score(credit_code, day),
        operation=Operation.VIEW_SCORE,
        credit_code=credit_code,
        request=request,
        credentials=credentials,
        purpose=purpose,
        as_of=as_of,
        missing=lambda day: (
            f"no score for {credit_code} as of {day} yet: no credit model has scored it"
        ),
    )


@router.get(
    "/v1/enterprises/{credit_code}/report",
    response_model=ReportView,
    responses=problem_responses(404),
)
def get_report(
    *,
    credit_code: CreditCodePath,
    request: Request,
    credentials: BearerDep,
    purpose: PurposeQuery = None,
    as_of: AsOfQuery = None,
) -> Response:
    """The credit report as JSON (consent must cover view_report)."""
    return _consented_read(
        lambda provider, day: provider.report(credit_code, day),
        operation=Operation.VIEW_REPORT,
        credit_code=credit_code,
        request=request,
        credentials=credentials,
        purpose=purpose,
        as_of=as_of,
        missing=lambda _day: f"no report for {credit_code} yet",
    )


@router.get(
    "/v1/enterprises/{credit_code}/transactions/summary",
    response_model=TransactionsSummaryView,
    responses=problem_responses(404),
)
def get_transactions_summary(
    *,
    credit_code: CreditCodePath,
    request: Request,
    credentials: BearerDep,
    purpose: PurposeQuery = None,
    as_of: AsOfQuery = None,
) -> Response:
    """Transaction totals up to ``as_of`` (consent must cover view_transactions)."""
    return _consented_read(
        lambda provider, day: provider.transactions_summary(credit_code, day),
        operation=Operation.VIEW_TRANSACTIONS,
        credit_code=credit_code,
        request=request,
        credentials=credentials,
        purpose=purpose,
        as_of=as_of,
        missing=lambda day: (
            f"no transactions of {credit_code} up to {day}: no bank has contributed them yet"
        ),
    )
