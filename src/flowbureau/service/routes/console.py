"""The web console's entry: landing page, language switch, sign-in, registration, sign-out.

Thin adapters over :mod:`flowbureau.service.accounts` and :mod:`flowbureau.service.otp`, the
same functions as ``/v1/auth``: the same SMS limits, sign-in limits and audit entries.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query
from fastapi.responses import RedirectResponse, Response

from flowbureau.errors import FlowbureauError, InputError
from flowbureau.service import accounts, otp
from flowbureau.service.console import HOME_BY_ROLE, ConsoleDep, safe_next
from flowbureau.service.deps import ClientIpDep, RequestIdDep
from flowbureau.service.i18n import LANG_COOKIE, LANGUAGES
from flowbureau.service.identifiers import normalize_phone
from flowbureau.service.models import OtpPurpose

router = APIRouter(include_in_schema=False)

FormText = Annotated[str, Form(max_length=300)]
OptionalText = Annotated[str | None, Form(max_length=300)]


@router.get("/")
def root() -> RedirectResponse:
    """The console's landing page."""
    return RedirectResponse("/console/", status_code=307)


@router.get("/console/")
def landing(console: ConsoleDep) -> Response:
    """Choose the enterprise portal or the institution console."""
    if console.principal is not None and console.principal.role in HOME_BY_ROLE:
        return console.redirect(HOME_BY_ROLE[console.principal.role])
    return console.page("index.html")


@router.get("/console/lang/{language}")
def switch_language(
    language: str, console: ConsoleDep, next_page: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """Remember the language (cookie) and go back."""
    if language in LANGUAGES:
        console.cookies[LANG_COOKIE] = language
    return console.redirect(safe_next(next_page, "/console/"))


@router.get("/console/login")
def login_form(
    console: ConsoleDep, next_page: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """The sign-in form (password, or an SMS code)."""
    return console.page("login.html", next_page=safe_next(next_page, ""), error=None, phone="")


def _home(console: ConsoleDep) -> str:
    principal = console.require()
    return HOME_BY_ROLE.get(principal.role, "/console/staff")


@router.post("/console/login")
def login(
    *,
    console: ConsoleDep,
    client_ip: ClientIpDep,
    phone: FormText,
    password: OptionalText = None,
    code: OptionalText = None,
    next_page: Annotated[str | None, Form(alias="next")] = None,
) -> Response:
    """Check the phone and password (or SMS code), start a console session, go home."""
    settings = console.context.settings
    try:
        user = accounts.authenticate(
            console.db,
            phone=normalize_phone(phone),
            password=password or None,
            code=(code or None) if not password else None,
            client_ip=client_ip,
            vault=console.context.vault,
            passwords=console.context.passwords,
            limiter=console.context.limiter,
            settings=settings.service,
            now=console.now,
        )
    except FlowbureauError as exc:
        return console.page(
            "login.html",
            status=401 if not isinstance(exc, InputError) else 422,
            next_page=safe_next(next_page, ""),
            error=console.t("login.failed"),
            phone=phone,
        )
    console.sign_in(user)
    return console.redirect(safe_next(next_page, _home(console)))


@router.post("/console/login/code")
def login_code(*, console: ConsoleDep, client_ip: ClientIpDep, phone: FormText) -> Response:
    """Send a sign-in SMS code, then show the form to enter it."""
    return _send_code(console, client_ip, phone, OtpPurpose.LOGIN, "login.html")


def _send_code(
    console: ConsoleDep, client_ip: str, phone: str, purpose: OtpPurpose, template: str
) -> Response:
    try:
        otp.request_code(
            console.db,
            phone=normalize_phone(phone),
            purpose=purpose,
            client_ip=client_ip,
            vault=console.context.vault,
            sender=console.context.sms,
            limiter=console.context.limiter,
            settings=console.context.settings.service,
            now=console.now,
        )
    except FlowbureauError as exc:
        return console.page(
            template,
            status=422 if isinstance(exc, InputError) else 429,
            error=str(getattr(exc, "message", exc)),
            phone=phone,
            next_page="",
            step="phone",
        )
    return console.page(
        template, error=None, phone=phone, next_page="", step="code", code_sent=True
    )


@router.get("/console/register")
def register_form(console: ConsoleDep) -> Response:
    """Registration, step 1: the phone that receives the SMS code."""
    return console.page("register.html", error=None, phone="", step="phone")


@router.post("/console/register/code")
def register_code(*, console: ConsoleDep, client_ip: ClientIpDep, phone: FormText) -> Response:
    """Registration: send the SMS code; step 2 asks for it with a password."""
    return _send_code(console, client_ip, phone, OtpPurpose.REGISTER, "register.html")


@router.post("/console/register")
def register(
    *,
    console: ConsoleDep,
    client_ip: ClientIpDep,
    request_id: RequestIdDep,
    phone: FormText,
    code: FormText,
    password: FormText,
    enterprise_name: OptionalText = None,
) -> Response:
    """Registration, step 2: check the code, create the enterprise user, sign in."""
    settings = console.context.settings
    try:
        user = accounts.register_enterprise_user(
            console.db,
            phone=normalize_phone(phone),
            code=code.strip(),
            password=password,
            client_ip=client_ip,
            vault=console.context.vault,
            passwords=console.context.passwords,
            limiter=console.context.limiter,
            settings=settings.service,
            request_id=request_id,
            now=console.now,
            enterprise_name=enterprise_name or None,
        )
    except FlowbureauError as exc:
        return console.page(
            "register.html",
            status=422,
            error=str(getattr(exc, "message", exc)),
            phone=phone,
            step="code",
        )
    console.sign_in(user)
    return console.redirect("/console/enterprise/profile")


@router.post("/console/logout")
def logout(console: ConsoleDep) -> Response:
    """End the console session."""
    console.sign_out()
    return console.redirect("/console/")


@router.get("/console/staff")
def staff(console: ConsoleDep) -> Response:
    """Operators and auditors work through the API and the CLI; this page says so."""
    console.require()
    return console.page("staff.html")
