"""A whole user journey through HTTP, as the issue describes it: register with the code read
from the file: SMS backend, profile, incomplete application refused with the missing list,
complete application evaluated, consent, an institution reads the score, revocation blocks
the next read, and the audit log shows each step."""

from __future__ import annotations

from datetime import timedelta

from service_helpers import CODE_A, PASSWORD, Api, bearer, complete_profile

from flowbureau.service import accounts, apikeys
from flowbureau.service.models import Role
from flowbureau.service.providers import ScoreView
from flowbureau.storage.database import session_scope


def _staff(api: Api) -> tuple[str, dict[str, str], str]:
    """An institution, its analyst's headers and an API key."""
    now = api.clock()
    with session_scope(api.context.sessions) as db:
        bank = accounts.create_institution(db, name="福州农商银行", now=now)
        accounts.create_staff_user(
            db,
            role=Role.ANALYST,
            phone="+8613700137000",
            password=PASSWORD,
            institution_id=bank.id,
            vault=api.context.vault,
            passwords=api.context.passwords,
            now=now,
        )
        accounts.create_staff_user(
            db,
            role=Role.AUDITOR,
            phone="+8613600136000",
            password=PASSWORD,
            vault=api.context.vault,
            passwords=api.context.passwords,
            now=now,
        )
        _row, key = apikeys.create_api_key(
            db, institution_id=bank.id, scopes=["view_score", "view_report"], now=now
        )
    return bank.id, api.login("13700137000"), key


def test_the_whole_journey(scored_api: Api) -> None:
    api = scored_api
    client = api.client
    bank_id, analyst, key = _staff(api)

    # 1. register with the code read from the file: backend
    tokens = api.register("13800138000", enterprise_name="闽江精密机械有限公司")
    assert tokens["token_type"] == "bearer"
    owner = bearer(tokens["access_token"])

    # 2. a partial profile is stored; an application is refused listing every gap
    partial = {"name": "闽江精密机械有限公司", "credit_code": CODE_A}
    assert client.put("/v1/enterprise/profile", json=partial, headers=owner).status_code == 200
    refused = client.post(
        "/v1/applications", json={"requested_amount": {"amount": "800000"}}, headers=owner
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"] == "urn:flowbureau:problem:incomplete-information"
    assert problem["missing_fields"] == [
        "profile.industry_code",
        "profile.registration_date",
        "profile.registered_capital",
        "profile.legal_representative",
        "profile.address",
        "profile.contact_name",
        "profile.contact_phone",
        "profile.bank_accounts",
        "term_months",
    ]
    assert client.get("/v1/applications", headers=owner).json()["items"] == []

    # 3. complete it; the application is evaluated by the scoring engine
    profile = complete_profile(CODE_A, "闽江精密机械有限公司")
    assert client.put("/v1/enterprise/profile", json=profile, headers=owner).status_code == 200
    created = client.post(
        "/v1/applications",
        json={"requested_amount": {"amount": "800000.00"}, "term_months": 12},
        headers=owner,
    )
    assert created.status_code == 201, created.text
    application = created.json()
    assert application["status"] == "evaluated"
    assert application["evaluation"]["grade"] == "BB"
    assert application["requested_amount"] == {"amount": "800000.00", "currency": "CNY"}

    # 4. before consent the institution reads nothing
    score_url = f"/v1/enterprises/{CODE_A}/score?purpose=pre_loan_review"
    denied = client.get(score_url, headers=analyst)
    assert denied.status_code == 403
    assert "no consent" in denied.json()["detail"]

    # 5. consent for pre-loan review, score and report, 30 days
    expires = (api.clock() + timedelta(days=30)).isoformat()
    granted = client.post(
        "/v1/consents",
        json={
            "institution_id": bank_id,
            "purpose": "pre_loan_review",
            "scopes": ["view_score", "view_report"],
            "expires_at": expires,
        },
        headers=owner,
    )
    assert granted.status_code == 201, granted.text
    consent = granted.json()
    assert consent["status"] == "live"

    # 6. the analyst and the institution's system read the score
    score = client.get(score_url, headers=analyst)
    assert score.status_code == 200, score.text
    assert ScoreView.model_validate(score.json()).score == 688
    assert client.get(score_url, headers=bearer(key)).status_code == 200
    seen = client.get(
        f"/v1/applications/{application['id']}?purpose=pre_loan_review", headers=analyst
    )
    assert seen.status_code == 200
    assert seen.json()["evaluation"]["model_version"] == "scorecard-test-1"
    report = client.get(
        f"/v1/enterprises/{CODE_A}/report?purpose=pre_loan_review", headers=bearer(key)
    )
    assert report.status_code == 200
    assert report.json()["registered_capital"] == "5000000.00"

    # 7. revocation blocks the next read
    assert client.delete(f"/v1/consents/{consent['id']}", headers=owner).status_code == 204
    after = client.get(score_url, headers=analyst)
    assert after.status_code == 403
    assert "revoked" in after.json()["detail"]

    # 8. the auditor sees each step, and the chain verifies
    auditor = api.login("13600136000")
    log = client.get("/v1/audit?limit=100", headers=auditor).json()["items"]
    steps = [(e["operation"], e["outcome"]) for e in reversed(log)]
    assert steps == [
        ("register", "done"),
        ("update_profile", "done"),
        ("update_profile", "done"),
        ("submit_application", "done"),
        ("view_score", "denied"),
        ("grant_consent", "done"),
        ("view_score", "allowed"),
        ("view_score", "allowed"),
        ("view_score", "allowed"),
        ("view_report", "allowed"),
        ("revoke_consent", "done"),
        ("view_score", "denied"),
    ]
    reads = [e for e in log if e["operation"] == "view_score" and e["outcome"] == "allowed"]
    assert {e["consent_id"] for e in reads} == {consent["id"]}
    assert {e["purpose"] for e in reads} == {"pre_loan_review"}
    assert {e["actor_kind"] for e in reads} == {"user", "api_key"}
    assert all(e["institution_id"] == bank_id for e in reads)
    verification = client.get("/v1/audit/verification", headers=auditor).json()
    assert verification == {
        "ok": True,
        "rows": 12,
        "head_seq": 12,
        "broken_seq": None,
        "problem": None,
    }
