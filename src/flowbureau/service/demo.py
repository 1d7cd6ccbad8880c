"""Demo accounts over a synthetic consortium (``make demo``; the CLI prints what this returns).

Rules:
- Refused in production (:class:`~flowbureau.errors.ConfigurationError`): demo accounts have
  generated passwords that are printed to a terminal.
- Creates (or, when run again, resets the passwords of) a demo institution with an analyst and
  an API key, an operator, an auditor, and one enterprise user for each of the first ``count``
  synthetic enterprises that banks hold accounts for: its profile is filled from the synthetic
  business registry and the banks' account registers, and it gives the demo institution a live
  consent (pre-loan review: score, report and transactions, 180 days).
- Loads the identity sources (the warehouse's accounts, the consortium's registry and public
  records), trains the identity model when there are enough records, and matches each demo
  enterprise's records; the demo enterprises are evaluated when a credit model is saved.
- Passwords are random (``secrets``); nothing here has a default credential.
"""

from __future__ import annotations

import csv
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.config import Settings
from flowbureau.errors import ConfigurationError, FlowbureauError, InputError
from flowbureau.identity import attribution
from flowbureau.service import accounts, apikeys, consent, profiles, records
from flowbureau.service.app import prepare_database
from flowbureau.service.context import ServiceContext, build_context
from flowbureau.service.identifiers import normalize_industry_code
from flowbureau.service.models import ApiKey, Institution, Operation, Purpose, Role, User
from flowbureau.service.otp import phone_lookup
from flowbureau.service.principals import Principal
from flowbureau.service.schemas import BankAccountCreate, Money, ProfileUpdate
from flowbureau.storage.database import session_scope

__all__ = ["DEMO_INSTITUTION", "DemoAccount", "seed_demo"]

DEMO_INSTITUTION = "闽江银行（演示）"
_STAFF = (
    (Role.ANALYST, "13900000001", "信贷分析师（演示）"),
    (Role.OPERATOR, "13900000002", "运营人员（演示）"),
    (Role.AUDITOR, "13900000003", "审计人员（演示）"),
)
_ENTERPRISE_PHONE = "1390000{:04d}"
_DEMO_SCOPES = [Operation.VIEW_SCORE, Operation.VIEW_REPORT, Operation.VIEW_TRANSACTIONS]


@dataclass(frozen=True, slots=True)
class DemoAccount:
    """A demo credential to print: who, how to sign in, what it is for."""

    role: str
    name: str
    phone: str | None
    password: str | None
    api_key: str | None = None
    credit_code: str | None = None


def _password() -> str:
    return secrets.token_urlsafe(12)


def _registry(consortium_dir: Path) -> list[dict[str, str]]:
    path = consortium_dir / "registry" / "enterprises.csv"
    if not path.is_file():
        raise InputError("no synthetic business registry here", file=path)
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _bank_accounts(consortium_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """credit code -> [(bank name, account number)] from the banks' account registers."""
    found: dict[str, list[tuple[str, str]]] = {}
    for register in sorted((consortium_dir / "banks").glob("*/account_register.csv")):
        bank = register.parent.name
        with register.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                code = (row.get("统一社会信用代码") or "").strip()
                number = (row.get("账号") or "").strip()
                if code and number:
                    found.setdefault(code, []).append((bank, number))
    return found


def _user(db: Session, context: ServiceContext, phone: str, password: str) -> User | None:
    """The user of ``phone`` with its password reset, or None when there is none."""
    user = db.execute(
        sa.select(User).where(User.phone_lookup == phone_lookup(context.vault, "+86" + phone))
    ).scalar_one_or_none()
    if user is not None:
        user.password_hash = context.passwords.hash(password)
        user.disabled_at = None
    return user


def _institution(db: Session, context: ServiceContext) -> Institution:
    existing = db.execute(
        sa.select(Institution).where(Institution.name == DEMO_INSTITUTION)
    ).scalar_one_or_none()
    return existing or accounts.create_institution(db, name=DEMO_INSTITUTION, now=context.clock())


def _staff(db: Session, context: ServiceContext, institution: Institution) -> list[DemoAccount]:
    made = []
    for role, phone, name in _STAFF:
        password = _password()
        if _user(db, context, phone, password) is None:
            accounts.create_staff_user(
                db,
                role=role,
                phone="+86" + phone,
                password=password,
                vault=context.vault,
                passwords=context.passwords,
                now=context.clock(),
                institution_id=institution.id if role is Role.ANALYST else None,
                display_name=name,
            )
        made.append(DemoAccount(role=role.value, name=name, phone=phone, password=password))
    for key in db.execute(
        sa.select(ApiKey).where(
            ApiKey.institution_id == institution.id, ApiKey.revoked_at.is_(None)
        )
    ).scalars():
        key.revoked_at = context.clock()  # the old demo key was printed before; replace it
    _row, secret = apikeys.create_api_key(
        db,
        institution_id=institution.id,
        scopes=[s.value for s in _DEMO_SCOPES],
        now=context.clock(),
        label="demo",
    )
    made.append(
        DemoAccount(
            role=Role.API_CLIENT.value,
            name=DEMO_INSTITUTION,
            phone=None,
            password=None,
            api_key=secret,
        )
    )
    return made


def _profile(row: dict[str, str], banks: list[tuple[str, str]], phone: str) -> ProfileUpdate:
    capital = int(row["registered_capital_minor"]) if row.get("registered_capital_minor") else None
    return ProfileUpdate(
        name=row["name"],
        credit_code=row["credit_code"],
        industry_code=normalize_industry_code(row["division"]) if row.get("division") else None,
        registration_date=date.fromisoformat(row["registration_date"]),
        registered_capital=None
        if capital is None
        else Money(amount=f"{capital // 100}.{capital % 100:02d}", currency="CNY"),
        legal_representative=row.get("legal_representative") or None,
        address=row.get("address") or None,
        contact_name=row.get("legal_representative") or None,
        contact_phone=phone,
        bank_accounts=[
            BankAccountCreate(bank_name=bank, account_number=number) for bank, number in banks[:3]
        ],
    )


def _enterprise(
    db: Session,
    context: ServiceContext,
    *,
    index: int,
    row: dict[str, str],
    banks: list[tuple[str, str]],
    institution: Institution,
) -> DemoAccount:
    now = context.clock()
    phone = _ENTERPRISE_PHONE.format(index + 10)
    password = _password()
    user = _user(db, context, phone, password)
    if user is None:
        user = _new_enterprise_user(db, context, phone, password, row["name"])
    principal = Principal(
        kind="user", id=user.id, role=Role.ENTERPRISE, enterprise_id=user.enterprise_id
    )
    enterprise = profiles.replace_profile(
        db,
        principal=principal,
        update=_profile(row, banks, "+86" + phone),
        vault=context.vault,
        pseudonym_key=context.settings.pseudonym_key.get_secret_value().encode("utf-8"),
        request_id=None,
        now=now,
    )
    live = consent.list_consents(
        db, principal=principal, status="live", after=None, limit=10, now=now
    )
    if not any(c.institution_id == institution.id for c in live):
        consent.grant_consent(
            db,
            principal=principal,
            institution_id=institution.id,
            purpose=Purpose.PRE_LOAN_REVIEW,
            scopes=_DEMO_SCOPES,
            expires_at=now + timedelta(days=180),
            max_days=context.settings.service.consent_max_days,
            request_id=None,
            now=now,
        )
    return DemoAccount(
        role=Role.ENTERPRISE.value,
        name=row["name"],
        phone=phone,
        password=password,
        credit_code=enterprise.credit_code,
    )


def _new_enterprise_user(
    db: Session, context: ServiceContext, phone: str, password: str, name: str
) -> User:
    from flowbureau.service.models import Enterprise
    from flowbureau.service.otp import PHONE_CONTEXT

    now = context.clock()
    enterprise = Enterprise(name=name, created_at=now, updated_at=now)
    db.add(enterprise)
    db.flush()
    user = User(
        role=Role.ENTERPRISE,
        phone_lookup=phone_lookup(context.vault, "+86" + phone),
        phone_enc=context.vault.encrypt("+86" + phone, context=PHONE_CONTEXT),
        password_hash=context.passwords.hash(password),
        display_name=name,
        enterprise_id=enterprise.id,
        created_at=now,
    )
    db.add(user)
    db.flush()
    return user


def seed_demo(settings: Settings, *, consortium_dir: Path, count: int = 3) -> list[DemoAccount]:
    """Create (or refresh) the demo accounts over ``consortium_dir``; return their credentials."""
    if settings.env == "production":
        raise ConfigurationError("refusing to create demo accounts in production")
    if count < 1:
        raise InputError("at least one demo enterprise", field="count")
    prepare_database(settings)
    context = build_context(settings)
    try:
        registry = _registry(consortium_dir)
        banks = _bank_accounts(consortium_dir)
        chosen = [row for row in registry if row.get("credit_code") in banks][:count]
        made: list[DemoAccount] = []
        with session_scope(context.sessions) as db:
            institution = _institution(db, context)
            made += _staff(db, context, institution)
            for index, row in enumerate(chosen):
                made.append(
                    _enterprise(
                        db,
                        context,
                        index=index,
                        row=row,
                        banks=banks[row["credit_code"]],
                        institution=institution,
                    )
                )
        with session_scope(context.sessions) as db:
            records.load_sources(
                db, context=context, principal=None, now=context.clock(), directory=consortium_dir
            )
        _match(context, [a.credit_code for a in made if a.credit_code])
        return made
    finally:
        context.close()


def _match(context: ServiceContext, codes: list[str]) -> None:
    """Train the identity model (when possible), match and evaluate the demo enterprises."""
    from flowbureau.service.models import Enterprise

    with session_scope(context.sessions) as db:
        try:
            records.train_identity_model(db, context=context, principal=None)
        except FlowbureauError:
            return  # too few records to train on: the demo runs without attribution
    model = context.identity_model()
    with session_scope(context.sessions) as db:
        for enterprise in db.execute(
            sa.select(Enterprise).where(Enterprise.credit_code.in_(codes))
        ).scalars():
            owner = db.execute(
                sa.select(User).where(User.enterprise_id == enterprise.id)
            ).scalar_one()
            principal = Principal(
                kind="user", id=owner.id, role=Role.ENTERPRISE, enterprise_id=enterprise.id
            )
            if model is not None:
                attribution.attribute(
                    db,
                    enterprise=enterprise,
                    model=model,
                    vault=context.vault,
                    settings=context.settings.identity,
                    principal=principal,
                    request_id=None,
                    now=context.clock(),
                )
            provider = context.provider_factory(db)
            today = context.clock().date()
            if enterprise.credit_code and provider.score(enterprise.credit_code, today) is None:
                context.evaluator(db).evaluate(credit_code=enterprise.credit_code, as_of=today)
