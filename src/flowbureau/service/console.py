"""The web console's machinery: cookie sign-in, page rendering, charts, HTML error pages.

Rules:
- The console is server-rendered Jinja2 (autoescaped) under ``/console``. Every visitor gets
  the ``fb_session`` cookie (``HttpOnly``, ``SameSite=Lax``, ``Path=/console``, ``Secure`` in
  production): an anonymous random value until sign-in, then a console session token whose
  SHA-256 is stored in ``console_sessions`` (a new value at sign-in, so a planted cookie is
  worthless). The session lives ``console_session_hours``; signing out revokes it at once.
- Every form carries the session's CSRF token (an HMAC of the cookie,
  :func:`flowbureau.service.middleware.csrf_token_for`) which the CSRF middleware checks on
  every POST, the sign-in and registration forms included.
- Pages call the same domain functions as the HTTP API: the same role policy, consent checks
  and audit entries apply. A domain error on a console page becomes an HTML page in the
  visitor's language (a sign-in redirect for 401).
- No inline script or style (the CSP forbids them): charts are described as JSON in
  ``<script type="application/json">`` blocks that ``/static/console.js`` draws with plotly.js
  served from the installed ``plotly`` package.
- Every string comes from the message catalogs (:mod:`flowbureau.service.i18n`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Annotated, Any
from urllib.parse import quote

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from sqlalchemy.orm import Session

from flowbureau.errors import AuthenticationError, PermissionDeniedError
from flowbureau.schema import format_minor
from flowbureau.service.context import ServiceContext
from flowbureau.service.deps import ContextDep, NowDep, SessionDep
from flowbureau.service.i18n import LANG_COOKIE, LANGUAGES, Translator, pick_language
from flowbureau.service.middleware import SESSION_COOKIE, csrf_token_for
from flowbureau.service.models import ConsoleSession, Role, User
from flowbureau.service.principals import Principal
from flowbureau.service.providers import MonthlyFlow, ScoreView
from flowbureau.service.vault import derive_key

__all__ = [
    "ANONYMOUS_PREFIX",
    "Console",
    "ConsoleDep",
    "cashflow_chart",
    "end_console_session",
    "error_page",
    "gauge_chart",
    "money",
    "safe_next",
    "start_console_session",
]

ANONYMOUS_PREFIX = "anon."
COOKIE_PATH = "/console"
HOME_BY_ROLE = {
    Role.ENTERPRISE: "/console/enterprise",
    Role.ANALYST: "/console/institution",
}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_console_session(db: Session, *, user: User, now: datetime, lifetime: timedelta) -> str:
    """Open a console session for ``user``; return the cookie value (shown only here)."""
    token = secrets.token_urlsafe(32)
    db.add(
        ConsoleSession(
            token_hash=_hash(token), user_id=user.id, created_at=now, expires_at=now + lifetime
        )
    )
    db.flush()
    return token


def end_console_session(db: Session, *, token: str, now: datetime) -> None:
    """Sign out: revoke the session of this cookie value (unknown values are ignored)."""
    db.execute(
        sa.update(ConsoleSession)
        .where(ConsoleSession.token_hash == _hash(token), ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )


def _principal(db: Session, token: str, now: datetime) -> Principal | None:
    if token.startswith(ANONYMOUS_PREFIX):
        return None
    row = db.execute(
        sa.select(ConsoleSession, User)
        .join(User, User.id == ConsoleSession.user_id)
        .where(ConsoleSession.token_hash == _hash(token))
    ).first()
    if row is None:
        return None
    session, user = row
    if session.revoked_at is not None or session.expires_at <= now or user.disabled_at:
        return None
    return Principal(
        kind="user",
        id=user.id,
        role=user.role,
        institution_id=user.institution_id,
        enterprise_id=user.enterprise_id,
    )


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a console path on this site (no open redirects), else ``default``."""
    if target and target.startswith("/console") and "//" not in target and "\\" not in target:
        return target
    return default


def money(minor: int | None, currency: str | None) -> str:
    """``1,234,567.89 CNY`` (empty for None)."""
    if minor is None or currency is None:
        return ""
    amount = Decimal(format_minor(minor, currency))
    return f"{amount:,} {currency}"


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("flowbureau.service", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["money"] = money
    environment.filters["percent"] = lambda value, digits=2: (
        "" if value is None else f"{float(value) * 100:.{digits}f}%"
    )
    environment.filters["tojson_script"] = _json_for_script
    environment.filters["amount"] = lambda text: "" if text is None else f"{Decimal(text):,}"
    return environment


def _json_for_script(value: Any) -> Markup:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>`` break-out)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)


@dataclass
class Console:
    """One console request: who is signed in, the language, the CSRF token, rendering."""

    request: Request
    db: Session
    context: ServiceContext
    now: datetime
    token: str
    new_cookie: bool
    principal: Principal | None
    t: Translator
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def csrf_token(self) -> str:
        """The token every form of this page carries."""
        secret = derive_key(self.context.settings.secret_key.get_secret_value(), "csrf")
        return csrf_token_for(self.token, secret)

    def require(self, *roles: Role) -> Principal:
        """The signed-in principal with one of ``roles`` (sign-in redirect / 403 otherwise)."""
        if self.principal is None:
            raise AuthenticationError("sign in first")
        if roles and self.principal.role not in roles:
            raise PermissionDeniedError(self.t("errors.wrong_role"))
        return self.principal

    def sign_in(self, user: User) -> None:
        """Replace the cookie with a new console session of ``user``."""
        lifetime = timedelta(hours=self.context.settings.service.console_session_hours)
        self.token = start_console_session(self.db, user=user, now=self.now, lifetime=lifetime)
        self.new_cookie = True
        self.principal = Principal(
            kind="user",
            id=user.id,
            role=user.role,
            institution_id=user.institution_id,
            enterprise_id=user.enterprise_id,
        )

    def sign_out(self) -> None:
        """Revoke the session and go back to an anonymous cookie."""
        end_console_session(self.db, token=self.token, now=self.now)
        self.token = ANONYMOUS_PREFIX + secrets.token_urlsafe(24)
        self.new_cookie = True
        self.principal = None

    def _finish(self, response: Response) -> Response:
        secure = self.context.settings.env == "production"
        if self.new_cookie:
            response.set_cookie(
                SESSION_COOKIE,
                self.token,
                httponly=True,
                samesite="lax",
                secure=secure,
                path=COOKIE_PATH,
            )
        for name, value in self.cookies.items():
            response.set_cookie(
                name, value, max_age=365 * 86400, samesite="lax", secure=secure, path="/"
            )
        return response

    def page(self, template: str, *, status: int = 200, **values: Any) -> Response:
        """Render ``template`` with the console's common values."""
        body = (
            _environment()
            .get_template(template)
            .render(
                t=self.t,
                lang=self.t.language,
                languages=LANGUAGES,
                csrf_token=self.csrf_token,
                principal=self.principal,
                roles=Role,
                path=self.request.url.path,
                query=self.request.url.query,
                **values,
            )
        )
        return self._finish(HTMLResponse(body, status_code=status))

    def redirect(self, url: str) -> Response:
        """A 303 redirect (after a form POST, or to sign in)."""
        return self._finish(RedirectResponse(url, status_code=303))


def get_console(request: Request, db: SessionDep, context: ContextDep, now: NowDep) -> Console:
    """The console state of this request (a new anonymous cookie when there was none)."""
    token = request.cookies.get(SESSION_COOKIE)
    new_cookie = not token
    if not token:
        token = ANONYMOUS_PREFIX + secrets.token_urlsafe(24)
    language = pick_language(
        request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )
    console = Console(
        request=request,
        db=db,
        context=context,
        now=now,
        token=token,
        new_cookie=new_cookie,
        principal=_principal(db, token, now),
        t=Translator(language),
    )
    request.state.console = console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


def error_page(request: Request, status: int, title: str, detail: str | None) -> Response:
    """The HTML answer to an error on a console page (sign-in redirect for 401)."""
    console: Console | None = getattr(request.state, "console", None)
    if status == 401:
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        response = RedirectResponse(f"/console/login?next={target}", status_code=303)
        return console._finish(response) if console else response
    t = (
        console.t
        if console
        else Translator(pick_language(None, request.headers.get("accept-language")))
    )
    key = f"errors.http_{status}"
    heading = t(key) if t.has(key) else title
    body = (
        _environment()
        .get_template("error.html")
        .render(
            t=t,
            lang=t.language,
            languages=LANGUAGES,
            csrf_token=console.csrf_token if console else "",
            principal=console.principal if console else None,
            roles=Role,
            path=request.url.path,
            query=request.url.query,
            status=status,
            heading=heading,
            detail=detail,
        )
    )
    page = HTMLResponse(body, status_code=status)
    return console._finish(page) if console else page


# -- charts (plotly figure descriptions; console.js draws them) ------------------------------


def gauge_chart(score: ScoreView, t: Translator) -> dict[str, Any]:
    """A gauge of the score on the scorecard's range, coloured by risk."""
    return {
        "data": [
            {
                "type": "indicator",
                "mode": "gauge+number",
                "value": score.score,
                "title": {"text": t("score.gauge_title", grade=score.grade)},
                "gauge": {
                    "axis": {"range": [400, 800]},
                    "bar": {"color": "#1d3557"},
                    "steps": [  # the default master scale: CC and worse, CCC-B, BB-BBB, A-AAA
                        {"range": [400, 527], "color": "#e76f51"},
                        {"range": [527, 593], "color": "#f4a261"},
                        {"range": [593, 660], "color": "#e9c46a"},
                        {"range": [660, 800], "color": "#2a9d8f"},
                    ],
                },
            }
        ],
        "layout": {"height": 260, "margin": {"t": 60, "b": 10, "l": 30, "r": 30}},
    }


def cashflow_chart(monthly: Sequence[MonthlyFlow], currency: str, t: Translator) -> dict[str, Any]:
    """Monthly inflow, outflow and net (bars) and closing balance (line), in major units."""
    rows = [m for m in monthly if m.currency == currency]
    months = [m.month.strftime("%Y-%m") for m in rows]

    def major(values: Sequence[int | None]) -> list[float | None]:
        return [None if v is None else float(Decimal(format_minor(v, currency))) for v in values]

    balances = major([m.closing_balance_minor for m in rows])
    traces: list[dict[str, Any]] = [
        {
            "type": "bar",
            "name": t("cashflow.inflow"),
            "x": months,
            "y": major([m.inflow_minor for m in rows]),
            "marker": {"color": "#2a9d8f"},
        },
        {
            "type": "bar",
            "name": t("cashflow.outflow"),
            "x": months,
            "y": major([-m.outflow_minor for m in rows]),
            "marker": {"color": "#e76f51"},
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": t("cashflow.net"),
            "x": months,
            "y": major([m.net_minor for m in rows]),
            "line": {"color": "#264653"},
        },
    ]
    layout: dict[str, Any] = {
        "barmode": "relative",
        "height": 320,
        "margin": {"t": 20, "b": 40, "l": 70, "r": 70},
        "legend": {"orientation": "h"},
        "xaxis": {"type": "category"},
        "yaxis": {"title": {"text": t("cashflow.amount", currency=currency)}},
    }
    if any(b is not None for b in balances):  # banks that report no balances draw no line
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": t("cashflow.balance"),
                "x": months,
                "y": balances,
                "yaxis": "y2",
                "line": {"color": "#8d99ae", "dash": "dot"},
            }
        )
        layout["yaxis2"] = {
            "title": {"text": t("cashflow.balance")},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
        }
    return {"data": traces, "layout": layout}


def form_values(form: Mapping[str, Any], *names: str) -> dict[str, str | None]:
    """The stripped text of form fields ``names`` (None when empty)."""
    values: dict[str, str | None] = {}
    for name in names:
        raw = form.get(name)
        text = raw.strip() if isinstance(raw, str) else ""
        values[name] = text or None
    return values
