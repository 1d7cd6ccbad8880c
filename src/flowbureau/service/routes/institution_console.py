"""The institution console: search among consenting enterprises, and an enterprise's dashboard.

Each panel of the dashboard is one operation under the enterprise's consent, checked and
audited by :func:`flowbureau.service.consent.require_access` like the open API: the score with
its reasons and similar cases (``view_score``), the cash-flow charts (``view_transactions``),
the report's registration facts and public records (``view_report``). Without a live consent
covering ``view_score`` for the stated purpose the page is refused with the reason; a panel the
consent does not cover says so.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from flowbureau.errors import PermissionDeniedError
from flowbureau.service import consent
from flowbureau.service.console import Console, ConsoleDep, cashflow_chart, gauge_chart
from flowbureau.service.models import Operation, Purpose, Role
from flowbureau.service.schemas import CreditCode

router = APIRouter(include_in_schema=False)


@router.get("/console/institution")
def search(
    console: ConsoleDep,
    q: Annotated[str | None, Query(max_length=100)] = None,
    purpose: Annotated[Purpose, Query()] = Purpose.PRE_LOAN_REVIEW,
) -> Response:
    """Search the enterprises that consented to this institution; list the live consents."""
    principal = console.require(Role.ANALYST)
    provider = console.context.provider_factory(console.db)
    results = None
    if q and q.strip():
        results = consent.search_enterprises(
            console.db,
            principal=principal,
            q=q.strip(),
            purpose=purpose,
            provider=provider,
            limit=50,
            resource=console.request.url.path + f"?q={q.strip()}",
            request_id=None,
            now=console.now,
        )
    live = consent.list_consents(
        console.db, principal=principal, status="live", after=None, limit=100, now=console.now
    )
    return console.page(
        "institution/search.html",
        q=q or "",
        purpose=purpose,
        purposes=list(Purpose),
        results=results,
        consents=[consent.consent_view(console.db, c, console.now) for c in live],
    )


def _panel(
    console: Console, code: str, operation: Operation, purpose: Purpose
) -> tuple[bool, str | None]:
    try:
        consent.require_access(
            console.db,
            principal=console.require(Role.ANALYST),
            credit_code=code,
            operation=operation,
            purpose=purpose,
            resource=f"{console.request.url.path}#{operation.value}",
            request_id=None,
            now=console.now,
        )
    except PermissionDeniedError as exc:
        return False, str(exc)
    return True, None


@router.get("/console/institution/enterprises/{credit_code}")
def dashboard(
    credit_code: Annotated[CreditCode, Path()],
    console: ConsoleDep,
    purpose: Annotated[Purpose, Query()] = Purpose.PRE_LOAN_REVIEW,
) -> Response:
    """Score gauge, grade, reasons, similar cases, cash flows and public records."""
    principal = console.require(Role.ANALYST)
    consent.require_access(  # the page itself needs view_score; refused with the reason
        console.db,
        principal=principal,
        credit_code=credit_code,
        operation=Operation.VIEW_SCORE,
        purpose=purpose,
        resource=console.request.url.path,
        request_id=None,
        now=console.now,
    )
    today = console.now.date()
    provider = console.context.provider_factory(console.db)
    score = provider.score(credit_code, today)
    panels: dict[str, Any] = {
        "score": score,
        "gauge": None if score is None else gauge_chart(score, console.t),
    }
    allowed, reason = _panel(console, credit_code, Operation.VIEW_TRANSACTIONS, purpose)
    panels["transactions_denied"] = reason
    summary = provider.transactions_summary(credit_code, today) if allowed else None
    panels["summary"] = summary
    panels["cashflow"] = (
        cashflow_chart(summary.monthly, console.context.settings.scoring.currency, console.t)
        if summary is not None and summary.monthly
        else None
    )
    allowed, reason = _panel(console, credit_code, Operation.VIEW_REPORT, purpose)
    panels["report_denied"] = reason
    panels["report"] = provider.report(credit_code, today) if allowed else None
    return console.page(
        "institution/enterprise.html",
        credit_code=credit_code,
        purpose=purpose,
        panels=panels,
    )
