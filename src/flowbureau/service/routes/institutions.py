"""``/v1/institutions``: the institutions an enterprise can give consent to."""

from __future__ import annotations

from fastapi import APIRouter

from flowbureau.service import accounts
from flowbureau.service.deps import CurrentPrincipal, SessionDep
from flowbureau.service.schemas import InstitutionPublic, problem_responses

router = APIRouter(tags=["institutions"], responses=problem_responses(401, 429))


@router.get("/v1/institutions")
def list_institutions(principal: CurrentPrincipal, session: SessionDep) -> list[InstitutionPublic]:
    """All institutions (id and name), for choosing whom to give consent to."""
    return [InstitutionPublic.model_validate(i) for i in accounts.list_institutions(session)]
