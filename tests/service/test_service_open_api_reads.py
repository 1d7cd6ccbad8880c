"""The open API's hot reads: the API key and the consents in one query, one connection per
read, the view serialised once, the busiest router first without changing what any path means."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from service_helpers import CODE_A, CODE_B, Api, bearer

from flowbureau.errors import AuthenticationError, PermissionDeniedError
from flowbureau.service import accounts, apikeys, audit, consent
from flowbureau.service.models import AuditEntry, Consent, Operation, Purpose
from flowbureau.service.principals import api_key_principal
from flowbureau.service.providers import ScoreView
from flowbureau.storage.database import session_scope


def _enterprise(api: Api) -> tuple[str, str]:
    """Enterprise A's id and its owner's user id."""
    owner = api.enterprise("13800138000", CODE_A)
    me = api.client.get("/v1/me", headers=owner).json()
    return me["enterprise_id"], me["id"]


def _bank(api: Api, name: str) -> str:
    with session_scope(api.context.sessions) as db:
        return accounts.create_institution(db, name=name, now=api.clock()).id


def _consent(api: Api, enterprise_id: str, owner_id: str, bank_id: str, **over: Any) -> str:
    now = api.clock()
    fields: dict[str, Any] = {
        "enterprise_id": enterprise_id,
        "institution_id": bank_id,
        "purpose": Purpose.PRE_LOAN_REVIEW,
        "scopes": ["view_score"],
        "expires_at": now + timedelta(days=10),
        "created_at": now,
        "created_by": owner_id,
    } | over
    with session_scope(api.context.sessions) as db:
        row = Consent(**fields)
        db.add(row)
        db.flush()
        return row.id


def _key(api: Api, bank_id: str) -> str:
    with session_scope(api.context.sessions) as db:
        _row, key = apikeys.create_api_key(
            db, institution_id=bank_id, scopes=["view_score"], now=api.clock()
        )
    return key


def test_the_key_and_the_consents_come_in_one_query_and_the_key_is_checked_first(
    api: Api,
) -> None:
    enterprise_id, owner_id = _enterprise(api)
    bank, other_bank = _bank(api, "Bank"), _bank(api, "Other bank")
    key = _key(api, bank)
    now = api.clock()
    later = _consent(api, enterprise_id, owner_id, bank, expires_at=now + timedelta(days=20))
    sooner = _consent(api, enterprise_id, owner_id, bank, purpose=Purpose.POST_LOAN_MONITORING)
    _consent(api, enterprise_id, owner_id, other_bank)  # not this key's institution
    statements: list[str] = []
    sa.event.listen(api.context.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with api.context.engine.connect() as connection:
        verified, lookup = consent.verify_api_key_with_consents(
            connection, presented=key, credit_code=CODE_A, now=now
        )
        assert len(statements) == 1
        assert verified == apikeys.verify_api_key(connection, presented=key, now=now)
        assert lookup.institution_id == bank
        assert lookup.enterprise_id == enterprise_id
        assert [c.id for c in lookup.consents] == [later, sooner]  # newest expiry first
        assert lookup.consents[1].purpose is Purpose.POST_LOAN_MONITORING
        assert lookup.consents[0].expires_at == now + timedelta(days=20)  # aware UTC

        nobody = consent.verify_api_key_with_consents(
            connection, presented=key, credit_code=CODE_B, now=now
        )[1]
        assert (nobody.enterprise_id, nobody.consents) == (None, ())

        forged = key[:-1] + ("A" if key[-1] != "A" else "B")
        unknown = "fbk_" + "0" * 16 + key[20:]
        for wrong in (forged, unknown, "fbk_short", "not a key"):
            with pytest.raises(AuthenticationError, match="invalid API key"):
                consent.verify_api_key_with_consents(
                    connection, presented=wrong, credit_code=CODE_A, now=now
                )
    with session_scope(api.context.sessions) as db:
        apikeys.revoke_api_key(db, key_id=verified.key_id, now=now)
    with api.context.engine.connect() as connection, pytest.raises(AuthenticationError) as err:
        consent.verify_api_key_with_consents(connection, presented=key, credit_code=CODE_A, now=now)
    assert "revoked" in str(err.value)


def test_a_lookup_for_another_institution_or_enterprise_is_not_trusted(api: Api) -> None:
    enterprise_id, owner_id = _enterprise(api)
    bank, other_bank = _bank(api, "Bank"), _bank(api, "Other bank")
    _consent(api, enterprise_id, owner_id, bank)
    key, other_key = _key(api, bank), _key(api, other_bank)
    now = api.clock()
    with api.context.engine.connect() as connection:
        _verified, live = consent.verify_api_key_with_consents(
            connection, presented=key, credit_code=CODE_A, now=now
        )
        other = api_key_principal(apikeys.verify_api_key(connection, presented=other_key, now=now))
        for credit_code in (CODE_A, CODE_B):  # other institution; other enterprise
            with pytest.raises(PermissionDeniedError, match="no consent"):
                consent.require_access(
                    connection,
                    principal=other,
                    credit_code=credit_code,
                    operation=Operation.VIEW_SCORE,
                    purpose=Purpose.PRE_LOAN_REVIEW,
                    resource="/test",
                    request_id=None,
                    now=now,
                    lookup=live,
                )


def test_a_score_read_uses_one_connection_and_commits_its_audit_entry_before_reading(
    scored_api: Api,
) -> None:
    api = scored_api
    enterprise_id, owner_id = _enterprise(api)
    bank = _bank(api, "Bank")
    consent_id = _consent(api, enterprise_id, owner_id, bank)
    key = _key(api, bank)
    url = f"/v1/enterprises/{CODE_A}/score?purpose=pre_loan_review"

    def audited() -> int:
        with api.context.sessions() as db:  # another connection sees only committed rows
            return db.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0

    checkouts: list[object] = []
    sa.event.listen(api.context.engine, "checkout", lambda *a: checkouts.append(a[0]))
    assert api.client.get(url, headers=bearer(key)).status_code == 200
    assert len(checkouts) == 1

    seen_by_provider: list[int] = []
    stub = api.context.provider_factory

    def watching(db: Any) -> Any:
        seen_by_provider.append(audited())
        return stub(db)

    before = audited()
    api.context.provider_factory = watching
    response = api.client.get(url, headers=bearer(key))
    assert response.status_code == 200, response.text
    assert seen_by_provider == [before + 1]  # committed before the provider was asked
    with session_scope(api.context.sessions) as db:
        entry = db.execute(sa.select(AuditEntry).order_by(AuditEntry.seq.desc())).scalars().first()
    assert entry is not None
    assert (entry.outcome, entry.consent_id, entry.operation) == (
        "allowed",
        consent_id,
        "view_score",
    )
    assert entry.request_id == response.headers["X-Request-ID"]
    # the view, serialised once, is what the schema says
    assert response.headers["content-type"] == "application/json"
    view = ScoreView.model_validate_json(response.content)
    assert response.content == view.model_dump_json().encode()
    assert (view.credit_code, view.grade) == (CODE_A, "BB")


def test_the_reads_are_documented_with_their_views_and_the_bearer_scheme(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    views = {
        "score": "ScoreView",
        "report": "ReportView",
        "transactions/summary": "TransactionsSummaryView",
    }
    for what, view in views.items():
        get = paths[f"/v1/enterprises/{{credit_code}}/{what}"]["get"]
        schema = get["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{view}"}
        assert get["security"] == [{"HTTPBearer": []}]
        assert {p["name"] for p in get["parameters"]} == {"credit_code", "purpose", "as_of"}
        assert {"401", "403", "404", "422", "429"} <= set(get["responses"])


def _routes(routes: list[Any], group: int | None = None) -> list[tuple[int, Any]]:
    """Every route with the index of the top-level entry (router or route) it belongs to."""
    found: list[tuple[int, Any]] = []
    for index, route in enumerate(routes):
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found += _routes(list(inner.routes), index if group is None else group)
        elif hasattr(route, "path_regex"):
            found.append((index if group is None else group, route))
    return found


def test_no_two_routers_answer_the_same_request(api: Api) -> None:
    """So the order in which routers are included (busiest first) changes nothing else.

    (Within one router the order is the one written there, e.g. ``.../applications/new``
    before ``.../applications/{application_id}``; only the routers' order was changed.)
    """
    routes = _routes(list(api.client.app.router.routes))  # type: ignore[attr-defined]
    assert len({group for group, _ in routes}) > 10
    for group, route in routes:
        example = re.sub(r"\{[^}:]+(:path)?\}", "x1", route.path)
        methods = getattr(route, "methods", None) or {"GET"}
        others = [
            other.path
            for other_group, other in routes
            if other_group != group
            and other.path_regex.match(example)
            and methods & (getattr(other, "methods", None) or {"GET"})
        ]
        assert others == [], f"{route.path} is also answered by {others}"


def test_sqlite_appends_store_exactly_what_the_core_statements_would(api: Api) -> None:
    """On SQLite the append runs on the driver connection; the row is the one Core would write."""
    at = api.clock() + timedelta(microseconds=123457)
    record = audit.AuditRecord(
        at=at,
        actor_kind="api_key",
        actor_id="k1",
        role="api_client",
        operation="view_score",
        resource="/v1/enterprises/x/score?purpose=pre_loan_review",
        outcome="denied",
        credit_code=CODE_A,
        reason="no consent: 没有同意",
    )
    with session_scope(api.context.sessions) as db:
        link = audit.append(db, record)
    with api.context.engine.connect() as connection:  # the same on a plain connection
        second = audit.append(connection, record)
        connection.commit()
    assert second.seq == link.seq + 1
    with session_scope(api.context.sessions) as db:
        stored = db.get_one(AuditEntry, link.seq)
        assert {name: getattr(stored, name) for name in audit._RECORD_FIELDS} == {
            name: getattr(record, name) for name in audit._RECORD_FIELDS
        }
        assert stored.at.tzinfo is UTC
        raw = db.execute(
            sa.text("SELECT at FROM audit_log WHERE seq = :seq"), {"seq": link.seq}
        ).scalar_one()
        # SQLAlchemy's SQLite storage format for an aware time: UTC, microseconds
        assert raw == at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        assert audit.verify(db).ok
