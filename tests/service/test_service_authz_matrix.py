"""The authorisation matrix: every route x every role x consent state.

Enterprise data routes are tried by every role under each consent state the enterprise may have
given the institution (none, live, expired, revoked, wrong purpose, wrong scope): only the owner,
or the institution's analyst / API client under the *live matching* consent (and within the
key's scopes), may read; each attempt by a signed-in caller is audited with its outcome.
The other routes are tried by every role: each is open to exactly the roles the policy names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from service_helpers import CODE_A, CODE_B, PASSWORD, Api, bearer, build_api

from flowbureau.service import accounts, apikeys
from flowbureau.service.models import AuditEntry, Consent, Operation, Purpose, Role
from flowbureau.storage.database import session_scope

ROLES = (
    "anonymous",
    "owner",
    "other_enterprise",
    "analyst",
    "other_analyst",
    "api_client",
    "limited_key",
    "operator",
    "auditor",
)
STATES = ("none", "live", "expired", "revoked", "wrong_purpose", "wrong_scope")


@dataclass
class World:
    api: Api
    headers: dict[str, dict[str, str]]
    bank_id: str
    enterprise_id: str
    owner_id: str
    application_id: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("matrix")
    for api in build_api(tmp, scored={CODE_A, CODE_B}, api_key_requests_per_minute=100_000):
        now = api.clock()
        owner = api.enterprise("13800138000", CODE_A)
        other = api.enterprise("13800138001", CODE_B)
        created = api.client.post(
            "/v1/applications",
            json={"requested_amount": {"amount": "100000"}, "term_months": 6},
            headers=owner,
        )
        assert created.status_code == 201, created.text
        with session_scope(api.context.sessions) as db:
            bank = accounts.create_institution(db, name="Bank", now=now)
            rival = accounts.create_institution(db, name="Rival", now=now)
            staff = {
                "analyst": (Role.ANALYST, "13700137000", bank.id),
                "other_analyst": (Role.ANALYST, "13700137001", rival.id),
                "operator": (Role.OPERATOR, "13700137002", None),
                "auditor": (Role.AUDITOR, "13700137003", None),
            }
            for role, phone, institution_id in staff.values():
                accounts.create_staff_user(
                    db,
                    role=role,
                    phone="+86" + phone,
                    password=PASSWORD,
                    institution_id=institution_id,
                    vault=api.context.vault,
                    passwords=api.context.passwords,
                    now=now,
                )
            _, full_key = apikeys.create_api_key(
                db, institution_id=bank.id, scopes=list(Operation), now=now
            )
            _, limited_key = apikeys.create_api_key(
                db, institution_id=bank.id, scopes=["view_score"], now=now
            )
        me = api.client.get("/v1/me", headers=owner).json()
        headers = {name: api.login(phone) for name, (_r, phone, _i) in staff.items()}
        headers |= {
            "anonymous": {},
            "owner": owner,
            "other_enterprise": other,
            "api_client": bearer(full_key),
            "limited_key": bearer(limited_key),
        }
        yield World(api, headers, bank.id, me["enterprise_id"], me["id"], created.json()["id"])


def _set_consent(world: World, state: str) -> None:
    """Replace the consents of enterprise A to the bank by one in ``state``."""
    now = world.api.clock()
    with session_scope(world.api.context.sessions) as db:
        db.execute(sa.delete(Consent))
        if state == "none":
            return
        consent = Consent(
            enterprise_id=world.enterprise_id,
            institution_id=world.bank_id,
            purpose=Purpose.PRE_LOAN_REVIEW,
            scopes=sorted(op.value for op in Operation),
            expires_at=now + timedelta(days=30),
            created_at=now - timedelta(days=60),
            created_by=world.owner_id,
        )
        if state == "expired":
            consent.expires_at = now - timedelta(seconds=1)
        elif state == "revoked":
            consent.revoked_at = now - timedelta(minutes=5)
        elif state == "wrong_purpose":
            consent.purpose = Purpose.POST_LOAN_MONITORING
        elif state == "wrong_scope":
            consent.scopes = ["export"]
        db.add(consent)


def _audit_count(world: World) -> int:
    with session_scope(world.api.context.sessions) as db:
        return int(db.execute(sa.select(sa.func.count()).select_from(AuditEntry)).scalar_one())


def _may_read(role: str, state: str, operation: str) -> bool:
    """The policy, written independently of the implementation."""
    if role == "owner":
        return True
    if role in {"analyst", "api_client"}:
        return state == "live"
    if role == "limited_key":
        return state == "live" and operation == "view_score"
    return False


def _data_routes(world: World) -> list[tuple[str, str]]:
    query = "?purpose=pre_loan_review"
    return [
        (f"/v1/enterprises/{CODE_A}/score{query}", "view_score"),
        (f"/v1/enterprises/{CODE_A}/report{query}", "view_report"),
        (f"/v1/enterprises/{CODE_A}/transactions/summary{query}", "view_transactions"),
        (f"/v1/applications/{world.application_id}{query}", "view_score"),
    ]


@pytest.mark.parametrize("state", STATES)
def test_enterprise_data_needs_a_live_matching_consent(world: World, state: str) -> None:
    _set_consent(world, state)
    wrong: list[str] = []
    for url, operation in _data_routes(world):
        for role in ROLES:
            before = _audit_count(world)
            response = world.api.client.get(url, headers=world.headers[role])
            allowed = _may_read(role, state, operation)
            expected = 200 if allowed else 401 if role == "anonymous" else 403
            if response.status_code != expected:
                wrong.append(f"{role} GET {url}: {response.status_code}, expected {expected}")
                continue
            if expected == 200 and CODE_A not in response.text:
                wrong.append(f"{role} GET {url}: 200 without the enterprise's data")
            audited = _audit_count(world) - before
            if audited != (0 if role == "anonymous" else 1):
                wrong.append(f"{role} GET {url}: {audited} audit entries")
            if expected == 403:
                body = response.json()
                if body["type"] != "urn:flowbureau:problem:forbidden" or not body["detail"]:
                    wrong.append(f"{role} GET {url}: 403 without a reason: {body}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("state", STATES)
def test_search_shows_only_consented_enterprises(world: World, state: str) -> None:
    _set_consent(world, state)
    url = "/v1/enterprises?q=%E6%B5%8B%E8%AF%95&purpose=pre_loan_review"  # q=测试
    wrong: list[str] = []
    for role in ROLES:
        response = world.api.client.get(url, headers=world.headers[role])
        if role == "anonymous":
            expected_status, visible = 401, set()
        elif role in {"operator", "auditor"}:
            expected_status, visible = 403, set()
        elif role == "owner":
            expected_status, visible = 200, {CODE_A}
        elif role == "other_enterprise":
            expected_status, visible = 200, {CODE_B}
        elif role == "other_analyst":
            expected_status, visible = 200, set()
        else:  # the bank's analyst and keys: a live consent for this purpose, any operation
            expected_status = 200
            visible = {CODE_A} if state in {"live", "wrong_scope"} else set()
        if response.status_code != expected_status:
            wrong.append(f"{role}: {response.status_code}, expected {expected_status}")
        elif expected_status == 200:
            found = {item["credit_code"] for item in response.json()}
            if found != visible:
                wrong.append(f"{role}: sees {found}, expected {visible}")
    assert not wrong, "\n".join(wrong)


def _other_routes(world: World) -> list[tuple[str, str, dict[str, Any] | None, set[str], int]]:
    """(method, url, body, roles allowed, status when allowed)."""
    institutions = {"analyst", "other_analyst", "api_client", "limited_key"}
    enterprises = {"owner", "other_enterprise"}
    everyone = enterprises | institutions | {"operator", "auditor"}
    consent = {
        "institution_id": world.bank_id,
        "purpose": "post_loan_monitoring",
        "scopes": ["view_score"],
        "expires_at": (world.api.clock() + timedelta(days=3)).isoformat(),
    }
    return [
        ("GET", "/v1/me", None, everyone, 200),
        ("GET", "/v1/institutions", None, everyone, 200),
        ("GET", "/v1/enterprise/profile", None, enterprises, 200),
        ("GET", "/v1/applications", None, enterprises, 200),
        ("POST", "/v1/applications", {"submit": False}, enterprises, 201),
        ("POST", "/v1/consents", consent, enterprises, 201),
        ("GET", "/v1/consents", None, enterprises | institutions | {"auditor"}, 200),
        ("GET", "/v1/audit", None, {"auditor"}, 200),
        ("GET", "/v1/audit/verification", None, {"auditor"}, 200),
        ("GET", "/v1/enterprise/records", None, enterprises, 200),
        ("GET", "/v1/enterprise/update-requests", None, enterprises, 200),
        ("GET", "/v1/enterprise/financials", None, enterprises, 200),
        ("GET", "/v1/webhooks", None, institutions, 200),
        ("POST", "/v1/identity/sources", None, {"operator"}, 200),
        ("POST", "/v1/identity/freshness-review", None, {"operator"}, 200),
    ]


def test_other_routes_are_open_to_their_roles_only(world: World) -> None:
    _set_consent(world, "none")
    wrong: list[str] = []
    for method, url, body, allowed, status in _other_routes(world):
        for role in ROLES:
            response = world.api.client.request(method, url, json=body, headers=world.headers[role])
            expected = status if role in allowed else 401 if role == "anonymous" else 403
            if response.status_code != expected:
                wrong.append(f"{role} {method} {url}: {response.status_code}, expected {expected}")
    assert not wrong, "\n".join(wrong)


def test_changes_to_someone_elses_resources_are_refused(world: World) -> None:
    _set_consent(world, "live")
    with session_scope(world.api.context.sessions) as db:
        consent_id = db.execute(sa.select(Consent.id)).scalar_one()
    wrong: list[str] = []
    for role in ROLES:
        if role == "owner":
            continue
        headers = world.headers[role]
        revoke = world.api.client.delete(f"/v1/consents/{consent_id}", headers=headers)
        submit = world.api.client.post(
            f"/v1/applications/{world.application_id}/submit", headers=headers
        )
        expected = {401} if role == "anonymous" else {403, 404}
        for what, response in (("revoke", revoke), ("submit", submit)):
            if response.status_code not in expected:
                wrong.append(f"{role} {what}: {response.status_code}, expected {expected}")
    assert not wrong, "\n".join(wrong)
    with session_scope(world.api.context.sessions) as db:
        assert db.get_one(Consent, consent_id).revoked_at is None
