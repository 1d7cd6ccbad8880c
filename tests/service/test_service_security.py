"""Security: production refuses unsafe settings, security headers, CSRF for cookie sessions,
personal data encrypted at rest, problem details for every error."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from service_helpers import CODE_A, Api, make_settings

from flowbureau.config import Settings
from flowbureau.errors import ConfigurationError, IntegrityError
from flowbureau.service.app import create_app
from flowbureau.service.middleware import SESSION_COOKIE, CSRFMiddleware, csrf_token_for
from flowbureau.service.vault import Vault
from flowbureau.storage.database import upgrade_database

STRONG = {
    "pseudonym_key": SecretStr("p" * 40),
    "vault_key": SecretStr("v" * 40),
    "secret_key": SecretStr("s" * 40),
}


def test_production_refuses_default_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUREAU_ENV", "production")
    with pytest.raises(ConfigurationError, match="FLOWBUREAU_SECRET_KEY"):
        Settings()


def test_production_refuses_codes_in_logs_or_files(tmp_path: Path) -> None:
    for backend in ("console", f"file:{tmp_path / 'sms.jsonl'}"):
        settings = Settings(env="production", data_dir=tmp_path, sms_backend=backend, **STRONG)
        with pytest.raises(ConfigurationError, match="SMS_BACKEND"):
            create_app(settings)


def test_production_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    settings = Settings(
        env="production", data_dir=tmp_path, sms_backend="https://sms.example/send", **STRONG
    )
    with pytest.raises(ConfigurationError, match="flowbureau db upgrade"):
        create_app(settings)
    upgrade_database(settings.resolved_database_url)
    assert isinstance(create_app(settings), FastAPI)


def test_security_headers(api: Api) -> None:
    response = api.client.get("/healthz")
    assert response.status_code == 200
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert len(headers["X-Request-ID"]) == 32
    assert "Strict-Transport-Security" not in headers  # only in production, behind TLS
    echoed = api.client.get("/healthz", headers={"X-Request-ID": "client-42"})
    assert echoed.headers["X-Request-ID"] == "client-42"


def test_docs_work_offline(api: Api) -> None:
    docs = api.client.get("/docs")
    assert docs.status_code == 200
    csp = docs.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp
    assert "http" not in csp  # nothing from another origin, so no CDN
    assert "<script>" not in docs.text  # no inline script (the CSP would block it)
    scripts = re.findall(r'<script src="([^"]+)"', docs.text)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', docs.text)
    assert scripts
    assert styles
    for asset in scripts + styles:
        assert asset.startswith("/")
        response = api.client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 100
    bundle = api.client.get("/static/vendor/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content
    assert bundle.headers["Cache-Control"].startswith("public")
    redoc = api.client.get("/redoc")
    assert '<redoc spec-url="/openapi.json">' in redoc.text
    assert api.client.get("/static/vendor/redoc.standalone.js").status_code == 200
    assert api.client.get("/static/vendor/..%2Fsecrets").status_code == 404
    assert api.client.get("/static/vendor/plotly.min.js").content.startswith(b"/**")


def test_an_unexpected_error_is_a_problem_with_headers(api: Api) -> None:
    def explode() -> None:
        raise RuntimeError("boom: a bug")

    api.client.app.add_api_route("/v1/explode", explode)  # type: ignore[attr-defined]
    response = api.client.get("/v1/explode", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["X-Request-ID"] == "req-500"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    body = response.json()
    assert body["type"] == "urn:flowbureau:problem:internal-error"
    assert body["request_id"] == "req-500"
    assert "boom" not in response.text  # the traceback goes to the log only


def test_errors_are_problem_details(api: Api) -> None:
    for response in (
        api.client.get("/no/such/route"),
        api.client.get("/v1/me"),
        api.client.post("/v1/auth/sms-code", json={"phone": "1"}),
        api.client.post(
            "/v1/auth/sms-code", content=b"{not json", headers={"content-type": "application/json"}
        ),
    ):
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["status"] == response.status_code
        assert {"type", "title", "status"} <= body.keys()


def _csrf_app() -> TestClient:
    inner = FastAPI()

    @inner.post("/form")
    def form() -> dict[str, bool]:
        return {"done": True}

    inner.add_middleware(CSRFMiddleware, secret=b"k" * 32)
    return TestClient(inner)


def test_csrf_protects_cookie_sessions() -> None:
    client = _csrf_app()
    token = csrf_token_for("session-1", b"k" * 32)
    # a Bearer-only client carries no cookie and is not exposed to CSRF
    assert client.post("/form").status_code == 200
    client.cookies.set(SESSION_COOKIE, "session-1")
    refused = client.post("/form")
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:flowbureau:problem:csrf-failed"
    assert client.post("/form", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post("/form", headers={"X-CSRF-Token": token}).status_code == 200
    form = client.post("/form", data={"csrf_token": token, "note": "x"})
    assert form.status_code == 200
    other = csrf_token_for("session-2", b"k" * 32)
    assert client.post("/form", data={"csrf_token": other}).status_code == 403
    assert client.get("/form").status_code == 405  # safe methods pass the check


def test_personal_data_is_encrypted_at_rest(api: Api) -> None:
    api.enterprise("13800138000", CODE_A)
    db_path = api.context.settings.data_dir / "flowbureau.db"
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(FULL)")
        dump = "\n".join(conn.iterdump())
    raw = db_path.read_bytes()
    for secret in ("13800138000", "13900139000", "6222021234567890", "62220212"):
        assert secret not in dump
        assert secret.encode() not in raw
    assert CODE_A in dump  # the credit code is a public registration number, kept clear


def test_vault_binds_ciphertexts_to_their_column() -> None:
    vault = Vault("v" * 40)
    blob = vault.encrypt("+8613800138000", context="users.phone")
    assert vault.decrypt(blob, context="users.phone") == "+8613800138000"
    assert vault.encrypt("+8613800138000", context="users.phone") != blob  # random nonce
    with pytest.raises(IntegrityError, match="does not decrypt"):
        vault.decrypt(blob, context="enterprises.contact_phone")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(IntegrityError):
        vault.decrypt(tampered, context="users.phone")
    with pytest.raises(IntegrityError):
        Vault("w" * 40).decrypt(blob, context="users.phone")
    lookup = vault.lookup("+8613800138000", context="users.phone")
    assert lookup == vault.lookup("+8613800138000", context="users.phone")
    assert lookup != Vault("w" * 40).lookup("+8613800138000", context="users.phone")
    assert lookup != vault.lookup("+8613800138000", context="other")


def test_settings_group_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLOWBUREAU_SMS_BACKEND", f"file:{tmp_path / 'x.jsonl'}")
    monkeypatch.setenv("FLOWBUREAU_SERVICE__ACCESS_TOKEN_MINUTES", "7")
    settings = Settings()
    assert settings.sms_backend.startswith("file:")
    assert settings.service.access_token_minutes == 7
    assert make_settings(tmp_path).service.argon2_memory_kib == 1024
