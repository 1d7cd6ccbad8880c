"""Enterprise information, applications, consents: validation, states, idempotency, paging."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from service_helpers import CODE_A, CODE_B, Api, bearer, complete_profile

from flowbureau.cleaning.identifiers import account_pseudonym
from flowbureau.service import accounts
from flowbureau.service.applications import NO_MODEL_REASON
from flowbureau.service.idempotency import IdempotencyKey
from flowbureau.service.models import BankAccount
from flowbureau.storage.database import session_scope

PHONE = "13800138000"


def _bank(api: Api, name: str = "Bank") -> str:
    with session_scope(api.context.sessions) as db:
        return accounts.create_institution(db, name=name, now=api.clock()).id


def _consent_body(api: Api, bank_id: str, **over: Any) -> dict[str, Any]:
    return {
        "institution_id": bank_id,
        "purpose": "pre_loan_review",
        "scopes": ["view_score"],
        "expires_at": (api.clock() + timedelta(days=30)).isoformat(),
    } | over


def test_profile_fields_are_validated_naming_the_field(api: Api) -> None:
    owner = bearer(api.register(PHONE)["access_token"])
    cases = {
        "credit_code": "91350100M000100Y44",  # wrong check digit
        "industry_code": "A3511",  # division 35 is in section C
        "contact_phone": "12345",
    }
    for field, value in cases.items():
        body = complete_profile(CODE_A) | {field: value}
        response = api.client.put("/v1/enterprise/profile", json=body, headers=owner)
        assert response.status_code == 422, field
        problem = response.json()
        assert problem["field"] == field
        assert problem["errors"][0]["loc"] == ["body", field]
    money = complete_profile(CODE_A) | {"registered_capital": {"amount": "1.001"}}
    response = api.client.put("/v1/enterprise/profile", json=money, headers=owner)
    assert response.status_code == 422
    future = complete_profile(CODE_A) | {"registration_date": "2030-01-01"}
    response = api.client.put("/v1/enterprise/profile", json=future, headers=owner)
    assert response.json()["field"] == "registration_date"


def test_profile_is_normalised_and_accounts_are_masked(api: Api) -> None:
    owner = bearer(api.register(PHONE)["access_token"])
    body = complete_profile(CODE_A) | {
        "industry_code": "3511",
        "contact_phone": "+86 139 0013 9000",
    }
    profile = api.client.put("/v1/enterprise/profile", json=body, headers=owner).json()
    assert profile["industry_code"] == "C3511"
    assert profile["contact_phone"] == "+8613900139000"
    assert profile["bank_accounts"][0]["account_last4"] == "7890"
    assert "6222" not in str(profile)
    assert profile["missing_fields"] == []
    assert profile["registered_capital"] == {"amount": "5000000.00", "currency": "CNY"}
    key = api.context.settings.pseudonym_key.get_secret_value().encode()
    with session_scope(api.context.sessions) as db:
        stored = db.execute(sa.select(BankAccount)).scalar_one()
    # the same pseudonym the warehouse gives this account's statements
    assert stored.account_id == account_pseudonym("6222-0212-3456-7890", key)


def test_put_replaces_the_whole_profile(api: Api) -> None:
    owner = api.enterprise(PHONE, CODE_A)
    profile = api.client.put(
        "/v1/enterprise/profile", json={"name": "新名字"}, headers=owner
    ).json()
    assert profile["credit_code"] is None
    assert profile["bank_accounts"] == []
    assert "profile.credit_code" in profile["missing_fields"]


def test_a_credit_code_belongs_to_one_enterprise(api: Api) -> None:
    api.enterprise(PHONE, CODE_A)
    other = bearer(api.register("13800138001")["access_token"])
    taken = api.client.put("/v1/enterprise/profile", json=complete_profile(CODE_A), headers=other)
    assert taken.status_code == 409


def test_the_credit_code_is_frozen_once_referenced(api: Api) -> None:
    owner = api.enterprise(PHONE, CODE_A)
    body = {"requested_amount": {"amount": "1000"}, "term_months": 3}
    assert api.client.post("/v1/applications", json=body, headers=owner).status_code == 201
    moved = api.client.put("/v1/enterprise/profile", json=complete_profile(CODE_B), headers=owner)
    assert moved.status_code == 409


def test_without_a_model_the_application_stays_submitted(api: Api) -> None:
    owner = api.enterprise(PHONE, CODE_A)
    body = {"requested_amount": {"amount": "250000.50"}, "term_months": 12}
    application = api.client.post("/v1/applications", json=body, headers=owner).json()
    assert application["status"] == "submitted"
    assert application["status_reason"] == NO_MODEL_REASON
    assert application["evaluation"] is None
    score = api.client.get(f"/v1/enterprises/{CODE_A}/score", headers=owner)
    assert score.status_code == 404
    assert score.json()["type"] == "urn:flowbureau:problem:not-yet-available"


def test_a_draft_is_submitted_later(scored_api: Api) -> None:
    api = scored_api
    owner = api.enterprise(PHONE, CODE_A)
    draft = api.client.post(
        "/v1/applications", json={"submit": False, "term_months": 6}, headers=owner
    ).json()
    assert draft["status"] == "draft"
    submit = f"/v1/applications/{draft['id']}/submit"
    refused = api.client.post(submit, headers=owner)
    assert refused.status_code == 422
    assert refused.json()["missing_fields"] == ["requested_amount"]
    assert api.client.get(f"/v1/applications/{draft['id']}", headers=owner).json()["status"] == (
        "draft"
    )


def test_posts_with_an_idempotency_key_act_once(api: Api) -> None:
    owner = api.enterprise(PHONE, CODE_A)
    bank_id = _bank(api)
    headers = owner | {"Idempotency-Key": "consent-2026-03-02-a"}
    body = _consent_body(api, bank_id)
    first = api.client.post("/v1/consents", json=body, headers=headers)
    again = api.client.post("/v1/consents", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(api.client.get("/v1/consents", headers=owner).json()["items"]) == 1
    reused = api.client.post(
        "/v1/consents", json=body | {"scopes": ["view_report"]}, headers=headers
    )
    assert reused.status_code == 422
    assert reused.json()["field"] == "Idempotency-Key"
    # keys are per caller: another enterprise may use the same key for its own request
    other = api.enterprise("13800138001", CODE_B)
    theirs = api.client.post(
        "/v1/consents", json=body, headers=other | {"Idempotency-Key": "consent-2026-03-02-a"}
    )
    assert theirs.status_code == 201
    assert theirs.json()["id"] != first.json()["id"]
    # without a key, each POST acts
    api.client.post("/v1/consents", json=body, headers=owner)
    assert len(api.client.get("/v1/consents", headers=owner).json()["items"]) == 2


def test_a_failed_post_is_not_stored_for_replay(api: Api) -> None:
    owner = bearer(api.register(PHONE)["access_token"])
    headers = owner | {"Idempotency-Key": "app-1"}
    body = {"requested_amount": {"amount": "1000"}, "term_months": 3}
    assert api.client.post("/v1/applications", json=body, headers=headers).status_code == 422
    api.client.put("/v1/enterprise/profile", json=complete_profile(CODE_A), headers=owner)
    assert api.client.post("/v1/applications", json=body, headers=headers).status_code == 201


def test_consent_rules(api: Api) -> None:
    bank_id = _bank(api)
    bare = bearer(api.register(PHONE)["access_token"])
    no_code = api.client.post("/v1/consents", json=_consent_body(api, bank_id), headers=bare)
    assert no_code.status_code == 422
    assert no_code.json()["missing_fields"] == ["profile.credit_code"]
    owner = api.enterprise("13800138001", CODE_A)
    past = (api.clock() - timedelta(minutes=1)).isoformat()
    too_long = (api.clock() + timedelta(days=400)).isoformat()
    for over, field in (
        ({"expires_at": past}, "expires_at"),
        ({"expires_at": too_long}, "expires_at"),
        ({"institution_id": "no-such-bank"}, "institution_id"),
    ):
        response = api.client.post(
            "/v1/consents", json=_consent_body(api, bank_id, **over), headers=owner
        )
        assert response.status_code == 422
        assert response.json()["field"] == field
    naive = _consent_body(api, bank_id, expires_at="2026-04-01T00:00:00")
    assert api.client.post("/v1/consents", json=naive, headers=owner).status_code == 422
    empty = _consent_body(api, bank_id, scopes=[])
    assert api.client.post("/v1/consents", json=empty, headers=owner).status_code == 422


def test_consents_expire_with_time_and_list_by_status(api: Api) -> None:
    owner = api.enterprise(PHONE, CODE_A)
    bank_id = _bank(api)
    short = (api.clock() + timedelta(hours=1)).isoformat()
    api.client.post(
        "/v1/consents", json=_consent_body(api, bank_id, expires_at=short), headers=owner
    )
    api.clock.advance(seconds=1)  # lists are ordered by creation time
    api.client.post("/v1/consents", json=_consent_body(api, bank_id), headers=owner)
    api.clock.advance(hours=2)
    owner = api.login(PHONE)  # the access token expired meanwhile
    listed = api.client.get("/v1/consents", headers=owner).json()["items"]
    assert [c["status"] for c in listed] == ["expired", "live"]
    live = api.client.get("/v1/consents?status=live", headers=owner).json()["items"]
    assert len(live) == 1


def test_lists_page_with_cursors(api: Api) -> None:
    owner = api.enterprise(PHONE, CODE_A)
    bank_id = _bank(api)
    ids = []
    for _ in range(5):
        ids.append(
            api.client.post("/v1/consents", json=_consent_body(api, bank_id), headers=owner).json()[
                "id"
            ]
        )
        api.clock.advance(seconds=1)
    seen, cursor, pages = [], None, 0
    while True:
        url = "/v1/consents?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = api.client.get(url, headers=owner).json()
        seen += [c["id"] for c in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert pages == 3
    bad = api.client.get("/v1/consents?cursor=bm90LWEtY3Vyc29y", headers=owner)
    assert bad.status_code == 422
    assert bad.json()["field"] == "cursor"


def test_a_concurrent_duplicate_key_gets_409(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests with one key that both miss the lookup: the second commit conflicts."""
    owner = api.enterprise(PHONE, CODE_A)
    bank_id = _bank(api)
    monkeypatch.setattr(IdempotencyKey, "lookup", lambda self, db, *, now: None)
    headers = owner | {"Idempotency-Key": "raced"}
    body = _consent_body(api, bank_id)
    assert api.client.post("/v1/consents", json=body, headers=headers).status_code == 201
    second = api.client.post("/v1/consents", json=body, headers=headers)
    assert second.status_code == 409
    assert second.json()["type"] == "urn:flowbureau:problem:conflict"
    monkeypatch.undo()
    assert len(api.client.get("/v1/consents", headers=owner).json()["items"]) == 1
