"""Property-based API tests with schemathesis: requests generated from the OpenAPI schema, sent
with an enterprise user's token and with an institution's API key, never get a server error,
and every answer matches the documented status codes, content types and schemas."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from service_helpers import CODE_A, Api, bearer, build_api

from flowbureau.service import accounts, apikeys
from flowbureau.service.models import Operation
from flowbureau.storage.database import session_scope

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[tuple[Api, list[dict[str, str]]]]:
    """The service with an enterprise (complete profile, consent to a bank) and a bank key."""
    for api in build_api(tmp_path, scored={CODE_A}):
        owner = api.enterprise("13800138000", CODE_A)
        with session_scope(api.context.sessions) as db:
            bank = accounts.create_institution(db, name="Bank", now=api.clock())
            _row, key = apikeys.create_api_key(
                db, institution_id=bank.id, scopes=list(Operation), now=api.clock()
            )
        granted = api.client.post(
            "/v1/consents",
            json={
                "institution_id": bank.id,
                "purpose": "pre_loan_review",
                "scopes": ["view_score", "view_report"],
                "expires_at": (api.clock() + timedelta(days=30)).isoformat(),
            },
            headers=owner,
        )
        assert granted.status_code == 201
        yield api, [owner, bearer(key)]


@pytest.mark.slow
def test_no_server_errors_and_answers_match_the_schema(
    fuzzed: tuple[Api, list[dict[str, str]]],
) -> None:
    api, credentials = fuzzed
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 23  # every route of phase 1 is fuzzed
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=5,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.generate],
            )
            def run(case: Any) -> None:
                for headers in credentials:
                    case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                # nothing to get wrong: an operation without parameters or body has no
                # negative (invalid) requests
                assert mode is GenerationMode.NEGATIVE
