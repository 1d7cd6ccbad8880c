"""Institution API keys: hashed at rest, scoped, rotatable (with grace), revocable, rate limited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from service_helpers import CODE_A, Api, StubScores, bearer

from flowbureau.errors import AuthenticationError, InputError
from flowbureau.service import accounts, apikeys, audit
from flowbureau.service.models import ApiKey, AuditEntry, Consent, Purpose
from flowbureau.storage.database import session_scope


def _bank_with_consent(api: Api) -> str:
    """An institution with a live pre-loan consent (all operations) from enterprise A."""
    owner = api.enterprise("13800138000", CODE_A)
    enterprise_id = api.client.get("/v1/me", headers=owner).json()["enterprise_id"]
    now = api.clock()
    with session_scope(api.context.sessions) as db:
        bank = accounts.create_institution(db, name="Bank", now=now)
        owner_id = api.client.get("/v1/me", headers=owner).json()["id"]
        db.add(
            Consent(
                enterprise_id=enterprise_id,
                institution_id=bank.id,
                purpose=Purpose.PRE_LOAN_REVIEW,
                scopes=["view_report", "view_score", "view_transactions"],
                expires_at=now + timedelta(days=10),
                created_at=now,
                created_by=owner_id,
            )
        )
    return bank.id


def _key(api: Api, bank_id: str, scopes: list[str]) -> str:
    with session_scope(api.context.sessions) as db:
        _row, key = apikeys.create_api_key(
            db, institution_id=bank_id, scopes=scopes, now=api.clock()
        )
    return key


def _get(api: Api, key: str, what: str = "score") -> int:
    url = f"/v1/enterprises/{CODE_A}/{what}?purpose=pre_loan_review"
    return api.client.get(url, headers=bearer(key)).status_code


def test_key_is_stored_only_as_a_hash(scored_api: Api) -> None:
    bank_id = _bank_with_consent(scored_api)
    key = _key(scored_api, bank_id, ["view_score"])
    assert key.startswith("fbk_")
    with session_scope(scored_api.context.sessions) as db:
        row = db.execute(sa.select(ApiKey)).scalar_one()
    assert row.key_hash != key
    assert key.split("_")[1] == row.key_id
    db_bytes = (scored_api.context.settings.data_dir / "flowbureau.db").read_bytes()
    assert key.rsplit("_", 1)[1].encode() not in db_bytes
    assert _get(scored_api, key) == 200


def test_scopes_limit_what_a_key_can_do(scored_api: Api) -> None:
    bank_id = _bank_with_consent(scored_api)
    key = _key(scored_api, bank_id, ["view_score"])
    assert _get(scored_api, key, "score") == 200
    refused = scored_api.client.get(
        f"/v1/enterprises/{CODE_A}/report?purpose=pre_loan_review", headers=bearer(key)
    )
    assert refused.status_code == 403
    assert "scopes (view_score) do not include view_report" in refused.json()["detail"]


def test_unknown_scopes_are_refused(api: Api) -> None:
    with session_scope(api.context.sessions) as db:
        bank = accounts.create_institution(db, name="Bank", now=api.clock())
        with pytest.raises(InputError, match="unknown: delete_everything"):
            apikeys.create_api_key(
                db,
                institution_id=bank.id,
                scopes=["view_score", "delete_everything"],
                now=api.clock(),
            )
        with pytest.raises(InputError, match="non-empty"):
            apikeys.create_api_key(db, institution_id=bank.id, scopes=[], now=api.clock())


def test_rotation_retires_the_old_key(scored_api: Api) -> None:
    api = scored_api
    bank_id = _bank_with_consent(api)
    old = _key(api, bank_id, ["view_score", "view_report"])
    with session_scope(api.context.sessions) as db:
        row, new = apikeys.rotate_api_key(db, key_id=old.split("_")[1], now=api.clock())
    assert row.scopes == ["view_report", "view_score"]
    assert _get(api, old) == 401
    assert _get(api, new) == 200
    with session_scope(api.context.sessions) as db, pytest.raises(InputError, match="retired"):
        apikeys.rotate_api_key(db, key_id=old.split("_")[1], now=api.clock())


def test_rotation_with_grace_keeps_the_old_key_for_a_while(scored_api: Api) -> None:
    api = scored_api
    bank_id = _bank_with_consent(api)
    old = _key(api, bank_id, ["view_score"])
    with session_scope(api.context.sessions) as db:
        _row, new = apikeys.rotate_api_key(
            db, key_id=old.split("_")[1], now=api.clock(), grace=timedelta(minutes=10)
        )
    assert _get(api, old) == 200
    api.clock.advance(minutes=10)
    assert _get(api, old) == 401
    assert _get(api, new) == 200


def test_revoked_key_is_refused(scored_api: Api) -> None:
    api = scored_api
    bank_id = _bank_with_consent(api)
    key = _key(api, bank_id, ["view_score"])
    with session_scope(api.context.sessions) as db:
        apikeys.revoke_api_key(db, key_id=key.split("_")[1], now=api.clock())
        with pytest.raises(AuthenticationError, match="revoked"):
            apikeys.authenticate_api_key(db, presented=key, now=api.clock())
    response = api.client.get("/v1/me", headers=bearer(key))
    assert response.status_code == 401


def test_a_revocation_applies_to_the_very_next_read_and_every_read_is_audited(
    scored_api: Api,
) -> None:
    api = scored_api
    bank_id = _bank_with_consent(api)
    key = _key(api, bank_id, ["view_score"])

    def audited() -> int:
        with session_scope(api.context.sessions) as db:
            return int(db.execute(sa.select(sa.func.count()).select_from(AuditEntry)).scalar_one())

    before = audited()
    assert [_get(api, key) for _ in range(3)] == [200, 200, 200]
    assert audited() == before + 3
    with session_scope(api.context.sessions) as db:
        apikeys.revoke_api_key(db, key_id=key.split("_")[1], now=api.clock())
    assert _get(api, key) == 401  # nothing caches a key between requests
    with session_scope(api.context.sessions) as db:
        assert audit.verify(db).ok


def test_a_guessed_secret_for_a_real_key_id_is_refused(scored_api: Api) -> None:
    bank_id = _bank_with_consent(scored_api)
    key = _key(scored_api, bank_id, ["view_score"])
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert _get(scored_api, forged) == 401


def test_requests_per_key_are_limited(make_api: Callable[..., Api]) -> None:
    api = make_api(api_key_requests_per_minute=3)
    api.context.provider_factory = lambda db: StubScores(db, {CODE_A})
    bank_id = _bank_with_consent(api)
    key = _key(api, bank_id, ["view_score"])
    other = _key(api, bank_id, ["view_score"])
    statuses = [_get(api, key) for _ in range(4)]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3] == 429
    assert _get(api, other) == 200  # each key has its own budget
