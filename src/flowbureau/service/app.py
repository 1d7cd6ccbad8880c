"""The FastAPI application factory.

Rules:
- :func:`create_app` builds everything from the settings (or a prepared
  :class:`~flowbureau.service.context.ServiceContext`); nothing is global, so tests and
  workers each get their own app.
- In production the app refuses development secrets (:mod:`flowbureau.config`), an SMS backend
  that would leave codes in logs or files, and a database not at the newest migration (run
  ``flowbureau db upgrade``); elsewhere it migrates the database itself at start-up.
- OpenAPI is served at ``/openapi.json``, Swagger UI at ``/docs`` and ReDoc at ``/redoc``,
  their assets from installed packages (no CDN); the web console at ``/console``.
- Each server process runs a webhook dispatcher thread (every ``webhook_poll_seconds``; 0 turns
  it off) between start-up and shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from flowbureau import __version__
from flowbureau.config import Settings, get_settings
from flowbureau.errors import ConfigurationError
from flowbureau.service.context import ServiceContext, build_context
from flowbureau.service.deps import SessionDep
from flowbureau.service.middleware import (
    CSRFMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
    UnexpectedErrorMiddleware,
)
from flowbureau.service.problems import document_problems, install_problem_handlers
from flowbureau.service.routes import (
    anomalies,
    applications,
    assets,
    audit,
    auth,
    consents,
    console,
    enterprise,
    enterprises,
    institution_console,
    institutions,
    portal,
    records,
    webhooks,
)
from flowbureau.service.schemas import problem_responses
from flowbureau.service.vault import derive_key
from flowbureau.service.webhooks import WebhookDispatcher
from flowbureau.storage.database import current_revision, head_revision, upgrade_database

__all__ = ["check_production_settings", "create_app", "prepare_database"]

DESCRIPTION = """\
The flowbureau platform service. Enterprises register, enter their information, apply for a
credit evaluation and decide which institution may see what, for which purpose, until when.
Institutions read scores, reports and transaction summaries only under a live consent; every
access is audited. Errors are RFC 9457 problem details. Authenticate with
`Authorization: Bearer <access token | API key>`.
"""


def check_production_settings(settings: Settings) -> None:
    """Refuse, in production, settings that are only safe on a developer's machine."""
    if settings.env != "production":
        return
    backend = settings.sms_backend
    if backend == "console" or backend.startswith("file:"):
        raise ConfigurationError(
            f"refusing FLOWBUREAU_SMS_BACKEND={backend} in production: sign-in codes would be "
            "written to the console or a file; configure the https:// SMS gateway"
        )


def prepare_database(settings: Settings) -> None:
    """Migrate the database (dev/test), or check that it is migrated (production)."""
    url = settings.resolved_database_url
    if settings.env != "production":
        upgrade_database(url)
        return
    current, head = current_revision(url), head_revision()
    if current != head:
        raise ConfigurationError(
            f"the service database is at revision {current}, not {head}: "
            "run `flowbureau db upgrade` first"
        )


def create_app(
    settings: Settings | None = None, *, context: ServiceContext | None = None
) -> FastAPI:
    """Build the service for ``settings`` (default: from the environment)."""
    settings = settings or (context.settings if context else get_settings())
    check_production_settings(settings)
    prepare_database(settings)
    context = context or build_context(settings)

    dispatcher = WebhookDispatcher(
        context.sessions, vault=context.vault, settings=settings.service, clock=context.clock
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.service.webhook_poll_seconds > 0:
            dispatcher.start()
        yield
        dispatcher.stop()
        context.close()

    app = FastAPI(
        title="flowbureau",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=problem_responses(400),  # a body that is not JSON at all
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context
    install_problem_handlers(app)
    document_problems(app)
    # The router matches paths in this order, one included router after the other: the open
    # API's reads (the busiest routes) come first. No two routers' paths overlap, so the order
    # changes nothing else (tests/service/test_service_open_api_reads.py checks that).
    for module in (
        enterprises,
        auth,
        institutions,
        enterprise,
        records,
        applications,
        consents,
        anomalies,
        webhooks,
        audit,
        assets,
        console,
        portal,
        institution_console,
    ):
        app.include_router(module.router)

    @app.get("/healthz", tags=["ops"])
    def health(session: SessionDep) -> dict[str, str]:
        """Liveness and database reachability."""
        session.execute(sa.text("SELECT 1"))
        return {"status": "ok"}

    secret = settings.secret_key.get_secret_value()
    app.add_middleware(CSRFMiddleware, secret=derive_key(secret, "csrf"))
    app.add_middleware(UnexpectedErrorMiddleware)
    if settings.service.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.service.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-CSRF-Token"],
            expose_headers=["X-Request-ID", "Retry-After", "Idempotent-Replayed"],
        )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.env == "production")
    app.add_middleware(RequestIdMiddleware)
    return app
