"""Analyst feedback on flagged transactions: consent covering view_transactions (or an
operator), the entry must be the enterprise's, labels reach the anomaly stage."""

from __future__ import annotations

from datetime import timedelta

from service_helpers import CODE_A, CODE_B, PASSWORD, Api, bearer
from test_service_providers import _contribute, _row

from flowbureau.anomaly.feedback import current_labels
from flowbureau.anomaly.store import AnomalyStore
from flowbureau.service import accounts, apikeys
from flowbureau.service.models import Role
from flowbureau.storage.database import session_scope
from flowbureau.storage.warehouse import Warehouse


def test_feedback_needs_a_consent_covering_transactions_or_an_operator(api: Api) -> None:
    settings = api.context.settings
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    _contribute(warehouse, "bank-a", [_row("t1", CODE_A, 500_000), _row("t9", CODE_B, 7)])
    owner = api.enterprise("13800138000", CODE_A)
    with session_scope(api.context.sessions) as db:
        bank = accounts.create_institution(db, name="Bank", now=api.clock())
        for role, phone in ((Role.ANALYST, "+8613700137000"), (Role.OPERATOR, "+8613600136000")):
            accounts.create_staff_user(
                db,
                role=role,
                phone=phone,
                password=PASSWORD,
                vault=api.context.vault,
                passwords=api.context.passwords,
                now=api.clock(),
                institution_id=bank.id if role is Role.ANALYST else None,
            )
        _key_row, key = apikeys.create_api_key(
            db, institution_id=bank.id, scopes=["view_transactions"], now=api.clock()
        )
    analyst = api.login("13700137000")
    url = f"/v1/enterprises/{CODE_A}/transactions/t1/feedback?purpose=pre_loan_review"
    label = {"verdict": "label", "label": "normal", "note": "a regular customer payment"}
    assert api.client.post(url, json=label, headers=analyst).status_code == 403

    def consent(scopes: list[str]) -> None:
        response = api.client.post(
            "/v1/consents",
            json={
                "institution_id": bank.id,
                "purpose": "pre_loan_review",
                "scopes": scopes,
                "expires_at": (api.clock() + timedelta(days=30)).isoformat(),
            },
            headers=owner,
        )
        assert response.status_code == 201

    consent(["view_score"])
    denied = api.client.post(url, json=label, headers=analyst)
    assert denied.status_code == 403
    assert "does not cover view_transactions" in denied.json()["detail"]
    consent(["view_transactions"])
    done = api.client.post(url, json=label, headers=analyst)
    assert done.status_code == 201, done.text
    assert done.json()["label"] == "normal"
    store = AnomalyStore(settings.anomaly.store_dir or settings.data_dir / "anomaly")
    labels = current_labels(store)
    assert labels.loc[labels["tx_id"] == "t1", "label"].tolist() == ["normal"]
    other = f"/v1/enterprises/{CODE_A}/transactions/t9/feedback?purpose=pre_loan_review"
    assert api.client.post(other, json=label, headers=analyst).status_code == 404
    unflagged = api.client.post(url, json={"verdict": "confirm"}, headers=analyst)
    assert unflagged.status_code == 409  # nothing flagged it: nothing to confirm
    assert api.client.post(url, json={"verdict": "label"}, headers=analyst).status_code == 422
    operator = api.login("13600136000")
    plain = f"/v1/enterprises/{CODE_A}/transactions/t1/feedback"
    as_operator = api.client.post(plain, json=label | {"label": "typo_x10"}, headers=operator)
    assert as_operator.status_code == 201, as_operator.text
    for outsider in (owner, bearer(key)):
        assert api.client.post(url, json=label, headers=outsider).status_code == 403
