"""``/v1/consents``: an enterprise grants, lists and revokes consents; institutions list theirs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response

from flowbureau.service import consent
from flowbureau.service.deps import (
    ContextDep,
    CurrentPrincipal,
    IdempotencyDep,
    NowDep,
    RequestIdDep,
    SessionDep,
)
from flowbureau.service.pagination import DEFAULT_LIMIT, MAX_LIMIT, page, time_id_cursor
from flowbureau.service.schemas import ConsentCreate, ConsentPublic, Page, problem_responses

router = APIRouter(tags=["consents"], responses=problem_responses(401, 403, 429))


@router.post(
    "/v1/consents",
    status_code=201,
    response_model=ConsentPublic,
    responses=problem_responses(404, 422),
)
def grant_consent(
    *,
    body: ConsentCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    idempotency: IdempotencyDep,
    request_id: RequestIdDep,
    now: NowDep,
) -> Response:
    """Let an institution perform some operations for one purpose until ``expires_at``."""

    def grant() -> ConsentPublic:
        granted = consent.grant_consent(
            session,
            principal=principal,
            institution_id=body.institution_id,
            purpose=body.purpose,
            scopes=body.scopes,
            expires_at=body.expires_at,
            max_days=context.settings.service.consent_max_days,
            request_id=request_id,
            now=now,
        )
        return consent.consent_view(session, granted, now)

    return idempotency.respond(
        scope=principal.idempotency_scope, status_code=201, request_body=body, produce=grant
    )


@router.get("/v1/consents", responses=problem_responses(422))
def list_consents(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    now: NowDep,
    status: Literal["live", "expired", "revoked"] | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> Page[ConsentPublic]:
    """Enterprises: their consents; institutions: those given to them; auditors: all."""
    rows = consent.list_consents(
        session,
        principal=principal,
        status=status,
        after=time_id_cursor(cursor),
        limit=limit + 1,
        now=now,
    )
    items, next_cursor = page(rows, limit, lambda c: (c.created_at.isoformat(), c.id))
    return Page[ConsentPublic](
        items=[consent.consent_view(session, c, now) for c in items], next_cursor=next_cursor
    )


@router.delete("/v1/consents/{consent_id}", status_code=204, responses=problem_responses(404))
def revoke_consent(
    *,
    consent_id: Annotated[str, Path(min_length=1, max_length=36)],
    principal: CurrentPrincipal,
    session: SessionDep,
    request_id: RequestIdDep,
    now: NowDep,
) -> Response:
    """Revoke a consent at once: the institution's next read is refused."""
    consent.revoke_consent(
        session, principal=principal, consent_id=consent_id, request_id=request_id, now=now
    )
    return Response(status_code=204)
