"""``/v1/enterprise/profile``: the enterprise user's own enterprise information."""

from __future__ import annotations

from fastapi import APIRouter

from flowbureau.service import profiles, records
from flowbureau.service.deps import (
    ContextDep,
    CurrentPrincipal,
    NowDep,
    RequestIdDep,
    SessionDep,
)
from flowbureau.service.schemas import ProfilePublic, ProfileUpdate, problem_responses

router = APIRouter(tags=["enterprise"], responses=problem_responses(401, 403, 429))


@router.get("/v1/enterprise/profile")
def get_profile(
    *, principal: CurrentPrincipal, session: SessionDep, context: ContextDep
) -> ProfilePublic:
    """The caller's enterprise information and the fields still missing."""
    enterprise = profiles.get_own_enterprise(session, principal)
    return profiles.profile_public(enterprise, context.vault)


@router.put("/v1/enterprise/profile", responses=problem_responses(409, 422))
def put_profile(
    *,
    body: ProfileUpdate,
    principal: CurrentPrincipal,
    session: SessionDep,
    context: ContextDep,
    request_id: RequestIdDep,
    now: NowDep,
) -> ProfilePublic:
    """Replace the caller's enterprise information (absent fields become empty); the records
    matched to the enterprise are re-attributed and an open profile update request resolved."""
    enterprise = profiles.replace_profile(
        session,
        principal=principal,
        update=body,
        vault=context.vault,
        pseudonym_key=context.settings.pseudonym_key.get_secret_value().encode("utf-8"),
        request_id=request_id,
        now=now,
    )
    records.after_profile_saved(
        session,
        context=context,
        principal=principal,
        enterprise=enterprise,
        request_id=request_id,
        now=now,
    )
    return profiles.profile_public(enterprise, context.vault)
