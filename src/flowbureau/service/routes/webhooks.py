"""``/v1/webhooks``: an institution's endpoints for signed grade-change notifications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from flowbureau.service import webhooks
from flowbureau.service.deps import ContextDep, CurrentPrincipal, NowDep, SessionDep
from flowbureau.service.schemas import (
    WebhookDeliveryPublic,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointPublic,
    problem_responses,
)

router = APIRouter(tags=["webhooks"], responses=problem_responses(401, 403, 429))

EndpointId = Annotated[str, Path(min_length=1, max_length=36)]


@router.post("/v1/webhooks", status_code=201, responses=problem_responses(422))
def create_webhook(
    *,
    body: WebhookEndpointCreate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    now: NowDep,
) -> WebhookEndpointCreated:
    """Register an endpoint; the answer carries its signing secret, shown this once."""
    endpoint, secret = webhooks.create_endpoint(
        session,
        principal=principal,
        url=body.url,
        events=body.events,
        vault=context.vault,
        production=context.settings.env == "production",
        now=now,
    )
    public = WebhookEndpointPublic.model_validate(endpoint)
    return WebhookEndpointCreated(**public.model_dump(), secret=secret)


@router.get("/v1/webhooks")
def list_webhooks(principal: CurrentPrincipal, session: SessionDep) -> list[WebhookEndpointPublic]:
    """The institution's endpoints, newest first."""
    return [
        WebhookEndpointPublic.model_validate(e)
        for e in webhooks.list_endpoints(session, principal=principal)
    ]


@router.delete("/v1/webhooks/{endpoint_id}", status_code=204, responses=problem_responses(404))
def disable_webhook(
    endpoint_id: EndpointId, principal: CurrentPrincipal, session: SessionDep, now: NowDep
) -> Response:
    """Stop notifying this endpoint (pending deliveries are cancelled)."""
    webhooks.disable_endpoint(session, principal=principal, endpoint_id=endpoint_id, now=now)
    return Response(status_code=204)


@router.get("/v1/webhooks/{endpoint_id}/deliveries", responses=problem_responses(404, 422))
def list_webhook_deliveries(
    *,
    endpoint_id: EndpointId,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[WebhookDeliveryPublic]:
    """Recent deliveries to the endpoint: status, attempts, last answer."""
    return [
        WebhookDeliveryPublic.model_validate(d)
        for d in webhooks.list_deliveries(
            session, principal=principal, endpoint_id=endpoint_id, limit=limit
        )
    ]
