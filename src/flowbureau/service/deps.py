"""FastAPI dependencies as ``Annotated`` aliases: ``SessionDep``, ``CurrentPrincipal``, ...

Rules:
- One database session per request: committed when the route returns (before the response is
  sent, so a failed commit is an error response, not a lie), rolled back on any error.
- ``CurrentPrincipal`` authenticates ``Authorization: Bearer`` (access token or API key) and
  counts API-key requests against the key's rate limit.
- Dependencies that do no I/O are ``async`` (they run on the event loop); each synchronous
  dependency costs a hop to a worker thread, which under CPU contention is a wait for a core.
  The open API's reads do all their work in one hop on one connection
  (:func:`read_connection`, :func:`authenticate_for_read`, :func:`session_on`).
- The client IP comes from the socket, or from ``X-Forwarded-For`` only when
  ``trust_forwarded_for`` says a trusted proxy sets it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.orm import Session

from flowbureau.errors import AuthenticationError
from flowbureau.service.apikeys import API_KEY_PREFIX
from flowbureau.service.consent import ConsentLookup, verify_api_key_with_consents
from flowbureau.service.context import ServiceContext
from flowbureau.service.idempotency import IdempotencyKey, request_fingerprint
from flowbureau.service.principals import Principal, api_key_principal, resolve_bearer
from flowbureau.service.providers import EnterpriseDataProvider, Evaluator
from flowbureau.service.ratelimit import Rate
from flowbureau.storage.database import session_scope

__all__ = [
    "BearerDep",
    "ClientIpDep",
    "ContextDep",
    "CurrentPrincipal",
    "EvaluatorDep",
    "Idempotency",
    "IdempotencyDep",
    "NowDep",
    "ProviderDep",
    "RequestIdDep",
    "SessionDep",
    "authenticate",
    "authenticate_for_read",
    "read_connection",
    "session_on",
]


async def get_context(request: Request) -> ServiceContext:
    """The service context the app was built with."""
    context: ServiceContext = request.app.state.context
    return context


ContextDep = Annotated[ServiceContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    """A session committed after the route returns, rolled back if it raises."""
    with session_scope(context.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_now(context: ContextDep) -> datetime:
    """The service clock's current time (aware UTC)."""
    return context.clock()


NowDep = Annotated[datetime, Depends(get_now)]


async def get_request_id(request: Request) -> str | None:
    """The request's id (see :class:`~flowbureau.service.middleware.RequestIdMiddleware`)."""
    request_id: str | None = getattr(request.state, "request_id", None)
    return request_id


RequestIdDep = Annotated[str | None, Depends(get_request_id)]


async def get_client_ip(request: Request, context: ContextDep) -> str:
    """The caller's IP address (for per-IP limits)."""
    if context.settings.service.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first
    return request.client.host if request.client else "unknown"


ClientIpDep = Annotated[str, Depends(get_client_ip)]

_bearer = HTTPBearer(
    auto_error=False,
    description="An access token from /v1/auth/login, or an institution API key (fbk_...).",
)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
"""The ``Authorization: Bearer`` credentials, if any (documents the scheme in OpenAPI)."""


def authenticate(
    session: Session,
    credentials: HTTPAuthorizationCredentials | None,
    context: ServiceContext,
    now: datetime,
) -> Principal:
    """The authenticated caller; API keys are rate limited per key."""
    if credentials is None:
        raise AuthenticationError("sign in first: send Authorization: Bearer <token or API key>")
    principal = resolve_bearer(
        session, token=credentials.credentials, issuer=context.tokens, now=now
    )
    _limit_api_key(principal, context)
    return principal


def get_principal(
    credentials: BearerDep, session: SessionDep, context: ContextDep, now: NowDep
) -> Principal:
    """The authenticated caller (:func:`authenticate` in this request's session)."""
    return authenticate(session, credentials, context, now)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def _limit_api_key(principal: Principal, context: ServiceContext) -> None:
    if principal.kind == "api_key":
        context.limiter.hit(
            f"api:key:{principal.key_id}",
            Rate(context.settings.service.api_key_requests_per_minute, 60),
            what="requests with this API key",
        )


@contextmanager
def read_connection(context: ServiceContext) -> Iterator[sa.Connection]:
    """One pooled connection for a whole open-API read, committed at the end, rolled back on error.

    The hot reads (:func:`authenticate_for_read`, the access decision and its audit entry,
    then :func:`session_on` for the provider) all run on it in the calling thread: one
    pool checkout and one worker-thread hop per request, Core statements without an ORM unit
    of work where no ORM object is needed.
    """
    with context.engine.connect() as connection:
        try:
            yield connection
            connection.commit()
        except BaseException:
            connection.rollback()
            raise


def authenticate_for_read(
    connection: sa.Connection,
    credentials: HTTPAuthorizationCredentials | None,
    context: ServiceContext,
    now: datetime,
    *,
    credit_code: str,
) -> tuple[Principal, ConsentLookup | None]:
    """The caller of a read of ``credit_code``'s data, authenticated as by ``CurrentPrincipal``.

    An API key is verified and rate limited exactly as by :func:`authenticate`, but found in
    the same query as the enterprise's consents to its institution (returned for
    :func:`~flowbureau.service.consent.require_access`); an access token goes the usual way
    (``None`` then: the decision reads the consents itself).
    """
    if credentials is None:
        raise AuthenticationError("sign in first: send Authorization: Bearer <token or API key>")
    token = credentials.credentials
    lookup: ConsentLookup | None = None
    if token.startswith(API_KEY_PREFIX):
        key, lookup = verify_api_key_with_consents(
            connection, presented=token, credit_code=credit_code, now=now
        )
        principal = api_key_principal(key)
    else:
        with context.sessions(bind=connection) as session:
            principal = resolve_bearer(session, token=token, issuer=context.tokens, now=now)
    _limit_api_key(principal, context)
    return principal, lookup


@contextmanager
def session_on(context: ServiceContext, connection: sa.Connection) -> Iterator[Session]:
    """A session on ``connection`` (no second pool checkout), committed when the block ends."""
    with session_scope(partial(context.sessions, bind=connection)) as session:
        yield session


def get_provider(context: ContextDep, session: SessionDep) -> EnterpriseDataProvider:
    """The enterprise data provider for this request."""
    return context.provider_factory(session)


ProviderDep = Annotated[EnterpriseDataProvider, Depends(get_provider)]


def get_evaluator(context: ContextDep, session: SessionDep) -> Evaluator:
    """The application evaluator for this request."""
    return context.evaluator(session)


EvaluatorDep = Annotated[Evaluator, Depends(get_evaluator)]


class Idempotency:
    """Replays or records a POST's response according to its ``Idempotency-Key`` header."""

    def __init__(
        self,
        *,
        session: Session,
        key: str | None,
        method: str,
        path: str,
        now: datetime,
        keep: timedelta,
    ) -> None:
        self._session = session
        self._key = key
        self._method = method
        self._path = path
        self._now = now
        self._keep = keep

    def respond(
        self,
        *,
        scope: str,
        status_code: int,
        request_body: BaseModel | None,
        produce: Callable[[], BaseModel],
    ) -> Response:
        """The stored response for a retried key, or ``produce()``'s, stored for retries."""
        if self._key is None:
            return _json(produce().model_dump_json(), status_code)
        key = IdempotencyKey(
            scope=scope,
            key=self._key,
            method=self._method,
            path=self._path,
            fingerprint=request_fingerprint(
                self._method,
                self._path,
                None if request_body is None else request_body.model_dump(mode="json"),
            ),
        )
        stored = key.lookup(self._session, now=self._now)
        if stored is not None:
            replay = _json(stored.body, stored.status_code)
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        body = produce().model_dump_json()
        key.save(self._session, status_code=status_code, body=body, now=self._now, keep=self._keep)
        return _json(body, status_code)


def _json(body: str, status_code: int) -> Response:
    return Response(body, status_code=status_code, media_type="application/json")


def get_idempotency(
    request: Request,
    session: SessionDep,
    context: ContextDep,
    now: NowDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="Retry-safe POST: the same key and body replay the first response.",
        ),
    ] = None,
) -> Idempotency:
    """The idempotency helper of this request."""
    return Idempotency(
        session=session,
        key=idempotency_key,
        method=request.method,
        path=request.url.path,
        now=now,
        keep=timedelta(hours=context.settings.service.idempotency_hours),
    )


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
