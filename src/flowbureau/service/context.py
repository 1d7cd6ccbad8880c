"""Everything the service's domain functions need, built once from the settings.

Rules:
- :func:`build_context` is the only place that turns settings into live objects (engine,
  vault, password hasher, token issuer, SMS sender, rate limiter, providers); the HTTP app and
  the CLI both use it, so both behave the same.
- The clock is part of the context: domain functions take ``now`` explicitly and adapters get
  it from :attr:`ServiceContext.clock`, so tests can move time instead of sleeping.
- Providers are made per database session (:attr:`ServiceContext.provider_factory`); the
  scoring and warehouse engines plug in by replacing the factory. :func:`build_context` wires
  the scoring engine (:func:`flowbureau.scoring.service.plug_into`): scores come from the score
  history and applications are evaluated with the latest saved credit model. Without a
  ``evaluator_factory``, applications are evaluated with the provider's scores.
- The identity model (attribution of records) is loaded once and reloaded when a newer version
  is saved (:meth:`ServiceContext.identity_model`); ``None`` while none is trained.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from flowbureau.config import Settings
from flowbureau.identity.freshness import FreshnessPolicy
from flowbureau.identity.model import IdentityModel, model_path, model_versions
from flowbureau.service.passwords import Passwords
from flowbureau.service.providers import (
    EnterpriseDataProvider,
    Evaluator,
    ProviderEvaluator,
    WarehouseProvider,
)
from flowbureau.service.ratelimit import RateLimiter, make_rate_limiter
from flowbureau.service.sms import SmsSender, make_sms_sender
from flowbureau.service.tokens import TokenIssuer
from flowbureau.service.vault import Vault
from flowbureau.storage.database import make_engine, session_factory

__all__ = ["ServiceContext", "build_context", "utc_now"]


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass
class ServiceContext:
    """Live objects shared by every request (and by CLI commands)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    vault: Vault
    passwords: Passwords
    tokens: TokenIssuer
    sms: SmsSender
    limiter: RateLimiter
    provider_factory: Callable[[Session], EnterpriseDataProvider]
    evaluator_factory: Callable[[Session], Evaluator] | None = None
    clock: Callable[[], datetime] = field(default=utc_now)
    freshness: FreshnessPolicy = field(default_factory=FreshnessPolicy.load)
    _identity: IdentityModel | None = field(default=None, repr=False)
    _identity_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def identity_dir(self) -> Path:
        """Where identity models are saved."""
        return self.settings.identity.models_dir or self.settings.data_dir / "identity"

    def identity_model(self) -> IdentityModel | None:
        """The newest trained identity model, or ``None`` while none is trained."""
        versions = model_versions(self.identity_dir)
        if not versions:
            return None
        newest = max(versions)
        with self._identity_lock:
            if self._identity is None or self._identity.manifest.get("version") != newest:
                self._identity = IdentityModel.load(model_path(self.identity_dir, newest))
            return self._identity

    def evaluator(self, db: Session) -> Evaluator:
        """The evaluator: :attr:`evaluator_factory`'s, else one scoring with the provider."""
        if self.evaluator_factory is not None:
            return self.evaluator_factory(db)
        return ProviderEvaluator(self.provider_factory(db))

    def close(self) -> None:
        """Release the database pool (and the Redis pool, if any)."""
        close = getattr(self.limiter, "close", None)
        if close is not None:
            close()
        self.engine.dispose()


def build_context(settings: Settings) -> ServiceContext:
    """Build the context for ``settings`` (connects to Redis when configured)."""
    from flowbureau.storage.warehouse import Warehouse

    engine = make_engine(settings.resolved_database_url)
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)

    def provider(db: Session) -> EnterpriseDataProvider:
        return WarehouseProvider(db, warehouse, settings.timezone)

    from flowbureau.scoring.service import plug_into

    context = ServiceContext(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        vault=Vault(settings.vault_key.get_secret_value()),
        passwords=Passwords(settings.service),
        tokens=TokenIssuer(settings.secret_key.get_secret_value(), settings.service),
        sms=make_sms_sender(settings.sms_backend, settings.service),
        limiter=make_rate_limiter(settings.redis_url),
        provider_factory=provider,
        freshness=FreshnessPolicy.load(settings.identity.policy_path),
    )
    plug_into(context)
    return context
