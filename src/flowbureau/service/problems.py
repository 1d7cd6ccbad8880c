"""Errors as RFC 9457 problem details (``application/problem+json``).

Rules:
- Domain errors map to HTTP by family (:data:`PROBLEM_TYPES`): bad input 422 (with ``field``;
  missing information also lists ``missing_fields``), not signed in 401 (with
  ``WWW-Authenticate: Bearer``), not allowed 403 (the reason in ``detail``), unknown 404, state
  conflict 409, too many attempts 429 (with ``Retry-After``), gateway failure 502, database
  unavailable 503.
- ``type`` is ``urn:flowbureau:problem:<slug>``, stable for clients to branch on; ``title``
  is the same for every instance of a type, ``detail`` says what happened this time;
  ``instance`` is the request path and ``request_id`` matches the ``X-Request-ID`` header.
- Request validation errors list every problem in ``errors`` (``loc``, ``msg``, ``type``).
- On the web console (``/console``) the same errors are HTML pages in the visitor's language
  (:func:`flowbureau.service.console.error_page`; 401 redirects to the sign-in page).
- Unexpected exceptions are answered by
  :class:`~flowbureau.service.middleware.UnexpectedErrorMiddleware` (a 500 problem with the
  request id and the security headers; the traceback goes to the log only).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowbureau.errors import (
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    FlowbureauError,
    IncompleteError,
    InputError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    StorageError,
)
from flowbureau.service.providers import NotYetAvailableError
from flowbureau.service.sms import DeliveryError

__all__ = [
    "PROBLEM_TYPES",
    "document_problems",
    "install_problem_handlers",
    "problem_response",
    "problem_type",
]

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

PROBLEM_TYPES: tuple[tuple[type[FlowbureauError], int, str, str], ...] = (
    (IncompleteError, 422, "incomplete-information", "Required information is missing"),
    (InputError, 422, "invalid-input", "The request is not valid"),
    (AuthenticationError, 401, "authentication-required", "Sign-in is required"),
    (PermissionDeniedError, 403, "forbidden", "Not allowed"),
    (NotYetAvailableError, 404, "not-yet-available", "Not available yet"),
    (NotFoundError, 404, "not-found", "Not found"),
    (ConflictError, 409, "conflict", "Conflicts with the current state"),
    (RateLimitedError, 429, "rate-limited", "Too many requests"),
    (DeliveryError, 502, "delivery-failed", "A message could not be delivered"),
    (StorageError, 503, "storage-unavailable", "The database is unavailable"),
    (IntegrityError, 500, "integrity-error", "Stored data failed an integrity check"),
    (ConfigurationError, 500, "configuration-error", "The service is misconfigured"),
)
"""Error family -> (HTTP status, type slug, title); the first matching family wins."""


def problem_type(slug: str) -> str:
    """The ``type`` URI of a problem slug."""
    return f"urn:flowbureau:problem:{slug}"


def problem_response(
    request: Request,
    *,
    status: int,
    slug: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem-details response for ``request``."""
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
        **extra,
    }
    return JSONResponse(
        {k: v for k, v in body.items() if v is not None},
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _on_console(request: Request) -> bool:
    return request.url.path.startswith("/console")


def _console_page(request: Request, status: int, title: str, detail: str | None) -> Response:
    from flowbureau.service.console import error_page

    return error_page(request, status, title, detail)


def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FlowbureauError)
    status, slug, title = next(
        (
            (status, slug, title)
            for family, status, slug, title in PROBLEM_TYPES
            if isinstance(exc, family)
        ),
        (500, "internal-error", "Internal error"),
    )
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    detail = str(exc)
    if isinstance(exc, InputError):
        detail = exc.message
        extra["field"] = exc.field
    if isinstance(exc, IncompleteError):
        extra["missing_fields"] = list(exc.missing_fields)
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="flowbureau"'
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(exc.retry_after)
        extra["retry_after"] = exc.retry_after
    if status >= 500:
        log.error("%s on %s: %s", type(exc).__name__, request.url.path, exc)
    if _on_console(request):
        return _console_page(request, status, title, detail)
    return problem_response(
        request, status=status, slug=slug, title=title, detail=detail, headers=headers, **extra
    )


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
        for e in exc.errors()
    ]
    first = errors[0] if errors else None
    field = ".".join(str(part) for part in first["loc"][1:]) if first else None
    detail = f"{field or 'request'}: {first['msg']}" if first else "invalid request"
    if _on_console(request):
        return _console_page(request, 422, "The request is not valid", detail)
    return problem_response(
        request,
        status=422,
        slug="invalid-request",
        title="The request is not valid",
        detail=detail,
        field=field or None,
        errors=errors,
    )


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    if _on_console(request):
        return _console_page(request, exc.status_code, phrase, None)
    return JSONResponse(
        {
            "type": "about:blank",
            "title": phrase,
            "status": exc.status_code,
            "detail": exc.detail if exc.detail != phrase else None,
            "instance": request.url.path,
        },
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _race_error(request: Request, exc: Exception) -> JSONResponse:
    log.info("integrity conflict on %s: %s", request.url.path, exc)
    return problem_response(
        request,
        status=409,
        slug="conflict",
        title="Conflicts with the current state",
        detail="a concurrent request changed the same data (or used the same Idempotency-Key); "
        "retry",
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem details."""
    app.add_exception_handler(FlowbureauError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sa.exc.IntegrityError, _race_error)


def document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers do: every 4xx/5xx answer of every
    operation is ``application/problem+json`` with the ``Problem`` schema (FastAPI's own
    validation-error schema is replaced, since :func:`_validation_error` answers instead)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            problem = {"schema": {"$ref": "#/components/schemas/Problem"}}
            for operations in spec.get("paths", {}).values():
                for operation in operations.values():
                    for status, response in operation.get("responses", {}).items():
                        if status[:1] in {"4", "5"}:
                            response["content"] = {PROBLEM_MEDIA_TYPE: problem}
                            response["description"] = "Problem details (RFC 9457)"
            schemas = spec.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
