"""``/v1/enterprises/{code}/transactions/{tx_id}/feedback``: analysts judge flagged entries."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from flowbureau.service import feedback
from flowbureau.service.deps import ContextDep, CurrentPrincipal, NowDep, RequestIdDep, SessionDep
from flowbureau.service.models import Purpose
from flowbureau.service.schemas import CreditCode, problem_responses

router = APIRouter(tags=["anomalies"], responses=problem_responses(401, 403, 404, 409, 422, 429))


class FeedbackCreate(BaseModel):
    """An analyst's verdict on a flagged entry."""

    verdict: Literal["confirm", "reject", "label"] = Field(
        description="confirm the flag (accepting its correction), reject it (reverting the "
        "correction, labelling the entry normal), or set a label."
    )
    label: str | None = Field(
        default=None, max_length=40, description="For verdict label: an anomaly type or normal."
    )
    note: str | None = Field(default=None, max_length=500)


@router.post("/v1/enterprises/{credit_code}/transactions/{tx_id}/feedback", status_code=201)
def give_feedback(
    *,
    credit_code: Annotated[CreditCode, Path()],
    tx_id: Annotated[str, Path(min_length=1, max_length=64)],
    body: FeedbackCreate,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    request_id: RequestIdDep,
    now: NowDep,
    purpose: Annotated[
        Purpose | None, Query(description="Required for analysts: why they look.")
    ] = None,
) -> dict[str, Any]:
    """Confirm, reject or label a flagged entry (analysts under a consent covering
    view_transactions, or operators); the label feeds the next training."""
    return feedback.give_feedback(
        session,
        context=context,
        principal=principal,
        credit_code=credit_code,
        tx_id=tx_id,
        verdict=body.verdict,
        label=body.label,
        note=body.note,
        purpose=purpose,
        resource=request.url.path,
        request_id=request_id,
        now=now,
    )
