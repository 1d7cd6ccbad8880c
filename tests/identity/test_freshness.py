"""Records attached by identity resolution, the freshness policy, update requests and the
update cascade (re-verification of linked records, re-evaluation), through the HTTP API."""

from __future__ import annotations

import csv
import random
from datetime import timedelta
from pathlib import Path

import pytest
from service_helpers import CODE_A, Api, complete_profile

from flowbureau.errors import InputError
from flowbureau.identity.freshness import FreshnessPolicy
from flowbureau.service import records
from flowbureau.service.models import AuditEntry
from flowbureau.storage.database import session_scope
from flowbureau.synth.codes import credit_code

OWNER_PHONE = "13800138000"


def _public_sources(directory: Path) -> None:
    """A registry of 30 enterprises (CODE_A's row matching its profile) and two penalties."""
    rng = random.Random(0)
    rows = [
        {
            "credit_code": CODE_A,
            "name": "测试科技有限公司",
            "legal_representative": "张伟",
            "phone": "13900139000",
            "registration_date": "2015-06-01",
            "registered_capital_minor": "500000000",
            "address": "福州",
            "division": "35",
        },
    ]
    for k in range(29):
        rows.append(
            {
                "credit_code": credit_code("350100", f"{rng.randrange(10**7, 10**8)}"),
                "name": f"福州{k:02d}号贸易有限公司",
                "legal_representative": f"王{k}",
                "phone": f"1370000{k:04d}",
                "registration_date": "2018-01-01",
                "registered_capital_minor": "100000000",
                "address": "福州",
                "division": "51",
            }
        )
    (directory / "registry").mkdir(parents=True)
    with (directory / "registry" / "enterprises.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (directory / "public_records").mkdir()
    (directory / "public_records" / "penalties.csv").write_text(
        "record_id,credit_code,date,authority,decision_no,severity,fine_minor,reason\n"
        f"P1,{CODE_A},2025-08-01,福州市市场监督管理局,榕市监罚〔2025〕12号,fine,500000,标签不规范\n"
        f"P2,{rows[3]['credit_code']},2025-09-01,福州市生态环境局,榕环罚〔2025〕3号,warning,0,x\n",
        "utf-8",
    )


def _requests(api: Api, headers: dict[str, str]) -> dict[str, dict[str, object]]:
    response = api.client.get("/v1/enterprise/update-requests", headers=headers)
    assert response.status_code == 200, response.text
    return {r["kind"]: r for r in response.json() if r["status"] == "open"}


def test_stale_records_raise_requests_and_updates_cascade(scored_api: Api, tmp_path: Path) -> None:
    api = scored_api
    owner = api.enterprise(OWNER_PHONE, CODE_A)
    no_model = api.client.post("/v1/enterprise/records/match", headers=owner)
    assert no_model.status_code == 404
    assert no_model.json()["type"] == "urn:flowbureau:problem:not-yet-available"
    _public_sources(tmp_path / "public")
    context = api.context
    with session_scope(context.sessions) as db:
        loaded = records.load_sources(
            db, context=context, principal=None, now=api.clock(), directory=tmp_path / "public"
        )
        assert loaded.added == {"registration": 30, "penalty": 2}
        records.train_identity_model(db, context=context, principal=None)
    matched = api.client.post("/v1/enterprise/records/match", headers=owner).json()
    assert matched["attached"] == 2  # its registry row and its penalty, not P2
    links = {
        r["record_type"]: r for r in api.client.get("/v1/enterprise/records", headers=owner).json()
    }
    assert set(links) == {"registration", "penalty"}
    assert links["registration"]["probability"] >= 0.95
    assert not links["registration"]["stale"]
    report = api.client.get(f"/v1/enterprises/{CODE_A}/report", headers=owner).json()
    assert [(r["record_type"], r["details"]["decision_no"]) for r in report["public_records"]] == [
        ("penalty", "榕市监罚〔2025〕12号")
    ]
    assert _requests(api, owner) == {}

    # 400 days later the profile and the registry record are stale; the penalty never is
    api.clock.advance(days=400)
    owner = api.login(OWNER_PHONE)
    open_now = _requests(api, owner)
    assert set(open_now) == {"profile"}
    stale = {item["record_type"] for item in open_now["profile"]["items"]}  # type: ignore[union-attr]
    assert stale == {"profile", "registration"}
    links = {
        r["record_type"]: r for r in api.client.get("/v1/enterprise/records", headers=owner).json()
    }
    assert links["registration"]["stale"]
    assert not links["penalty"]["stale"]

    # financial figures for a period that ended 13 months ago are stale at once
    old_end = (api.clock() - timedelta(days=396)).date().isoformat()
    figures = {
        "period_end": old_end,
        "revenue": {"amount": "12000000.00"},
        "total_assets": {"amount": "8000000.00"},
        "total_liabilities": {"amount": "3500000.00"},
        "net_profit": {"amount": "-120000.50"},
    }
    declared = api.client.post("/v1/enterprise/financials", json=figures, headers=owner)
    assert declared.status_code == 201, declared.text
    assert declared.json()["financials"]["net_profit"] == {
        "amount": "-120000.50",
        "currency": "CNY",
    }
    assert set(_requests(api, owner)) == {"profile", "financial"}

    # the enterprise updates its information: the linked registry record is verified with it,
    # the request is resolved and the enterprise re-evaluated
    saved = api.client.put("/v1/enterprise/profile", json=complete_profile(CODE_A), headers=owner)
    assert saved.status_code == 200
    assert set(_requests(api, owner)) == {"financial"}
    history = api.client.get("/v1/enterprise/update-requests", headers=owner).json()
    done = next(r for r in history if r["kind"] == "profile")
    assert done["status"] == "done"
    assert done["evaluation"]["status"] == "evaluated"
    assert done["evaluation"]["grade"] == "BB"
    links = {
        r["record_type"]: r for r in api.client.get("/v1/enterprise/records", headers=owner).json()
    }
    assert not links["registration"]["stale"]
    assert links["registration"]["verified_at"].startswith(api.clock().date().isoformat())

    figures["period_end"] = (api.clock() - timedelta(days=30)).date().isoformat()
    fresh = api.client.post("/v1/enterprise/financials", json=figures, headers=owner).json()
    assert fresh["resolved_request"]["kind"] == "financial"
    assert fresh["resolved_request"]["status"] == "done"
    assert _requests(api, owner) == {}
    with api.context.sessions() as db:
        operations = {e.operation for e in db.query(AuditEntry).all()}
    assert {"attribute_records", "declare_financials", "resolve_update_request"} <= operations

    # a rejected record stays rejected when matching runs again
    penalty = links["penalty"]["id"]
    assert (
        api.client.post(f"/v1/enterprise/records/{penalty}/reject", headers=owner).json()["status"]
        == "rejected"
    )
    api.client.post("/v1/enterprise/records/match", headers=owner)
    again = {r["id"]: r for r in api.client.get("/v1/enterprise/records", headers=owner).json()}
    assert again[penalty]["status"] == "rejected"
    assert (
        api.client.get(f"/v1/enterprises/{CODE_A}/report", headers=owner).json()["public_records"]
        == []
    )


def test_operator_routes_are_for_operators(api: Api) -> None:
    owner = api.enterprise(OWNER_PHONE, CODE_A)
    for path in ("/v1/identity/sources", "/v1/identity/model", "/v1/identity/freshness-review"):
        response = api.client.post(path, headers=owner)
        assert response.status_code == 403, path


def test_policy_files_are_checked(tmp_path: Path) -> None:
    shipped = FreshnessPolicy.load()
    assert shipped.types["financial"].max_age_days == 365
    assert shipped.types["penalty"].max_age_days is None
    bad = tmp_path / "policy.toml"
    bad.write_text("[record_types.profile]\nmax_age_days = -3\n[record_types.financial]\n", "utf-8")
    with pytest.raises(InputError, match="positive integer") as caught:
        FreshnessPolicy.load(bad)
    assert caught.value.field == "record_types.profile.max_age_days"
    bad.write_text(
        '[record_types.profile]\nrequest = "nothing"\n[record_types.financial]\n', "utf-8"
    )
    with pytest.raises(InputError, match="request must be one of"):
        FreshnessPolicy.load(bad)
