"""``/v1/applications``: credit evaluation applications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from flowbureau.service import applications
from flowbureau.service.deps import (
    CurrentPrincipal,
    EvaluatorDep,
    IdempotencyDep,
    NowDep,
    RequestIdDep,
    SessionDep,
)
from flowbureau.service.models import Purpose
from flowbureau.service.pagination import DEFAULT_LIMIT, MAX_LIMIT, page, time_id_cursor
from flowbureau.service.schemas import (
    ApplicationCreate,
    ApplicationPublic,
    Page,
    problem_responses,
)

router = APIRouter(tags=["applications"], responses=problem_responses(401, 403, 429))

ApplicationId = Annotated[str, Path(min_length=1, max_length=36)]


@router.post(
    "/v1/applications",
    status_code=201,
    response_model=ApplicationPublic,
    responses=problem_responses(409, 422),
)
def create_application(
    *,
    body: ApplicationCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    evaluator: EvaluatorDep,
    idempotency: IdempotencyDep,
    request_id: RequestIdDep,
    now: NowDep,
) -> Response:
    """Apply for a credit evaluation; 422 with ``missing_fields`` while information is missing."""

    def create() -> ApplicationPublic:
        application = applications.create_application(
            session,
            principal=principal,
            data=body,
            evaluator=evaluator,
            request_id=request_id,
            now=now,
        )
        return applications.application_view(session, application)

    return idempotency.respond(
        scope=principal.idempotency_scope, status_code=201, request_body=body, produce=create
    )


@router.post(
    "/v1/applications/{application_id}/submit",
    response_model=ApplicationPublic,
    responses=problem_responses(404, 409, 422),
)
def submit_application(
    *,
    application_id: ApplicationId,
    principal: CurrentPrincipal,
    session: SessionDep,
    evaluator: EvaluatorDep,
    idempotency: IdempotencyDep,
    request_id: RequestIdDep,
    now: NowDep,
) -> Response:
    """Submit a draft (or ask again for the evaluation of a submitted application)."""

    def submit() -> ApplicationPublic:
        application = applications.submit_application(
            session,
            principal=principal,
            application_id=application_id,
            evaluator=evaluator,
            request_id=request_id,
            now=now,
        )
        return applications.application_view(session, application)

    return idempotency.respond(
        scope=principal.idempotency_scope, status_code=200, request_body=None, produce=submit
    )


@router.get("/v1/applications", responses=problem_responses(422))
def list_applications(
    *,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> Page[ApplicationPublic]:
    """The caller's enterprise's applications, oldest first."""
    rows = applications.list_applications(
        session, principal=principal, after=time_id_cursor(cursor), limit=limit + 1
    )
    items, next_cursor = page(rows, limit, lambda a: (a.created_at.isoformat(), a.id))
    return Page[ApplicationPublic](
        items=[applications.application_view(session, a) for a in items],
        next_cursor=next_cursor,
    )


@router.get("/v1/applications/{application_id}", responses=problem_responses(404, 422))
def get_application(
    *,
    application_id: ApplicationId,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    request_id: RequestIdDep,
    now: NowDep,
    purpose: Annotated[
        Purpose | None, Query(description="Required for institutions: why they look.")
    ] = None,
) -> ApplicationPublic:
    """One application; institutions need a live consent covering view_score."""
    return applications.view_application(
        session,
        principal=principal,
        application_id=application_id,
        purpose=purpose,
        resource=str(request.url.path),
        request_id=request_id,
        now=now,
    )
