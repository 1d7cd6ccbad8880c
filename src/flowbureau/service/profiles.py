"""Enterprise information (the profile) entered by the enterprise's own users.

Rules:
- ``PUT`` semantics: a profile update replaces the whole profile, bank accounts included; a
  field left out becomes empty. Partial profiles are stored (people fill them in over time);
  completeness is checked when an application is submitted (:data:`REQUIRED_PROFILE_FIELDS`).
- A unified social credit code belongs to one enterprise, and cannot change once consents or
  submitted applications refer to the enterprise under it.
- The registration date cannot be in the future.
- Contact phones and account numbers are stored encrypted; accounts also under the warehouse's
  account pseudonym (so declared accounts match contributed statements; duplicates within one
  enterprise are refused) and their last four characters for display.
- Every update is audited.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.cleaning.identifiers import account_pseudonym
from flowbureau.cleaning.normalise import normalise_account_number
from flowbureau.errors import ConflictError, InputError, NotFoundError
from flowbureau.schema import format_minor
from flowbureau.service import audit
from flowbureau.service.consent import audit_record, require_role
from flowbureau.service.models import (
    Application,
    ApplicationStatus,
    BankAccount,
    Consent,
    Enterprise,
    Role,
)
from flowbureau.service.principals import Principal
from flowbureau.service.schemas import (
    BankAccountPublic,
    Money,
    ProfilePublic,
    ProfileUpdate,
)
from flowbureau.service.vault import Vault

__all__ = [
    "REQUIRED_PROFILE_FIELDS",
    "get_own_enterprise",
    "missing_profile_fields",
    "profile_public",
    "replace_profile",
]

REQUIRED_PROFILE_FIELDS: tuple[str, ...] = (
    "name",
    "credit_code",
    "industry_code",
    "registration_date",
    "registered_capital",
    "legal_representative",
    "address",
    "contact_name",
    "contact_phone",
    "bank_accounts",
)
"""Profile fields an application needs (reported as ``profile.<field>`` when missing)."""

CONTACT_PHONE_CONTEXT = "enterprises.contact_phone"
ACCOUNT_CONTEXT = "enterprise_bank_accounts.account"


def get_own_enterprise(db: Session, principal: Principal) -> Enterprise:
    """The enterprise of an enterprise user (others are refused)."""
    require_role(principal, Role.ENTERPRISE, action="managing an enterprise's information")
    enterprise = (
        None if principal.enterprise_id is None else db.get(Enterprise, principal.enterprise_id)
    )
    if enterprise is None:
        raise NotFoundError("this account has no enterprise")
    return enterprise


def missing_profile_fields(enterprise: Enterprise) -> list[str]:
    """The required profile fields still empty, as ``profile.<field>``."""
    present = {
        "name": enterprise.name,
        "credit_code": enterprise.credit_code,
        "industry_code": enterprise.industry_code,
        "registration_date": enterprise.registration_date,
        "registered_capital": enterprise.registered_capital_minor,
        "legal_representative": enterprise.legal_representative,
        "address": enterprise.address,
        "contact_name": enterprise.contact_name,
        "contact_phone": enterprise.contact_phone_enc,
        "bank_accounts": enterprise.bank_accounts or None,
    }
    return [f"profile.{name}" for name in REQUIRED_PROFILE_FIELDS if present[name] is None]


def _code_is_referenced(db: Session, enterprise_id: str) -> bool:
    consent = sa.select(Consent.id).where(Consent.enterprise_id == enterprise_id).limit(1)
    submitted = (
        sa.select(Application.id)
        .where(
            Application.enterprise_id == enterprise_id,
            Application.status != ApplicationStatus.DRAFT,
        )
        .limit(1)
    )
    return bool(db.execute(consent).first() or db.execute(submitted).first())


def replace_profile(
    db: Session,
    *,
    principal: Principal,
    update: ProfileUpdate,
    vault: Vault,
    pseudonym_key: bytes,
    request_id: str | None,
    now: datetime,
) -> Enterprise:
    """Replace the caller's enterprise profile with ``update``."""
    enterprise = get_own_enterprise(db, principal)
    if update.registration_date is not None and update.registration_date > now.date():
        raise InputError("the registration date is in the future", field="registration_date")
    if update.credit_code != enterprise.credit_code:
        if enterprise.credit_code is not None and _code_is_referenced(db, enterprise.id):
            raise ConflictError(
                "the credit code cannot change once consents or applications refer to it"
            )
        if update.credit_code is not None:
            holder = db.execute(
                sa.select(Enterprise.id).where(
                    Enterprise.credit_code == update.credit_code, Enterprise.id != enterprise.id
                )
            ).first()
            if holder is not None:
                raise ConflictError(
                    f"credit code {update.credit_code} is registered by another account"
                )
    accounts: list[BankAccount] = []
    seen: set[str] = set()
    for position, account in enumerate(update.bank_accounts):
        number = normalise_account_number(account.account_number) or ""
        pseudonym = account_pseudonym(number, pseudonym_key) or ""
        if pseudonym in seen:
            raise InputError("the same account is listed twice", field=f"bank_accounts[{position}]")
        seen.add(pseudonym)
        accounts.append(
            BankAccount(
                position=position,
                bank_name=account.bank_name,
                currency=account.currency,
                account_enc=vault.encrypt(number, context=ACCOUNT_CONTEXT),
                account_id=pseudonym,
                account_last4=number[-4:],
            )
        )
    capital = update.registered_capital
    enterprise.name = update.name
    enterprise.credit_code = update.credit_code
    enterprise.industry_code = update.industry_code
    enterprise.registration_date = update.registration_date
    enterprise.registered_capital_minor = None if capital is None else capital.minor
    enterprise.registered_capital_currency = None if capital is None else capital.currency
    enterprise.legal_representative = update.legal_representative
    enterprise.address = update.address
    enterprise.contact_name = update.contact_name
    enterprise.contact_phone_enc = (
        None
        if update.contact_phone is None
        else vault.encrypt(update.contact_phone, context=CONTACT_PHONE_CONTEXT)
    )
    enterprise.bank_accounts.clear()
    db.flush()  # delete the old accounts before inserting new ones with the same lookups
    enterprise.bank_accounts.extend(accounts)
    enterprise.updated_at = now
    db.flush()
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation="update_profile",
            resource="/v1/enterprise/profile",
            outcome="done",
            request_id=request_id,
            enterprise_id=enterprise.id,
            credit_code=enterprise.credit_code,
        ),
    )
    return enterprise


def profile_public(enterprise: Enterprise, vault: Vault) -> ProfilePublic:
    """The profile as its owner sees it (account numbers reduced to their last four)."""
    capital = None
    if enterprise.registered_capital_minor is not None and enterprise.registered_capital_currency:
        currency = enterprise.registered_capital_currency
        capital = Money(
            amount=format_minor(enterprise.registered_capital_minor, currency), currency=currency
        )
    phone = enterprise.contact_phone_enc
    return ProfilePublic(
        id=enterprise.id,
        name=enterprise.name,
        credit_code=enterprise.credit_code,
        industry_code=enterprise.industry_code,
        registration_date=enterprise.registration_date,
        registered_capital=capital,
        legal_representative=enterprise.legal_representative,
        address=enterprise.address,
        contact_name=enterprise.contact_name,
        contact_phone=None
        if phone is None
        else vault.decrypt(phone, context=CONTACT_PHONE_CONTEXT),
        bank_accounts=[
            BankAccountPublic(
                id=a.id, bank_name=a.bank_name, currency=a.currency, account_last4=a.account_last4
            )
            for a in enterprise.bank_accounts
        ],
        missing_fields=missing_profile_fields(enterprise),
        updated_at=enterprise.updated_at,
    )
