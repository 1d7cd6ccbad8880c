"""The enterprise portal: information entry, records and update requests, applications,
consent management and the enterprise's own score.

Thin adapters over the same domain functions as the HTTP API (:mod:`flowbureau.service.
profiles`, :mod:`~flowbureau.service.applications`, :mod:`~flowbureau.service.consent`,
:mod:`~flowbureau.service.records`); reads of the enterprise's data go through
:func:`flowbureau.service.consent.require_access` and are audited like API reads.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Path
from fastapi.responses import Response
from pydantic import ValidationError

from flowbureau.errors import FlowbureauError, IncompleteError, InputError
from flowbureau.identity.freshness import FinancialsData, latest_financials
from flowbureau.schema import to_minor
from flowbureau.service import applications, consent, profiles, records
from flowbureau.service.console import Console, ConsoleDep, cashflow_chart, gauge_chart
from flowbureau.service.deps import RequestIdDep
from flowbureau.service.models import Operation, Purpose, Role
from flowbureau.service.routes.records import financials_public
from flowbureau.service.schemas import ApplicationCreate, ProfileUpdate

router = APIRouter(include_in_schema=False)

Text = Annotated[str | None, Form(max_length=300)]
Texts = Annotated[list[str], Form()]
PROFILE_FIELDS = (
    "name",
    "credit_code",
    "industry_code",
    "registration_date",
    "registered_capital",
    "legal_representative",
    "address",
    "contact_name",
    "contact_phone",
)


def _enterprise(console: Console) -> Any:
    principal = console.require(Role.ENTERPRISE)
    return principal, profiles.get_own_enterprise(console.db, principal)


def own_panels(console: Console, credit_code: str) -> dict[str, Any]:
    """Score, cash flow and report of the enterprise itself (audited reads)."""
    principal = console.require(Role.ENTERPRISE)
    today = console.now.date()
    provider = console.context.provider_factory(console.db)
    consent.require_access(
        console.db,
        principal=principal,
        credit_code=credit_code,
        operation=Operation.VIEW_SCORE,
        purpose=None,
        resource=console.request.url.path,
        request_id=None,
        now=console.now,
    )
    score = provider.score(credit_code, today)
    summary = provider.transactions_summary(credit_code, today)
    currency = console.context.settings.scoring.currency
    return {
        "score": score,
        "gauge": None if score is None else gauge_chart(score, console.t),
        "summary": summary,
        "cashflow": None
        if summary is None or not summary.monthly
        else cashflow_chart(summary.monthly, currency, console.t),
    }


@router.get("/console/enterprise")
def home(console: ConsoleDep) -> Response:
    """The enterprise's overview: what is missing, update requests, applications, score."""
    principal, enterprise = _enterprise(console)
    requests = records.review(
        console.db, context=console.context, principal=principal, now=console.now
    )
    apps = applications.list_applications(console.db, principal=principal, after=None, limit=10)
    consents = consent.list_consents(
        console.db, principal=principal, status="live", after=None, limit=100, now=console.now
    )
    panels = own_panels(console, enterprise.credit_code) if enterprise.credit_code else {}
    return console.page(
        "enterprise/home.html",
        enterprise=enterprise,
        missing=profiles.missing_profile_fields(enterprise),
        requests=requests,
        applications=apps,
        live_consents=len(consents),
        panels=panels,
    )


@router.get("/console/enterprise/profile")
def profile_form(console: ConsoleDep) -> Response:
    """The information form, pre-filled; missing fields are marked."""
    _principal, enterprise = _enterprise(console)
    profile = profiles.profile_public(enterprise, console.context.vault)
    return console.page(
        "enterprise/profile.html",
        profile=profile,
        values=_profile_values(profile.model_dump(mode="json")),
        errors={},
        saved=console.request.query_params.get("saved") == "1",
    )


def _profile_values(profile: dict[str, Any]) -> dict[str, Any]:
    capital = profile.get("registered_capital") or {}
    return {
        **{name: profile.get(name) or "" for name in PROFILE_FIELDS},
        "registered_capital": capital.get("amount", "") if capital else "",
        "accounts": [
            {"bank_name": a["bank_name"], "account_number": "", "last4": a["account_last4"]}
            for a in profile.get("bank_accounts", [])
        ],
    }


@router.post("/console/enterprise/profile")
def save_profile(
    *,
    console: ConsoleDep,
    request_id: RequestIdDep,
    name: Text = None,
    credit_code: Text = None,
    industry_code: Text = None,
    registration_date: Text = None,
    registered_capital: Text = None,
    legal_representative: Text = None,
    address: Text = None,
    contact_name: Text = None,
    contact_phone: Text = None,
    bank_name: Texts = [],  # noqa: B006 - FastAPI copies form defaults
    account_number: Texts = [],  # noqa: B006
    account_last4: Texts = [],  # noqa: B006
) -> Response:
    """Save the information (PUT semantics); the records are re-matched, requests resolved.

    A bank account row shown with only its last four digits keeps the stored number when its
    number field is left empty.
    """
    principal, enterprise = _enterprise(console)
    stored = {a.account_last4: a for a in enterprise.bank_accounts}
    accounts: list[dict[str, str]] = []
    for bank, number, last4 in zip(bank_name, account_number, account_last4, strict=False):
        if number.strip():
            accounts.append({"bank_name": bank.strip(), "account_number": number.strip()})
        elif last4 and last4 in stored and bank.strip():
            clear = console.context.vault.decrypt(
                stored[last4].account_enc, context=profiles.ACCOUNT_CONTEXT
            )
            accounts.append({"bank_name": bank.strip(), "account_number": clear})
    raw = {
        "name": name,
        "credit_code": (credit_code or "").strip().upper() or None,
        "industry_code": industry_code,
        "registration_date": registration_date,
        "registered_capital": {"amount": registered_capital, "currency": "CNY"}
        if registered_capital
        else None,
        "legal_representative": legal_representative,
        "address": address,
        "contact_name": contact_name,
        "contact_phone": contact_phone,
        "bank_accounts": accounts,
    }
    values = {
        **{k: (v or "") for k, v in raw.items() if k in PROFILE_FIELDS and not isinstance(v, dict)},
        "registered_capital": registered_capital or "",
        "accounts": [
            {"bank_name": a["bank_name"], "account_number": a["account_number"], "last4": ""}
            for a in accounts
        ],
    }
    try:
        update = ProfileUpdate.model_validate({k: v for k, v in raw.items() if v not in ("", None)})
        saved = profiles.replace_profile(
            console.db,
            principal=principal,
            update=update,
            vault=console.context.vault,
            pseudonym_key=console.context.settings.pseudonym_key.get_secret_value().encode(),
            request_id=request_id,
            now=console.now,
        )
        records.after_profile_saved(
            console.db,
            context=console.context,
            principal=principal,
            enterprise=saved,
            request_id=request_id,
            now=console.now,
        )
    except ValidationError as exc:
        errors = {
            ".".join(str(p) for p in e["loc"][:1]): e["msg"] for e in exc.errors(include_url=False)
        }
        return _profile_error(console, enterprise, values, errors)
    except FlowbureauError as exc:
        field = getattr(exc, "field", None) or "form"
        return _profile_error(
            console, enterprise, values, {field: str(getattr(exc, "message", exc))}
        )
    return console.redirect("/console/enterprise/profile?saved=1")


def _profile_error(
    console: Console, enterprise: Any, values: dict[str, Any], errors: dict[str, str]
) -> Response:
    console.db.rollback()
    profile = profiles.profile_public(enterprise, console.context.vault)
    return console.page(
        "enterprise/profile.html",
        status=422,
        profile=profile,
        values=values,
        errors=errors,
        saved=False,
    )


@router.get("/console/enterprise/applications/new")
def application_form(console: ConsoleDep) -> Response:
    """A new credit evaluation application."""
    _enterprise(console)
    return console.page("enterprise/apply.html", missing=[], error=None, values={})


@router.post("/console/enterprise/applications")
def apply(
    *,
    console: ConsoleDep,
    request_id: RequestIdDep,
    amount: Text = None,
    term_months: Text = None,
    loan_purpose: Text = None,
) -> Response:
    """Submit an application; while information is missing, list all of it with links back."""
    principal, _enterprise_row = _enterprise(console)
    values = {
        "amount": amount or "",
        "term_months": term_months or "",
        "loan_purpose": loan_purpose or "",
    }
    try:
        data = ApplicationCreate.model_validate(
            {
                "requested_amount": {"amount": amount} if amount else None,
                "term_months": int(term_months) if term_months else None,
                "loan_purpose": loan_purpose or None,
            }
        )
        created = applications.create_application(
            console.db,
            principal=principal,
            data=data,
            evaluator=console.context.evaluator(console.db),
            request_id=request_id,
            now=console.now,
        )
    except IncompleteError as exc:
        return console.page(
            "enterprise/apply.html",
            status=422,
            missing=list(exc.missing_fields),
            error=None,
            values=values,
        )
    except (ValidationError, ValueError) as exc:
        return console.page(
            "enterprise/apply.html",
            status=422,
            missing=[],
            error=str(exc).splitlines()[0],
            values=values,
        )
    return console.redirect(f"/console/enterprise/applications/{created.id}")


@router.get("/console/enterprise/applications/{application_id}")
def application_page(
    application_id: Annotated[str, Path(max_length=36)], console: ConsoleDep
) -> Response:
    """One application and, once evaluated, its evaluation."""
    principal, _enterprise_row = _enterprise(console)
    view = applications.view_application(
        console.db,
        principal=principal,
        application_id=application_id,
        purpose=None,
        resource=console.request.url.path,
        request_id=None,
        now=console.now,
    )
    gauge = None if view.evaluation is None else gauge_chart(view.evaluation, console.t)
    return console.page("enterprise/application.html", application=view, gauge=gauge)


@router.get("/console/enterprise/consents")
def consents_page(console: ConsoleDep) -> Response:
    """Consents given, and the form to give one."""
    return _consents(console, error=None)


def _consents(console: Console, *, error: str | None, status: int = 200) -> Response:
    principal, enterprise = _enterprise(console)
    rows = consent.list_consents(
        console.db, principal=principal, status=None, after=None, limit=100, now=console.now
    )
    views = [consent.consent_view(console.db, c, console.now) for c in reversed(rows)]
    from flowbureau.service.accounts import list_institutions

    return console.page(
        "enterprise/consents.html",
        status=status,
        consents=views,
        institutions=list_institutions(console.db),
        purposes=list(Purpose),
        operations=list(Operation),
        default_expiry=(console.now.date() + timedelta(days=90)).isoformat(),
        has_code=enterprise.credit_code is not None,
        error=error,
    )


@router.post("/console/enterprise/consents")
def grant(
    *,
    console: ConsoleDep,
    request_id: RequestIdDep,
    institution_id: Annotated[str, Form(max_length=36)],
    purpose: Annotated[str, Form(max_length=40)],
    expires_on: Annotated[str, Form(max_length=10)],
    scopes: Texts = [],  # noqa: B006
) -> Response:
    """Give an institution a consent (until the end of ``expires_on``, consortium time)."""
    principal, _enterprise_row = _enterprise(console)
    try:
        if not scopes:
            raise InputError(console.t("consents.no_scope"), field="scopes")
        zone = ZoneInfo(console.context.settings.timezone)
        day = date.fromisoformat(expires_on)
        expires_at = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        consent.grant_consent(
            console.db,
            principal=principal,
            institution_id=institution_id,
            purpose=Purpose(purpose),
            scopes=[Operation(s) for s in scopes],
            expires_at=expires_at,
            max_days=console.context.settings.service.consent_max_days,
            request_id=request_id,
            now=console.now,
        )
    except (FlowbureauError, ValueError) as exc:
        console.db.rollback()
        return _consents(console, error=str(getattr(exc, "message", exc)), status=422)
    return console.redirect("/console/enterprise/consents")


@router.post("/console/enterprise/consents/{consent_id}/revoke")
def revoke(
    consent_id: Annotated[str, Path(max_length=36)], console: ConsoleDep, request_id: RequestIdDep
) -> Response:
    """Revoke a consent at once."""
    principal, _enterprise_row = _enterprise(console)
    consent.revoke_consent(
        console.db,
        principal=principal,
        consent_id=consent_id,
        request_id=request_id,
        now=console.now,
    )
    return console.redirect("/console/enterprise/consents")


@router.get("/console/enterprise/records")
def records_page(console: ConsoleDep) -> Response:
    """Records matched to the enterprise, update requests and the financial figures."""
    return _records(console, error=None)


def _records(console: Console, *, error: str | None, status: int = 200) -> Response:
    principal, enterprise = _enterprise(console)
    requests = records.review(
        console.db, context=console.context, principal=principal, now=console.now
    )
    links = records.enterprise_records(console.db, principal=principal)
    declared = latest_financials(console.db, enterprise.id)
    return console.page(
        "enterprise/records.html",
        status=status,
        links=links,
        requests=requests,
        history=records.requests_history(console.db, principal=principal, limit=10),
        financials=None if declared is None else financials_public(declared),
        model_ready=console.context.identity_model() is not None,
        error=error,
        matched=console.request.query_params.get("matched"),
    )


@router.post("/console/enterprise/records/match")
def match(console: ConsoleDep, request_id: RequestIdDep) -> Response:
    """Match the enterprise's information to the platform's records."""
    principal, _enterprise_row = _enterprise(console)
    result = records.match_records(
        console.db,
        context=console.context,
        principal=principal,
        request_id=request_id,
        now=console.now,
    )
    return console.redirect(f"/console/enterprise/records?matched={result.attached}")


@router.post("/console/enterprise/records/{link_id}/{decision}")
def decide(
    link_id: Annotated[str, Path(max_length=36)],
    decision: Annotated[str, Path(pattern="^(confirm|reject)$")],
    console: ConsoleDep,
    request_id: RequestIdDep,
) -> Response:
    """Confirm or reject a matched record."""
    principal, _enterprise_row = _enterprise(console)
    records.set_record_status(
        console.db,
        principal=principal,
        link_id=link_id,
        confirm=decision == "confirm",
        request_id=request_id,
        now=console.now,
    )
    return console.redirect("/console/enterprise/records")


def _minor(text: str | None, field: str) -> int:
    try:
        return to_minor(Decimal((text or "").replace(",", "").strip()), "CNY")
    except (InvalidOperation, ValueError, FlowbureauError):
        raise InputError(f"{text!r} is not an amount", field=field) from None


@router.post("/console/enterprise/financials")
def financials(
    *,
    console: ConsoleDep,
    request_id: RequestIdDep,
    period_end: Text = None,
    revenue: Text = None,
    total_assets: Text = None,
    total_liabilities: Text = None,
    net_profit: Text = None,
) -> Response:
    """Declare financial figures (resolves a financial update request, re-evaluates)."""
    principal, _enterprise_row = _enterprise(console)
    try:
        amounts = {
            name: _minor(value, name)
            for name, value in (
                ("revenue", revenue),
                ("total_assets", total_assets),
                ("total_liabilities", total_liabilities),
                ("net_profit", net_profit),
            )
        }
        for name in ("revenue", "total_assets", "total_liabilities"):
            if amounts[name] < 0:
                raise InputError(console.t("records.negative"), field=name)
        try:
            end = date.fromisoformat(period_end or "")
        except ValueError:
            raise InputError(f"{period_end!r} is not a date", field="period_end") from None
        records.declare_financials(
            console.db,
            context=console.context,
            principal=principal,
            data=FinancialsData(
                period_end=end,
                currency="CNY",
                revenue_minor=amounts["revenue"],
                total_assets_minor=amounts["total_assets"],
                total_liabilities_minor=amounts["total_liabilities"],
                net_profit_minor=amounts["net_profit"],
            ),
            request_id=request_id,
            now=console.now,
        )
    except FlowbureauError as exc:
        console.db.rollback()
        return _records(console, error=str(getattr(exc, "message", exc)), status=422)
    return console.redirect("/console/enterprise/records")
