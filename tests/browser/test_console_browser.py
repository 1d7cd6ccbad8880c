"""The web console end to end in a real headless Chromium (Debian chromium, Playwright).

A small synthetic consortium is generated and ingested, demo accounts are seeded, the score
history gets an evaluation per enterprise (with reasons and similar cases), and the real server
runs under uvicorn on a free loopback port. The enterprise journey registers with the SMS code
read from the ``file:`` backend, enters part of its information, is sent back by the missing
list, completes it, gets its application evaluated and gives a consent; the institution journey
signs in, searches, opens the dashboard, and is refused once the consent is revoked.

Screenshots go to ``docs/screenshots/`` when ``FLOWBUREAU_UPDATE_SCREENSHOTS=1``, else to a
temporary directory. No page may log a console error (a CSP violation would).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NEW_PHONE = "13812345678"
PASSWORD = "a long passphrase 1"


@dataclass
class Server:
    url: str
    data_dir: Path
    sms: Path
    registry: list[dict[str, str]]
    analyst: tuple[str, str]
    enterprise: tuple[str, str, str]  # phone, password, credit code of a demo enterprise
    newcomer: dict[str, str]  # a registry enterprise without an account yet


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _store_evaluations(codes: list[str], env: dict[str, str]) -> None:
    """An evaluation per enterprise in the score history (what a scoring run stores)."""
    from flowbureau.config import Settings
    from flowbureau.scoring.history import ScoreEvaluation, record_evaluations
    from flowbureau.storage.database import make_engine, session_factory, session_scope

    settings = Settings(data_dir=Path(env["FLOWBUREAU_DATA_DIR"]))
    engine = make_engine(settings.resolved_database_url)
    now = datetime.now(UTC)
    grades = [("BBB", 3, 641, 0.0052), ("BB", 4, 607, 0.0141), ("B", 5, 575, 0.043)]
    with session_scope(session_factory(engine)) as db:
        rows = []
        for k, code in enumerate(codes):
            grade, rank, score, pd = grades[k % len(grades)]
            rows.append(
                ScoreEvaluation(
                    enterprise_id=code,
                    as_of=date.today() - timedelta(days=1),
                    computed_at=now,
                    model_name="credit",
                    model_version=1,
                    score=score,
                    pd=pd,
                    grade=grade,
                    grade_rank=rank,
                    reasons=[
                        {
                            "feature": "inflow_growth_12m",
                            "description": "流入同比下降 18%",
                            "points_lost": 14.2,
                        },
                        {
                            "feature": "top1_customer_share_6m",
                            "description": "第一大客户占比 46%",
                            "points_lost": 9.8,
                        },
                        {
                            "feature": "low_balance_days_3m",
                            "description": "近 3 个月 11 天低余额",
                            "points_lost": 6.1,
                        },
                    ],
                    cases=[
                        {
                            "case_id": f"C2024-{k:03d}{j}",
                            "similarity": 0.91 - 0.07 * j,
                            "outcome": j % 2,
                            "evaluated_at": "2024-06-30T00:00:00+00:00",
                            "outcome_at": "2025-06-30T00:00:00+00:00",
                            "features": {},
                        }
                        for j in range(3)
                    ],
                    features={},
                    data_summary={
                        "entries": 412,
                        "corrected_entries": 3,
                        "uses_corrected_values": True,
                    },
                    sources=["transactions", "public_records"],
                    data_fingerprint=f"fp{k}",
                )
            )
        record_evaluations(db, rows, pd_jump=0.05, now=now)
    engine.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("console")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FLOWBUREAU_")},
        "FLOWBUREAU_ENV": "test",
        "FLOWBUREAU_DATA_DIR": str(root / "data"),
        "FLOWBUREAU_SMS_BACKEND": f"file:{root / 'sms.jsonl'}",
        "FLOWBUREAU_SERVICE__ARGON2_MEMORY_KIB": "1024",
        "FLOWBUREAU_SERVICE__ARGON2_TIME_COST": "1",
    }
    consortium = root / "consortium"
    script = f"""
import json
from pathlib import Path
from flowbureau.synth import generate
from flowbureau.ingestion import ingest
from flowbureau.config import get_settings
from flowbureau.service.demo import seed_demo
generate(Path({str(consortium)!r}), enterprises=12, banks=2, months=3, seed=7, progress=False)
ingest([Path({str(consortium / "banks")!r})])
accounts = seed_demo(get_settings(), consortium_dir=Path({str(consortium)!r}), count=2)
print(json.dumps([a.__dict__ for a in accounts] if hasattr(accounts[0], "__dict__") else
                 [{{k: getattr(a, k) for k in a.__slots__}} for a in accounts]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    accounts = json.loads(done.stdout.strip().splitlines()[-1])
    import csv

    with (consortium / "registry" / "enterprises.csv").open(encoding="utf-8") as handle:
        registry = list(csv.DictReader(handle))
    _store_evaluations([row["credit_code"] for row in registry], env)
    demo_codes = {a["credit_code"] for a in accounts if a["credit_code"]}
    banks = {
        row.split(",")[2]
        for register in (consortium / "banks").glob("*/account_register.csv")
        for row in register.read_text("utf-8-sig").splitlines()[1:]
    }
    newcomer = next(
        r for r in registry if r["credit_code"] not in demo_codes and r["credit_code"] in banks
    )
    analyst = next(a for a in accounts if a["role"] == "analyst")
    owner = next(a for a in accounts if a["role"] == "enterprise")
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "browser_app:create",
            "--app-dir",
            str(Path(__file__).parent),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("the server did not start")
        yield Server(
            url=url,
            data_dir=root / "data",
            sms=root / "sms.jsonl",
            registry=registry,
            analyst=(analyst["phone"], analyst["password"]),
            enterprise=(owner["phone"], owner["password"], owner["credit_code"]),
            newcomer=newcomer,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("FLOWBUREAU_UPDATE_SCREENSHOTS") == "1":
        target = REPO / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        return target
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def _page(browser: object, errors: list[str], lang: str = "zh") -> object:
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": 1280, "height": 900}, locale="zh-CN" if lang == "zh" else "en-US"
    )
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if _unexpected(m) else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


def _unexpected(message: object) -> bool:
    """A console error, except the browser's note on the pages answered 403/422 on purpose."""
    text = str(message.text)  # type: ignore[attr-defined]
    if message.type != "error":  # type: ignore[attr-defined]
        return False
    return not re.search(r"status of (403|422) ", text)


def _sms_code(server: Server, phone: str) -> str:
    lines = [json.loads(line) for line in server.sms.read_text("utf-8").splitlines()]
    texts = [m["text"] for m in lines if m["phone"] == "+86" + phone]
    found = re.search(r"\b(\d{6})\b", texts[-1])
    assert found, texts[-1]
    return found.group(1)


def _login(page: object, server: Server, phone: str, password: str, target: str) -> None:
    page.goto(f"{server.url}/console/login?next={target}")  # type: ignore[attr-defined]
    page.fill("#phone", phone)  # type: ignore[attr-defined]
    page.fill("#password", password)  # type: ignore[attr-defined]
    page.click("#login-submit")  # type: ignore[attr-defined]


def test_enterprise_and_institution_journeys(server: Server, browser: object, shots: Path) -> None:
    errors: list[str] = []
    page = _page(browser, errors)
    newcomer = server.newcomer
    # the enterprise registers with the SMS code
    page.goto(server.url + "/")
    page.screenshot(path=str(shots / "console-landing.png"), full_page=True)
    page.click("text=注册企业账户")
    page.fill("#phone", NEW_PHONE)
    page.click("#send-code")
    page.fill("#code", _sms_code(server, NEW_PHONE))
    page.fill("#enterprise_name", newcomer["name"])
    page.fill("#password", PASSWORD)
    page.click("#register-submit")
    page.wait_for_url("**/console/enterprise/profile")
    # part of its information, then an application: refused with every missing field
    page.fill("#credit_code", newcomer["credit_code"])
    page.click("#save-profile")
    page.wait_for_selector("#saved")
    page.goto(server.url + "/console/enterprise/applications/new")
    page.fill("#requested_amount", "800000")
    page.fill("#term_months", "12")
    page.click("#submit-application")
    missing = page.inner_text("#missing-fields")
    for label in ("行业代码", "注册日期", "注册资本", "法定代表人", "银行账户"):
        assert label in missing
    page.screenshot(path=str(shots / "enterprise-missing-fields.png"), full_page=True)
    # sent back to the profile form to complete it
    page.click("#complete-profile")
    page.wait_for_url("**/console/enterprise/profile")
    page.fill("#industry_code", newcomer["division"])  # the section letter is derived
    page.fill("#registration_date", newcomer["registration_date"])
    page.fill("#registered_capital", "5000000")
    page.fill("#legal_representative", newcomer["legal_representative"])
    page.fill("#address", newcomer["address"])
    page.fill("#contact_name", newcomer["legal_representative"])
    page.fill("#contact_phone", NEW_PHONE)
    page.locator("input[name=bank_name]").first.fill("兴业银行福州分行")
    page.locator("input[name=account_number]").first.fill("6222021234567890")
    page.click("#save-profile")
    page.wait_for_selector("#saved")
    assert page.locator("#missing").count() == 0
    page.screenshot(path=str(shots / "enterprise-profile.png"), full_page=True)
    page.goto(server.url + "/console/enterprise/applications/new")
    page.fill("#requested_amount", "800000")
    page.fill("#term_months", "12")
    page.click("#submit-application")
    page.wait_for_url("**/console/enterprise/applications/*")
    assert page.get_attribute("#application-status", "data-status") == "evaluated"
    page.wait_for_selector("[data-chart='score-gauge'][data-drawn='true']")
    page.screenshot(path=str(shots / "enterprise-application-evaluated.png"), full_page=True)
    # consent to the demo institution
    page.goto(server.url + "/console/enterprise/consents")
    page.click("#grant-consent")
    page.wait_for_selector("#consents .badge.live")
    page.screenshot(path=str(shots / "enterprise-consents.png"), full_page=True)

    # the institution's analyst finds it and opens the dashboard
    analyst = _page(browser, errors)
    _login(analyst, server, *server.analyst, "/console/institution")
    analyst.wait_for_url("**/console/institution")
    analyst.fill("#q", newcomer["name"][2:6])
    analyst.click("#search-submit")
    assert newcomer["credit_code"] in analyst.inner_text("#search-results")
    analyst.click("#search-results .open-dashboard")
    analyst.wait_for_selector("[data-chart='cashflow-chart'][data-drawn='true']")
    analyst.wait_for_selector("[data-chart='score-gauge'][data-drawn='true']")
    assert analyst.inner_text("#score-grade") in {"BBB", "BB", "B"}
    assert analyst.locator("#reasons tbody tr").count() == 3
    api_score = _api_score(server, newcomer["credit_code"])
    assert analyst.inner_text("#score-value") == str(api_score["score"])
    cases = api_score["similar_cases"]  # the page shows what the provider gives, all of it
    if cases:
        assert analyst.locator("#cases tbody tr").count() == len(cases)
    else:
        assert analyst.locator("#cases").count() == 0
        assert "相似案例" in analyst.inner_text("#score-panel")
    analyst.screenshot(path=str(shots / "institution-dashboard.png"), full_page=True)
    dashboard = analyst.url
    # the same dashboard in English
    analyst.click("a.lang")
    analyst.wait_for_selector("text=Credit score")
    analyst.wait_for_selector("[data-chart='score-gauge'][data-drawn='true']")
    analyst.screenshot(path=str(shots / "institution-dashboard-en.png"), full_page=True)
    analyst.click("a.lang")  # back to Chinese

    # the enterprise revokes; the analyst's next look is refused with the reason
    page.goto(server.url + "/console/enterprise/consents")
    page.click("#consents button.revoke")
    page.wait_for_selector("#consents .badge.revoked")
    response = analyst.goto(dashboard)
    assert response is not None
    assert response.status == 403
    assert "revoked" in analyst.inner_text("#error-detail")
    analyst.screenshot(path=str(shots / "institution-refused.png"), full_page=True)
    assert errors == []


def _api_score(server: Server, code: str) -> dict[str, object]:
    with httpx.Client(base_url=server.url) as client:
        login = client.post(
            "/v1/auth/login", json={"phone": server.analyst[0], "password": server.analyst[1]}
        )
        token = login.json()["access_token"]
        response = client.get(
            f"/v1/enterprises/{code}/score?purpose=pre_loan_review",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body


def test_csrf_and_cookie_attributes(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        login = client.get("/console/login")
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "Path=/console" in cookie
        assert "SameSite=lax" in cookie
        refused = client.post(
            "/console/login", data={"phone": server.analyst[0], "password": server.analyst[1]}
        )
        assert refused.status_code == 403
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert token is not None
        accepted = client.post(
            "/console/login",
            data={
                "phone": server.analyst[0],
                "password": server.analyst[1],
                "csrf_token": token.group(1),
            },
        )
        assert accepted.status_code == 303
        assert accepted.headers["location"] == "/console/institution"
