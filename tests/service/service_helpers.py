"""Helpers for the service tests: an app on a fresh SQLite database, a movable clock, the
``file:`` SMS backend (codes are read back from it), cheap argon2 parameters, and a small
client helper that walks the HTTP API like a user would."""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from flowbureau.config import Settings
from flowbureau.service.app import create_app
from flowbureau.service.context import ServiceContext, build_context
from flowbureau.service.providers import (
    CurrencyTotals,
    ReasonView,
    ScoreView,
    ServiceDatabaseProvider,
    TransactionsSummaryView,
)
from flowbureau.service.settings import ServiceSettings

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
# Valid unified social credit codes (check digits computed per GB 32100-2015).
CODE_A = "91350100M000100Y43"
CODE_B = "91110108MA01A0A319"


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_settings(tmp_path: Path, **service: Any) -> Settings:
    """Test settings: own data dir, file SMS backend, cheap argon2."""
    fast = {
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        "webhook_poll_seconds": 0,  # tests run the dispatcher's passes themselves
    }
    return Settings(
        env="test",
        data_dir=tmp_path / "data",
        sms_backend=f"file:{tmp_path / 'sms.jsonl'}",
        service=ServiceSettings(**(fast | service)),
    )


class StubScores(ServiceDatabaseProvider):
    """The database provider plus fixed scores and flows for some credit codes (as the scoring
    engine and the warehouse would provide them), so that allowed reads return 200 with data."""

    def __init__(self, db: Any, scored: set[str]) -> None:
        super().__init__(db)
        self._scored = scored

    def score(self, credit_code: str, as_of: date) -> ScoreView | None:
        if credit_code not in self._scored:
            return None
        return ScoreView(
            credit_code=credit_code,
            as_of=as_of,
            pd=0.031,
            score=688,
            grade="BB",
            reasons=[ReasonView(code="CF01", description="inflows fell 30% year on year")],
            model_version="scorecard-test-1",
            computed_at=START,
        )

    def transactions_summary(self, credit_code: str, as_of: date) -> TransactionsSummaryView | None:
        if credit_code not in self._scored:
            return None
        return TransactionsSummaryView(
            credit_code=credit_code,
            as_of=as_of,
            first_booked_at=datetime(2025, 3, 1, 1, 0, tzinfo=UTC),
            last_booked_at=datetime(2026, 2, 27, 7, 30, tzinfo=UTC),
            transactions=412,
            banks=2,
            accounts=3,
            totals=[
                CurrencyTotals(
                    currency="CNY",
                    transactions=412,
                    inflow_minor=812_345_600,
                    outflow_minor=790_000_000,
                    net_minor=22_345_600,
                )
            ],
        )


@dataclass
class Api:
    """The HTTP API as a user drives it, plus the service context behind it."""

    client: TestClient
    context: ServiceContext
    clock: Clock
    sms_path: Path
    ip_counter: list[int] = field(default_factory=lambda: [0])

    def sms_codes(self, phone: str) -> list[str]:
        """Codes sent to ``phone`` (E.164), oldest first."""
        if not self.sms_path.exists():
            return []
        codes = []
        for line in self.sms_path.read_text("utf-8").splitlines():
            message = json.loads(line)
            found = re.search(r"\b(\d{6})\b", message["text"])
            if message["phone"] == phone and found:
                codes.append(found.group(1))
        return codes

    def request_code(self, phone: str, purpose: str = "register") -> str:
        response = self.client.post("/v1/auth/sms-code", json={"phone": phone, "purpose": purpose})
        assert response.status_code == 202, response.text
        return self.sms_codes("+86" + phone if not phone.startswith("+") else phone)[-1]

    def register(self, phone: str, **extra: Any) -> dict[str, Any]:
        code = self.request_code(phone)
        response = self.client.post(
            "/v1/auth/register",
            json={"phone": phone, "code": code, "password": PASSWORD, **extra},
        )
        assert response.status_code == 201, response.text
        self.clock.advance(seconds=61)  # past the resend interval for later codes
        tokens: dict[str, Any] = response.json()
        return tokens

    def enterprise(
        self, phone: str, credit_code: str, name: str = "测试科技有限公司"
    ) -> dict[str, str]:
        """Register an enterprise user with a complete profile; return its auth headers."""
        headers = bearer(self.register(phone)["access_token"])
        response = self.client.put(
            "/v1/enterprise/profile", json=complete_profile(credit_code, name), headers=headers
        )
        assert response.status_code == 200, response.text
        return headers

    def login(self, phone: str, password: str = PASSWORD) -> dict[str, str]:
        response = self.client.post("/v1/auth/login", json={"phone": phone, "password": password})
        assert response.status_code == 200, response.text
        return bearer(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def complete_profile(credit_code: str, name: str = "测试科技有限公司") -> dict[str, Any]:
    """A profile with every required field."""
    return {
        "name": name,
        "credit_code": credit_code,
        "industry_code": "C3511",
        "registration_date": "2015-06-01",
        "registered_capital": {"amount": "5000000.00", "currency": "CNY"},
        "legal_representative": "张伟",
        "address": "福建省福州市鼓楼区五四路 1 号",
        "contact_name": "李娜",
        "contact_phone": "13900139000",
        "bank_accounts": [
            {"bank_name": "兴业银行福州分行", "account_number": "6222 0212 3456 7890"}
        ],
    }


def build_api(tmp_path: Path, *, scored: set[str] | None = None, **service: Any) -> Generator[Api]:
    """An app on a fresh database; ``scored`` credit codes get a stub score."""
    settings = make_settings(tmp_path, **service)
    clock = Clock()
    context = build_context(settings)
    context.clock = clock
    if scored is not None:
        codes = scored
        context.provider_factory = lambda db: StubScores(db, codes)
        context.evaluator_factory = None  # evaluate with the stub scores
    app = create_app(settings, context=context)
    with TestClient(app) as client:
        yield Api(client, context, clock, tmp_path / "sms.jsonl")
