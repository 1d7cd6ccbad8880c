"""Signed webhooks on grade changes: consent gating, signatures, retries with backoff,
cancellation on revocation, recorded deliveries and audit entries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from service_helpers import CODE_A, CODE_B, Api, bearer

from flowbureau.errors import InputError
from flowbureau.scoring.history import ScoreEvaluation, record_evaluations
from flowbureau.service import accounts, apikeys, webhooks
from flowbureau.service.models import AuditEntry, Role, WebhookDelivery
from flowbureau.service.principals import Principal
from flowbureau.storage.database import session_scope


@dataclass
class Receiver:
    """A fake institution endpoint: answers with the queued statuses, records what it got."""

    statuses: list[int] = field(default_factory=list)
    received: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200)


@dataclass
class Setup:
    api: Api
    owner: dict[str, str]
    bank_id: str
    key: str
    receiver: Receiver
    client: httpx.Client
    secret: str = ""
    consent_id: str = ""


@pytest.fixture
def setup(scored_api: Api) -> Iterator[Setup]:
    api = scored_api
    owner = api.enterprise("13800138000", CODE_A)
    with session_scope(api.context.sessions) as db:
        bank = accounts.create_institution(db, name="Bank", now=api.clock())
        _row, key = apikeys.create_api_key(
            db, institution_id=bank.id, scopes=["view_score"], now=api.clock()
        )
    receiver = Receiver()
    with httpx.Client(transport=httpx.MockTransport(receiver)) as client:
        yield Setup(api, owner, bank.id, key, receiver, client)


def _consent(s: Setup, scopes: list[str] | None = None) -> str:
    response = s.api.client.post(
        "/v1/consents",
        json={
            "institution_id": s.bank_id,
            "purpose": "post_loan_monitoring",
            "scopes": scopes or ["view_score"],
            "expires_at": (s.api.clock() + timedelta(days=90)).isoformat(),
        },
        headers=s.owner,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _endpoint(s: Setup) -> str:
    response = s.api.client.post(
        "/v1/webhooks", json={"url": "https://bank.example/hooks"}, headers=bearer(s.key)
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["secret"].startswith("whsec_")
    s.secret = body["secret"]
    assert "secret" not in s.api.client.get("/v1/webhooks", headers=bearer(s.key)).json()[0]
    return str(body["id"])


def _downgrade(s: Setup, code: str = CODE_A) -> None:
    now = s.api.clock()
    with session_scope(s.api.context.sessions) as db:
        for k, (grade, rank, pd) in enumerate((("BBB", 3, 0.005), ("B", 5, 0.06))):
            record_evaluations(
                db,
                [
                    ScoreEvaluation(
                        enterprise_id=code,
                        as_of=now.date() + timedelta(days=k),
                        computed_at=now,
                        model_name="credit",
                        model_version=1,
                        score=640 - 60 * k,
                        pd=pd,
                        grade=grade,
                        grade_rank=rank,
                        reasons=[],
                        cases=[],
                        features={},
                        data_summary={},
                        sources=[],
                        data_fingerprint=f"f{k}",
                    )
                ],
                pd_jump=0.05,
                now=now,
            )


def _dispatcher(s: Setup) -> webhooks.WebhookDispatcher:
    context = s.api.context
    return webhooks.WebhookDispatcher(
        context.sessions, vault=context.vault, settings=context.settings.service, clock=s.api.clock
    )


def _deliveries(s: Setup) -> list[WebhookDelivery]:
    with s.api.context.sessions() as db:
        return list(db.execute(sa.select(WebhookDelivery)).scalars())


def test_signed_delivery_with_retry_and_backoff(setup: Setup) -> None:
    s = setup
    endpoint = _endpoint(s)
    consent_id = _consent(s)
    _downgrade(s)  # BBB -> B: one downgrade alert and one PD-jump alert
    s.receiver.statuses = [500, 500]
    first = _dispatcher(s).run_once(s.client)
    assert (first.delivered, first.retrying) == (0, 2)
    pending = _deliveries(s)
    assert {d.attempts for d in pending} == {1}
    assert {d.last_status_code for d in pending} == {500}
    assert {d.consent_id for d in pending} == {consent_id}
    retry = s.api.context.settings.service.webhook_retry_base_seconds
    assert {d.next_attempt_at for d in pending} == {s.api.clock() + timedelta(seconds=retry)}
    assert _dispatcher(s).run_once(s.client).delivered == 0  # not due yet
    s.api.clock.advance(seconds=retry)
    second = _dispatcher(s).run_once(s.client)
    assert second.delivered == 2
    assert len(s.receiver.received) == 4
    request = s.receiver.received[-1]
    body = request.content
    assert webhooks.verify_signature(
        s.secret,
        timestamp=request.headers[webhooks.TIMESTAMP_HEADER],
        signature=request.headers[webhooks.SIGNATURE_HEADER],
        body=body,
        now=s.api.clock(),
    )
    assert not webhooks.verify_signature(
        s.secret,
        timestamp=request.headers[webhooks.TIMESTAMP_HEADER],
        signature=request.headers[webhooks.SIGNATURE_HEADER],
        body=body.replace(b'"B"', b'"A"'),
        now=s.api.clock(),
    )
    assert not webhooks.verify_signature(  # a replay ten minutes later
        s.secret,
        timestamp=request.headers[webhooks.TIMESTAMP_HEADER],
        signature=request.headers[webhooks.SIGNATURE_HEADER],
        body=body,
        now=s.api.clock() + timedelta(minutes=10),
    )
    events = {json.loads(r.content)["type"] for r in s.receiver.received}
    assert events == {"score.downgraded", "score.pd_jump"}
    data = json.loads(s.receiver.received[0].content)["data"]
    assert (data["credit_code"], data["previous_grade"], data["grade"]) == (CODE_A, "BBB", "B")
    listed = s.api.client.get(f"/v1/webhooks/{endpoint}/deliveries", headers=bearer(s.key)).json()
    assert {d["status"] for d in listed} == {"delivered"}
    assert {d["attempts"] for d in listed} == {2}
    with s.api.context.sessions() as db:
        audited = (
            db.execute(sa.select(AuditEntry).where(AuditEntry.operation == "webhook_view_score"))
            .scalars()
            .all()
        )
    assert len(audited) == 2
    assert {a.consent_id for a in audited} == {consent_id}
    assert _dispatcher(s).run_once(s.client).delivered == 0  # nothing twice


def test_no_consent_no_delivery_and_revocation_cancels(setup: Setup) -> None:
    s = setup
    _endpoint(s)
    _consent(s, scopes=["view_report"])  # live, but not covering view_score
    _downgrade(s)
    _dispatcher(s).run_once(s.client)
    assert _deliveries(s) == []
    assert s.receiver.received == []
    consent_id = _consent(s)
    s.api.clock.advance(days=1)
    _downgrade(s)  # new alerts while the consent is live: queued
    with session_scope(s.api.context.sessions) as db:
        webhooks.collect_events(db, now=s.api.clock())
    assert {d.status for d in _deliveries(s)} == {"pending"}
    s.owner = s.api.login("13800138000")  # the day-old access token has expired
    revoked = s.api.client.delete(f"/v1/consents/{consent_id}", headers=s.owner)
    assert revoked.status_code == 204  # revoked before sending
    report = _dispatcher(s).run_once(s.client)
    assert report.cancelled == 2
    assert {d.status for d in _deliveries(s)} == {"cancelled"}
    assert s.receiver.received == []


def test_gives_up_after_the_last_attempt(setup: Setup, make_api: object) -> None:
    s = setup
    _endpoint(s)
    _consent(s)
    _downgrade(s)
    limit = s.api.context.settings.service.webhook_max_attempts
    s.receiver.statuses = [503] * (2 * limit)
    for _ in range(limit):
        _dispatcher(s).run_once(s.client)
        s.api.clock.advance(hours=7)  # past the longest backoff
    deliveries = _deliveries(s)
    assert {d.status for d in deliveries} == {"failed"}
    assert {d.attempts for d in deliveries} == {limit}
    assert len(s.receiver.received) == 2 * limit


def test_only_institutions_manage_webhooks_and_urls_are_checked(setup: Setup) -> None:
    s = setup
    refused = s.api.client.post(
        "/v1/webhooks", json={"url": "https://x.example/h"}, headers=s.owner
    )
    assert refused.status_code == 403
    bad = s.api.client.post(
        "/v1/webhooks", json={"url": "ftp://x.example/h"}, headers=bearer(s.key)
    )
    assert bad.status_code == 422
    assert bad.json()["field"] == "url"
    unknown = s.api.client.post(
        "/v1/webhooks",
        json={"url": "https://x.example/h", "events": ["score.upgraded"]},
        headers=bearer(s.key),
    )
    assert unknown.status_code == 422
    principal = Principal(kind="api_key", id="k", role=Role.API_CLIENT, institution_id=s.bank_id)
    with s.api.context.sessions() as db, pytest.raises(InputError, match="https in production"):
        webhooks.create_endpoint(
            db,
            principal=principal,
            url="http://x.example/h",
            events=["score.downgraded"],
            vault=s.api.context.vault,
            production=True,
            now=s.api.clock(),
        )
    other = s.api.enterprise("13900139001", CODE_B)
    assert other  # a second enterprise exists; a foreign endpoint id is not found
    endpoint = _endpoint(s)
    with session_scope(s.api.context.sessions) as db:
        rival = accounts.create_institution(db, name="Rival", now=s.api.clock())
        _r, rival_key = apikeys.create_api_key(
            db, institution_id=rival.id, scopes=["view_score"], now=s.api.clock()
        )
    foreign = s.api.client.delete(f"/v1/webhooks/{endpoint}", headers=bearer(rival_key))
    assert foreign.status_code == 404
    assert s.api.client.delete(f"/v1/webhooks/{endpoint}", headers=bearer(s.key)).status_code == 204
