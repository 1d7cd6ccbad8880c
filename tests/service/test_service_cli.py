"""The operators' CLI: institutions, API keys (printed once), staff users, migrations."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from flowbureau.cli import app as cli
from flowbureau.config import get_settings
from flowbureau.service.app import create_app
from flowbureau.storage.database import head_revision

runner = CliRunner()


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUREAU_SERVICE__ARGON2_MEMORY_KIB", "1024")
    monkeypatch.setenv("FLOWBUREAU_SERVICE__ARGON2_TIME_COST", "1")
    monkeypatch.setenv("FLOWBUREAU_SERVICE__ARGON2_PARALLELISM", "1")
    get_settings.cache_clear()


def _json(*args: str, **env: str) -> dict[str, Any]:
    result = runner.invoke(cli, [*args, "--json"], env=env or None)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_operator_creates_an_institution_a_key_and_an_analyst() -> None:
    bank = _json("admin", "create-institution", "闽江银行")
    assert bank["name"] == "闽江银行"
    duplicate = runner.invoke(cli, ["admin", "create-institution", "闽江银行"])
    assert duplicate.exit_code != 0
    key = _json("admin", "create-api-key", "闽江银行", "--scopes", "view_score,ask")
    assert key["scopes"] == ["ask", "view_score"]
    assert str(key["key"]).startswith(f"fbk_{key['key_id']}_")
    analyst = _json(
        "admin",
        "create-user",
        "--role",
        "analyst",
        "--phone",
        "13700137000",
        "--institution",
        str(bank["id"]),
        FLOWBUREAU_NEW_USER_PASSWORD="analyst password 1",
    )
    assert analyst["institution_id"] == bank["id"]
    with TestClient(create_app()) as client:
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {key['key']}"}).json()
        assert me == {
            "kind": "api_key",
            "id": key["key_id"],
            "role": "api_client",
            "institution_id": bank["id"],
            "enterprise_id": None,
            "scopes": ["ask", "view_score"],
        }
        login = client.post(
            "/v1/auth/login", json={"phone": "13700137000", "password": "analyst password 1"}
        )
        assert login.status_code == 200
    rotated = _json("admin", "rotate-api-key", str(key["key_id"]))
    assert rotated["replaces"] == key["key_id"]
    listed = _json("admin", "list-api-keys", "闽江银行")
    states = {k["key_id"]: k["state"] for k in listed["keys"]}
    assert states == {key["key_id"]: "revoked", rotated["key_id"]: "live"}
    assert (
        str(rotated["key"]) not in runner.invoke(cli, ["admin", "list-api-keys", "闽江银行"]).output
    )


def test_bad_input_names_the_problem() -> None:
    missing = runner.invoke(cli, ["admin", "create-api-key", "no-such-bank"])
    assert missing.exit_code != 0
    assert "no institution" in str(missing.exception)
    _json("admin", "create-institution", "Bank")
    scopes = runner.invoke(cli, ["admin", "create-api-key", "Bank", "--scopes", "rob_the_vault"])
    assert "rob_the_vault" in str(scopes.exception)
    orphan = runner.invoke(
        cli,
        ["admin", "create-user", "--role", "analyst", "--phone", "13700137000"],
        env={"FLOWBUREAU_NEW_USER_PASSWORD": "analyst password 1"},
    )
    assert "an analyst needs an institution" in str(orphan.exception)


def test_db_upgrade_and_sql() -> None:
    result = runner.invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0
    assert f"revision {head_revision()}" in result.output
    sql = runner.invoke(cli, ["db", "upgrade", "--sql"])
    assert "CREATE TABLE audit_log" in sql.output
    assert "INSERT INTO audit_head" in sql.output


def test_every_command_has_help() -> None:
    for args in (
        ["serve"],
        ["admin", "create-institution"],
        ["admin", "create-api-key"],
        ["admin", "rotate-api-key"],
        ["admin", "revoke-api-key"],
        ["admin", "list-api-keys"],
        ["admin", "create-user"],
        ["audit", "verify"],
        ["db", "upgrade"],
        ["db", "revision"],
    ):
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, args
        assert "Usage" in result.output
