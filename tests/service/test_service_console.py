"""The web console through HTTP (the browser tests drive it in Chromium): catalogs, CSRF,
sessions, redirects, language, the missing-fields loop, consent-gated dashboards."""

from __future__ import annotations

import re
import string
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest
from service_helpers import CODE_A, PASSWORD, Api

from flowbureau.identity.freshness import FreshnessPolicy
from flowbureau.service import accounts
from flowbureau.service.i18n import LANGUAGES, catalog, pick_language
from flowbureau.service.models import (
    ApplicationStatus,
    AuditEntry,
    Operation,
    Purpose,
    Role,
)
from flowbureau.storage.database import session_scope

TEMPLATES = Path(str(resources.files("flowbureau.service").joinpath("templates")))
ANALYST_PHONE = "13700137000"


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def _placeholders(message: str) -> set[str]:
    return {name for _text, name, _spec, _conv in string.Formatter().parse(message) if name}


def test_catalogs_agree_and_cover_every_template_key() -> None:
    zh, en = catalog("zh"), catalog("en")
    assert set(zh) == set(en)
    for key in zh:
        assert _placeholders(zh[key]) == _placeholders(en[key]), key
    used: set[str] = set()
    sources = [
        *TEMPLATES.rglob("*.html"),
        *TEMPLATES.parent.joinpath("routes").glob("*.py"),
        TEMPLATES.parent / "console.py",
    ]
    for path in sources:
        text = path.read_text("utf-8")
        used |= set(re.findall(r"""\bt\(["']([a-z0-9_]+\.[a-z0-9_.]+)["']\s*[,)]""", text))
    assert used, "no keys found: the pattern is wrong"
    assert used - set(zh) == set()
    dynamic = {
        "status": [s.value for s in ApplicationStatus],
        "purposes": [p.value for p in Purpose],
        "operations": [o.value for o in Operation],
        "consent_status": ["live", "expired", "revoked"],
        "link_status": ["attached", "candidate", "rejected"],
        "record_types": list(FreshnessPolicy.load().types),
        "lang": list(LANGUAGES),
        "requests": ["profile_open", "financial_open", "kind_profile", "kind_financial"],
        "fields": ["requested_amount", "term_months"],
    }
    for prefix, names in dynamic.items():
        for name in names:
            assert f"{prefix}.{name}" in zh, f"{prefix}.{name}"


def test_language_choice() -> None:
    assert pick_language(None, "en-GB,en;q=0.9") == "en"
    assert pick_language(None, "fr-FR") == "zh"
    assert pick_language("en", "zh-CN") == "en"
    assert pick_language("xx", None) == "zh"


def _register_in_console(api: Api, phone: str) -> None:
    client = api.client
    token = _token(client.get("/console/register").text)
    step2 = client.post("/console/register/code", data={"csrf_token": token, "phone": phone})
    assert step2.status_code == 200
    code = api.sms_codes("+86" + phone)[-1]
    done = client.post(
        "/console/register",
        data={
            "csrf_token": _token(step2.text),
            "phone": phone,
            "code": code,
            "password": PASSWORD,
            "enterprise_name": "测试科技有限公司",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/console/enterprise/profile"


def test_csrf_is_required_and_bound_to_the_cookie(api: Api) -> None:
    client = api.client
    page = client.get("/console/login")
    assert "fb_session" in page.cookies
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]
    assert "<script>" not in page.text
    token = _token(page.text)
    assert (
        client.post("/console/login", data={"phone": "13800138000", "password": "x"}).status_code
        == 403
    )
    wrong = client.post(
        "/console/login", data={"phone": "13800138000", "password": "x", "csrf_token": token + "x"}
    )
    assert wrong.status_code == 403
    refused = client.post(
        "/console/login",
        data={"phone": "13800138000", "password": "wrong one", "csrf_token": token},
    )
    assert refused.status_code == 401
    assert "手机号或密码" in refused.text


def test_session_lifecycle_and_redirects(api: Api) -> None:
    client = api.client
    anonymous = client.get("/console/enterprise", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/console/login?next=/console/enterprise"
    _register_in_console(api, "13800138000")
    before = client.cookies["fb_session"]
    assert not before.startswith("anon.")  # a new cookie at sign-in (no fixation)
    assert client.get("/console/enterprise").status_code == 200
    token = _token(client.get("/console/enterprise").text)
    assert (
        client.post(
            "/console/logout", data={"csrf_token": token}, follow_redirects=False
        ).status_code
        == 303
    )
    client.cookies.set("fb_session", before, path="/console")  # a stolen cookie after sign-out
    assert client.get("/console/enterprise", follow_redirects=False).status_code == 303
    # a session ends after console_session_hours
    login = client.get("/console/login")
    signed = client.post(
        "/console/login?next=//evil.example/x",
        data={
            "phone": "13800138000",
            "password": PASSWORD,
            "csrf_token": _token(login.text),
            "next": "//evil.example/x",
        },
        follow_redirects=False,
    )
    assert signed.headers["location"] == "/console/enterprise"  # no open redirect
    api.clock.advance(hours=api.context.settings.service.console_session_hours + 1)
    assert client.get("/console/enterprise", follow_redirects=False).status_code == 303


def test_missing_fields_send_the_user_back_and_language_switches(api: Api) -> None:
    client = api.client
    _register_in_console(api, "13800138000")
    form = client.get("/console/enterprise/applications/new")
    refused = client.post(
        "/console/enterprise/applications",
        data={"csrf_token": _token(form.text), "amount": "800000", "term_months": "12"},
    )
    assert refused.status_code == 422
    links = re.findall(r'href="/console/enterprise/profile#(\w+)"', refused.text)
    assert links == [
        "credit_code",
        "industry_code",
        "registration_date",
        "registered_capital",
        "legal_representative",
        "address",
        "contact_name",
        "contact_phone",
        "bank_accounts",
    ]
    profile = client.get("/console/enterprise/profile").text
    for field in links:
        assert f'id="{field}"' in profile  # every link lands on its field
    english = client.get(
        "/console/lang/en?next=/console/enterprise/applications/new", follow_redirects=True
    )
    assert "Credit evaluation application" in english.text
    assert client.cookies["fb_lang"] == "en"


def test_analyst_dashboard_follows_consent_and_is_audited(scored_api: Api) -> None:
    api = scored_api
    owner = api.enterprise("13800138000", CODE_A)
    with session_scope(api.context.sessions) as db:
        bank = accounts.create_institution(db, name="闽江银行", now=api.clock())
        accounts.create_staff_user(
            db,
            role=Role.ANALYST,
            phone="+86" + ANALYST_PHONE,
            password=PASSWORD,
            vault=api.context.vault,
            passwords=api.context.passwords,
            now=api.clock(),
            institution_id=bank.id,
        )
    client = api.client
    login = client.get("/console/login")
    client.post(
        "/console/login",
        data={"phone": ANALYST_PHONE, "password": PASSWORD, "csrf_token": _token(login.text)},
    )
    url = f"/console/institution/enterprises/{CODE_A}?purpose=pre_loan_review"
    none = client.get(url)
    assert none.status_code == 403
    assert "no consent" in none.text
    consent = client.post(  # the owner uses the API: both adapters share one consent store
        "/v1/consents",
        json={
            "institution_id": bank.id,
            "purpose": "pre_loan_review",
            "scopes": ["view_score"],
            "expires_at": (api.clock() + timedelta(days=30)).isoformat(),
        },
        headers=owner,
    ).json()
    page = client.get(url)
    assert page.status_code == 200
    assert 'id="score-grade">BB<' in page.text
    assert "does not cover view_transactions" in page.text  # a panel outside the consent
    assert 'data-chart="score-gauge"' in page.text
    with api.context.sessions() as db:
        entries = db.query(AuditEntry).filter(AuditEntry.consent_id == consent["id"]).all()
    assert {e.operation for e in entries} >= {"view_score", "view_transactions", "view_report"}
    assert client.delete(f"/v1/consents/{consent['id']}", headers=owner).status_code == 204
    revoked = client.get(url)
    assert revoked.status_code == 403
    assert "revoked" in revoked.text
    assert client.get("/console/enterprise", follow_redirects=False).status_code == 403


@pytest.mark.parametrize("path", ["/console/", "/console/login", "/console/register"])
def test_public_pages_render_in_both_languages(api: Api, path: str) -> None:
    chinese = api.client.get(path, headers={"Accept-Language": "zh-CN"})
    english = api.client.get(path, headers={"Accept-Language": "en"})
    assert chinese.status_code == english.status_code == 200
    assert 'lang="zh-CN"' in chinese.text
    assert 'lang="en"' in english.text
    assert chinese.text != english.text
