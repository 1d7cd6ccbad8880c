"""``/v1/audit``: the audit log and its verification, for auditors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from flowbureau.service import audit
from flowbureau.service.consent import require_role
from flowbureau.service.deps import CurrentPrincipal, SessionDep
from flowbureau.service.models import Role
from flowbureau.service.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, page
from flowbureau.service.schemas import (
    AuditEntryPublic,
    AuditVerificationPublic,
    Page,
    problem_responses,
)

router = APIRouter(tags=["audit"], responses=problem_responses(401, 403, 429))


@router.get("/v1/audit", responses=problem_responses(422))
def list_audit(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    credit_code: Annotated[str | None, Query(max_length=18)] = None,
    actor_id: Annotated[str | None, Query(max_length=36)] = None,
    institution_id: Annotated[str | None, Query(max_length=36)] = None,
    operation: Annotated[str | None, Query(max_length=32)] = None,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> Page[AuditEntryPublic]:
    """Who saw what and why, newest first; filter by enterprise, actor, operation, outcome."""
    require_role(principal, Role.AUDITOR, action="reading the audit log")
    before = None if cursor is None else int(decode_cursor(cursor, int)[0])
    rows = audit.list_entries(
        session,
        before_seq=before,
        limit=limit + 1,
        credit_code=credit_code,
        actor_id=actor_id,
        institution_id=institution_id,
        operation=operation,
        outcome=outcome,
    )
    items, next_cursor = page(rows, limit, lambda e: (e.seq,))
    return Page[AuditEntryPublic](
        items=[AuditEntryPublic.model_validate(e) for e in items], next_cursor=next_cursor
    )


@router.get("/v1/audit/verification")
def verify_audit(principal: CurrentPrincipal, session: SessionDep) -> AuditVerificationPublic:
    """Recompute the hash chain; names the first broken row if any."""
    require_role(principal, Role.AUDITOR, action="verifying the audit log")
    result = audit.verify(session)
    return AuditVerificationPublic(
        ok=result.ok,
        rows=result.rows,
        head_seq=result.head_seq,
        broken_seq=result.broken_seq,
        problem=result.problem,
    )
