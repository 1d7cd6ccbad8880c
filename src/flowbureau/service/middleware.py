"""ASGI middleware: request ids, security headers, CSRF protection for cookie sessions, and a
last line of defence against unexpected errors.

Rules:
- Every response carries ``X-Request-ID`` (the client's, if it sent a sane one, else a new
  one); the audit log records it, so an entry can be matched to a client's log line.
- Security headers are added unless a route set its own: ``nosniff``, no framing, no referrer,
  same-origin isolation, ``Cache-Control: no-store`` (responses carry personal data), a strict
  Content-Security-Policy (relaxed on ``/docs`` for Swagger UI's CDN assets), and HSTS in
  production.
- CSRF: browsers attach cookies by themselves, so a request that carries the console's session
  cookie (:data:`SESSION_COOKIE`) and changes state (POST, PUT, PATCH, DELETE) must also carry
  the session's CSRF token, in the ``X-CSRF-Token`` header or the ``csrf_token`` field of a
  URL-encoded form. The token is an HMAC of the session cookie (:func:`csrf_token_for`), so it
  needs no storage. Requests authenticated only by an ``Authorization`` header are not exposed
  to CSRF and pass unchecked.
- An exception no handler turned into a response becomes a 500 problem document (with the
  request id; the traceback goes to the log only) inside the request-id and security-header
  middleware, so even that answer carries them. If the response had already started, the
  connection is closed instead (nothing sane can be appended).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import uuid
from base64 import urlsafe_b64encode
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CSRF_FORM_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "CSRFMiddleware",
    "RequestIdMiddleware",
    "SecurityHeadersMiddleware",
    "UnexpectedErrorMiddleware",
    "csrf_token_for",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "fb_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FORM_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_FORM_BYTES = 1_000_000

API_CSP = "default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
"""Swagger UI and ReDoc: scripts only from this server; the viewers set inline styles."""
CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
"""The web console: every script is a file served by this server (no inline script); inline
styles are allowed because plotly.js injects its own stylesheet at run time."""


class RequestIdMiddleware:
    """Gives each request an id (``request.state.request_id``) and echoes it in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Assign the id, then pass the request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = _header(scope, b"x-request-id")
        request_id = sent if sent and _REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


class SecurityHeadersMiddleware:
    """Adds security headers to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith(("/docs", "/redoc")):
            csp = DOCS_CSP
        elif path.startswith(("/console", "/static")) or path == "/":
            csp = CONSOLE_CSP
        else:
            csp = API_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
                headers.setdefault("Permissions-Policy", "camera=(), geolocation=(), payment=()")
                headers.setdefault("Content-Security-Policy", csp)
                headers.setdefault("Cache-Control", "no-store")
                if self.hsts:
                    headers.setdefault(
                        "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
                    )
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token_for(session_cookie: str, secret: bytes) -> str:
    """The CSRF token of a console session: an HMAC-SHA256 of its cookie value."""
    digest = hmac.new(secret, session_cookie.encode("utf-8"), hashlib.sha256).digest()
    return urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class CSRFMiddleware:
    """Refuses state-changing requests that carry the session cookie but not its CSRF token."""

    def __init__(self, app: ASGIApp, *, secret: bytes) -> None:
        self.app = app
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the token of unsafe cookie-authenticated requests, then pass them on."""
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        session = _cookie(scope, SESSION_COOKIE)
        if session is None:
            await self.app(scope, receive, send)
            return
        presented = _header(scope, CSRF_HEADER.encode())
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if presented is None and content_type == "application/x-www-form-urlencoded":
            body = await _read_body(receive)
            if body is None:
                await _forbidden(scope, send, "form too large")
                return
            fields = parse_qs(body.decode("latin-1"))
            values = fields.get(CSRF_FORM_FIELD)
            presented = values[0] if values else None
            receive = _replay(body, receive)
        expected = csrf_token_for(session, self.secret)
        if presented is None or not hmac.compare_digest(presented, expected):
            await _forbidden(scope, send, "missing or wrong CSRF token for this session")
            return
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header carries no usable session
        return None
    morsel = jar.get(name)
    return None if morsel is None or not morsel.value else morsel.value


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, upstream: Receive) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()  # later calls wait for the client's disconnect as usual

    return receive


async def _forbidden(scope: Scope, send: Send, detail: str) -> None:
    body: dict[str, Any] = {
        "type": "urn:flowbureau:problem:csrf-failed",
        "title": "CSRF check failed",
        "status": 403,
        "detail": detail,
        "instance": scope.get("path"),
    }
    payload = json.dumps(body).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class UnexpectedErrorMiddleware:
    """Turns an exception that escaped every handler into a 500 problem document."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; answer 500 if it raises before responding."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            request_id = scope.get("state", {}).get("request_id")
            log.exception("unexpected error on %s (request %s)", scope.get("path"), request_id)
            if started:
                raise
            body: dict[str, Any] = {
                "type": "urn:flowbureau:problem:internal-error",
                "title": "Internal error",
                "status": 500,
                "detail": "an unexpected error occurred; it was logged with this request id",
                "instance": scope.get("path"),
                "request_id": request_id,
            }
            payload = json.dumps(body).encode("utf-8")
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"content-length", str(len(payload)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
