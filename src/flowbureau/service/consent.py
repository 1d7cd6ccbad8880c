"""Consent and the access policy: who may see which enterprise's data, for what, until when.

Rules (the table is :data:`ROLE_OPERATIONS`; docs/service.md shows it):
- An enterprise user sees all of its own enterprise's data and nobody else's.
- An institution analyst, or an institution's API client, may perform an operation on an
  enterprise's data only under a *live matching consent*: given by that enterprise to the
  caller's institution, for the purpose the request states, covering the operation, not
  expired, not revoked. An API client is further limited to its key's scopes.
- Operators and auditors run and watch the platform; they never read enterprise data.
- Every decision, allowed or denied, is written to the audit log and committed before the data
  is read (:func:`require_access`), so that an access is on record even if the read fails.
- An API key's open-API read finds the key, the enterprise and its consents to the key's
  institution in one query (:func:`verify_api_key_with_consents`); the consent rows are looked
  at only after the key has been checked (hash, revocation, expiry), and are decided on exactly
  as :func:`require_access` would have read them itself. Nothing is cached between requests.
- A denial says why (no consent, expired, revoked, other purpose, operation not covered, key
  scope, role) but never whether an enterprise the caller has no consent from exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.errors import (
    IncompleteError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from flowbureau.service import audit
from flowbureau.service.apikeys import (
    KEY_CHECK_COLUMNS,
    VerifiedKey,
    check_presented_key,
    normalize_scopes,
    presented_key_id,
)
from flowbureau.service.models import (
    ApiKey,
    Consent,
    Enterprise,
    Institution,
    Operation,
    Purpose,
    Role,
)
from flowbureau.service.principals import Principal
from flowbureau.service.providers import EnterpriseDataProvider, EnterpriseSummary
from flowbureau.service.schemas import ConsentPublic

__all__ = [
    "ROLE_OPERATIONS",
    "AccessGrant",
    "ConsentLookup",
    "ConsentStatus",
    "audit_record",
    "consent_status",
    "consent_view",
    "grant_consent",
    "list_consents",
    "require_access",
    "require_role",
    "revoke_consent",
    "search_enterprises",
    "verify_api_key_with_consents",
]

ALL_OPERATIONS = frozenset(Operation)

ROLE_OPERATIONS: dict[Role, frozenset[Operation]] = {
    Role.ENTERPRISE: ALL_OPERATIONS,  # on its own enterprise only
    Role.ANALYST: ALL_OPERATIONS,  # under a live matching consent
    Role.API_CLIENT: ALL_OPERATIONS,  # under a live matching consent and the key's scopes
    Role.OPERATOR: frozenset(),
    Role.AUDITOR: frozenset(),
}
"""Operations each role may ever perform on enterprise data (before consent is considered)."""

INSTITUTION_ROLES = frozenset({Role.ANALYST, Role.API_CLIENT})

ConsentStatus = Literal["live", "expired", "revoked"]

Db = Session | sa.Connection
"""What the access decision runs on: an ORM session, or a plain connection (the hot reads)."""


class _Lifetime(Protocol):
    @property
    def revoked_at(self) -> datetime | None: ...

    @property
    def expires_at(self) -> datetime: ...


def consent_status(consent: _Lifetime, now: datetime) -> ConsentStatus:
    """Whether ``consent`` is live, expired or revoked at ``now``."""
    if consent.revoked_at is not None:
        return "revoked"
    return "live" if consent.expires_at > now else "expired"


def require_role(principal: Principal, *roles: Role, action: str) -> None:
    """Raise :class:`PermissionDeniedError` unless the caller has one of ``roles``."""
    if principal.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise PermissionDeniedError(f"{action} is for {allowed}, not {principal.role.value}")


def audit_record(
    principal: Principal,
    *,
    now: datetime,
    operation: str,
    resource: str,
    outcome: str,
    request_id: str | None,
    enterprise_id: str | None = None,
    credit_code: str | None = None,
    purpose: str | None = None,
    consent_id: str | None = None,
    institution_id: str | None = None,
    reason: str | None = None,
) -> audit.AuditRecord:
    """An audit record of ``principal`` doing ``operation`` on ``resource``."""
    return audit.AuditRecord(
        at=now,
        actor_kind=principal.kind,
        actor_id=principal.key_id if principal.kind == "api_key" else principal.id,
        role=principal.role.value,
        institution_id=institution_id or principal.institution_id,
        enterprise_id=enterprise_id,
        credit_code=credit_code,
        purpose=purpose,
        consent_id=consent_id,
        operation=operation,
        resource=resource[:500],
        outcome=outcome,
        reason=None if reason is None else reason[:300],
        request_id=request_id,
    )


@dataclass(frozen=True, slots=True)
class AccessGrant:
    """An allowed access: the enterprise and the consent it rests on (none for the owner)."""

    enterprise_id: str
    credit_code: str
    consent_id: str | None


@dataclass(frozen=True, slots=True)
class _Decision:
    allowed: bool
    reason: str
    enterprise_id: str | None = None
    consent_id: str | None = None


@dataclass(frozen=True, slots=True)
class _ConsentRow:
    id: str
    purpose: Purpose
    scopes: list[str]
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConsentLookup:
    """What deciding an institution's access to one enterprise reads, fetched in one query.

    ``enterprise_id`` is ``None`` when no enterprise has ``credit_code``; ``consents`` are the
    consents that enterprise gave ``institution_id``, newest expiry first.
    """

    institution_id: str
    credit_code: str
    enterprise_id: str | None
    consents: tuple[_ConsentRow, ...]


_enterprises = Enterprise.__table__.c
_consents = Consent.__table__.c
_keys = ApiKey.__table__.c
_CONSENT_COLUMNS = (
    _enterprises.id.label("enterprise_id"),
    _consents.id.label("consent_id"),
    _consents.purpose.label("consent_purpose"),
    _consents.scopes.label("consent_scopes"),
    _consents.expires_at.label("consent_expires_at"),
    _consents.revoked_at.label("consent_revoked_at"),
)
_ENTERPRISE_ID = sa.select(_enterprises.id).where(
    _enterprises.credit_code == sa.bindparam("credit_code")
)
_ENTERPRISE_AND_CONSENTS = (
    sa.select(*_CONSENT_COLUMNS)
    .select_from(
        Enterprise.__table__.outerjoin(
            Consent.__table__,
            sa.and_(
                _consents.enterprise_id == _enterprises.id,
                _consents.institution_id == sa.bindparam("institution_id"),
            ),
        )
    )
    .where(_enterprises.credit_code == sa.bindparam("credit_code"))
    .order_by(_consents.expires_at.desc())
)
"""The enterprise and every consent it gave the institution, newest expiry first: one query,
built once (every institution read runs it)."""

_KEY_ENTERPRISE_AND_CONSENTS = (
    sa.select(*KEY_CHECK_COLUMNS, *_CONSENT_COLUMNS)
    .select_from(
        ApiKey.__table__.outerjoin(
            Enterprise.__table__, _enterprises.credit_code == sa.bindparam("credit_code")
        ).outerjoin(
            Consent.__table__,
            sa.and_(
                _consents.enterprise_id == _enterprises.id,
                _consents.institution_id == _keys.institution_id,
            ),
        )
    )
    .where(_keys.key_id == sa.bindparam("key_id"))
    .order_by(_consents.expires_at.desc())
)
"""The API key by its key id, with the enterprise and every consent it gave the key's
institution (newest expiry first): one row per consent, one row of nulls beside the key when
there are none, no row for an unknown key. Built once (every API-key read runs it)."""


def _consent_lookup(institution_id: str, credit_code: str, rows: Sequence[Any]) -> ConsentLookup:
    enterprise_id = rows[0].enterprise_id if rows else None
    return ConsentLookup(
        institution_id=institution_id,
        credit_code=credit_code,
        enterprise_id=None if enterprise_id is None else str(enterprise_id),
        consents=tuple(
            _ConsentRow(
                row.consent_id,
                row.consent_purpose,
                row.consent_scopes,
                row.consent_expires_at,
                row.consent_revoked_at,
            )
            for row in rows
            if row.consent_id is not None
        ),
    )


def verify_api_key_with_consents(
    db: Db, *, presented: str, credit_code: str, now: datetime
) -> tuple[VerifiedKey, ConsentLookup]:
    """Authenticate an API key and read what deciding its access to ``credit_code`` needs.

    One query instead of two (:func:`~flowbureau.service.apikeys.verify_api_key`, then the
    consents in :func:`require_access`). The key is checked exactly as ``verify_api_key``
    checks it (:class:`~flowbureau.errors.AuthenticationError` otherwise) before the consent
    rows are looked at; pass the lookup to :func:`require_access`.
    """
    key_id = presented_key_id(presented)
    rows = (
        []
        if key_id is None
        else db.execute(
            _KEY_ENTERPRISE_AND_CONSENTS, {"key_id": key_id, "credit_code": credit_code}
        ).all()
    )
    key = check_presented_key(rows[0] if rows else None, presented=presented, now=now)
    return key, _consent_lookup(key.institution_id, credit_code, rows)


def _decide(
    db: Db,
    *,
    principal: Principal,
    credit_code: str,
    operation: Operation,
    purpose: Purpose | None,
    now: datetime,
    lookup: ConsentLookup | None,
) -> _Decision:
    if operation not in ROLE_OPERATIONS[principal.role]:
        return _Decision(False, f"role {principal.role.value} never reads enterprise data")
    if principal.role is Role.ENTERPRISE:
        enterprise_id = db.execute(_ENTERPRISE_ID, {"credit_code": credit_code}).scalar()
        if enterprise_id is not None and enterprise_id == principal.enterprise_id:
            return _Decision(True, "own enterprise", enterprise_id)
        return _Decision(False, "an enterprise user sees only its own enterprise's data")
    if principal.role is Role.API_CLIENT and operation not in principal.scopes:
        scopes = ", ".join(sorted(principal.scopes)) or "none"
        return _Decision(
            False, f"this API key's scopes ({scopes}) do not include {operation.value}"
        )
    none = _Decision(
        False, f"no consent from enterprise {credit_code} to your institution: ask it for one"
    )
    if principal.institution_id is None:
        return none
    if (
        lookup is None
        or lookup.institution_id != principal.institution_id
        or lookup.credit_code != credit_code
    ):
        rows = db.execute(
            _ENTERPRISE_AND_CONSENTS,
            {"credit_code": credit_code, "institution_id": principal.institution_id},
        ).all()
        lookup = _consent_lookup(principal.institution_id, credit_code, rows)
    if lookup.enterprise_id is None:  # no such enterprise
        return none
    enterprise_id = lookup.enterprise_id
    consents = lookup.consents
    same_purpose = [c for c in consents if c.purpose == purpose]
    for consent in same_purpose:
        if consent_status(consent, now) == "live" and operation.value in consent.scopes:
            return _Decision(True, "live consent", enterprise_id, consent.id)
    for consent in same_purpose:
        if consent_status(consent, now) == "live":
            return _Decision(
                False,
                f"consent {consent.id} does not cover {operation.value} "
                f"(it covers {', '.join(consent.scopes)})",
                enterprise_id,
                consent.id,
            )
    if same_purpose:
        consent = same_purpose[0]
        if consent.revoked_at is not None:
            reason = f"consent {consent.id} was revoked at {consent.revoked_at.isoformat()}"
        else:
            reason = f"consent {consent.id} expired at {consent.expires_at.isoformat()}"
        return _Decision(False, reason, enterprise_id, consent.id)
    others = sorted({c.purpose.value for c in consents if consent_status(c, now) == "live"})
    if others:
        return _Decision(
            False,
            f"the enterprise's consent is for {', '.join(others)}, "
            f"not {purpose.value if purpose else 'no stated purpose'}",
            enterprise_id,
        )
    return none


def require_access(
    db: Db,
    *,
    principal: Principal,
    credit_code: str,
    operation: Operation,
    purpose: Purpose | None,
    resource: str,
    request_id: str | None,
    now: datetime,
    lookup: ConsentLookup | None = None,
) -> AccessGrant:
    """Check role policy, live consent, purpose and operation; audit and commit the decision.

    Institutions must state their ``purpose`` (:class:`InputError` otherwise). Raises
    :class:`PermissionDeniedError` with the reason when the access is denied. ``lookup``
    (from :func:`verify_api_key_with_consents`, same request) saves reading the consents
    again; one for another institution or enterprise is ignored.
    """
    if principal.role in INSTITUTION_ROLES and purpose is None:
        raise InputError(
            "state why you access this enterprise's data: purpose=pre_loan_review or "
            "purpose=post_loan_monitoring",
            field="purpose",
        )
    decision = _decide(
        db,
        principal=principal,
        credit_code=credit_code,
        operation=operation,
        purpose=purpose,
        now=now,
        lookup=lookup,
    )
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation=operation.value,
            resource=resource,
            outcome="allowed" if decision.allowed else "denied",
            reason=decision.reason,
            request_id=request_id,
            enterprise_id=decision.enterprise_id,
            credit_code=credit_code,
            purpose=None if purpose is None else purpose.value,
            consent_id=decision.consent_id,
        ),
    )
    db.commit()  # the access is on record whatever happens next
    if not decision.allowed or decision.enterprise_id is None:
        raise PermissionDeniedError(decision.reason)
    return AccessGrant(decision.enterprise_id, credit_code, decision.consent_id)


def search_enterprises(
    db: Session,
    *,
    principal: Principal,
    q: str,
    purpose: Purpose | None,
    provider: EnterpriseDataProvider,
    limit: int,
    resource: str,
    request_id: str | None,
    now: datetime,
) -> Sequence[EnterpriseSummary]:
    """Search among the enterprises the caller may see: its own, or those with a live consent."""
    within: set[str] = set()
    if principal.role is Role.ENTERPRISE and principal.enterprise_id is not None:
        own = db.get(Enterprise, principal.enterprise_id)
        within = {own.credit_code} if own is not None and own.credit_code else set()
    elif principal.role in INSTITUTION_ROLES:
        stmt = (
            sa.select(Enterprise.credit_code)
            .join(Consent, Consent.enterprise_id == Enterprise.id)
            .where(
                Consent.institution_id == principal.institution_id,
                Consent.revoked_at.is_(None),
                Consent.expires_at > now,
                Enterprise.credit_code.is_not(None),
            )
        )
        if purpose is not None:
            stmt = stmt.where(Consent.purpose == purpose)
        within = {code for code in db.execute(stmt).scalars() if code}
    allowed = principal.role is Role.ENTERPRISE or principal.role in INSTITUTION_ROLES
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation="search",
            resource=resource,
            outcome="allowed" if allowed else "denied",
            reason=None if allowed else f"role {principal.role.value} never reads enterprise data",
            request_id=request_id,
            purpose=None if purpose is None else purpose.value,
        ),
    )
    db.commit()
    if not allowed:
        raise PermissionDeniedError(f"role {principal.role.value} never reads enterprise data")
    return provider.search(q, within=within, limit=limit)


def _own_enterprise(db: Session, principal: Principal) -> Enterprise:
    require_role(principal, Role.ENTERPRISE, action="managing consents")
    enterprise = (
        None if principal.enterprise_id is None else db.get(Enterprise, principal.enterprise_id)
    )
    if enterprise is None:
        raise NotFoundError("this account has no enterprise")
    return enterprise


def grant_consent(
    db: Session,
    *,
    principal: Principal,
    institution_id: str,
    purpose: Purpose,
    scopes: Sequence[Operation],
    expires_at: datetime,
    max_days: int,
    request_id: str | None,
    now: datetime,
) -> Consent:
    """The enterprise lets ``institution_id`` perform ``scopes`` for ``purpose`` until a time."""
    enterprise = _own_enterprise(db, principal)
    if enterprise.credit_code is None:
        raise IncompleteError(
            "enter the unified social credit code before giving consent",
            missing_fields=["profile.credit_code"],
        )
    if db.get(Institution, institution_id) is None:
        raise InputError(f"no institution {institution_id}", field="institution_id")
    if expires_at <= now:
        raise InputError("a consent must expire in the future", field="expires_at")
    if expires_at > now + timedelta(days=max_days):
        raise InputError(f"a consent lasts at most {max_days} days", field="expires_at")
    consent = Consent(
        enterprise_id=enterprise.id,
        institution_id=institution_id,
        purpose=purpose,
        scopes=normalize_scopes([s.value for s in scopes]),
        expires_at=expires_at,
        created_at=now,
        created_by=principal.id,
    )
    db.add(consent)
    db.flush()
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation="grant_consent",
            resource=f"/v1/consents/{consent.id}",
            outcome="done",
            request_id=request_id,
            enterprise_id=enterprise.id,
            credit_code=enterprise.credit_code,
            purpose=purpose.value,
            consent_id=consent.id,
            institution_id=institution_id,
            reason=f"scopes {', '.join(consent.scopes)} until {expires_at.isoformat()}",
        ),
    )
    return consent


def revoke_consent(
    db: Session, *, principal: Principal, consent_id: str, request_id: str | None, now: datetime
) -> Consent:
    """Revoke one of the caller's consents at once (revoking twice changes nothing)."""
    enterprise = _own_enterprise(db, principal)
    consent = db.get(Consent, consent_id)
    if consent is None or consent.enterprise_id != enterprise.id:
        raise NotFoundError(f"no consent {consent_id} of this enterprise")
    if consent.revoked_at is None:
        consent.revoked_at = now
        consent.revoked_by = principal.id
        audit.append(
            db,
            audit_record(
                principal,
                now=now,
                operation="revoke_consent",
                resource=f"/v1/consents/{consent.id}",
                outcome="done",
                request_id=request_id,
                enterprise_id=enterprise.id,
                credit_code=enterprise.credit_code,
                purpose=consent.purpose.value,
                consent_id=consent.id,
                institution_id=consent.institution_id,
            ),
        )
    return consent


def list_consents(
    db: Session,
    *,
    principal: Principal,
    status: ConsentStatus | None,
    after: tuple[datetime, str] | None,
    limit: int,
    now: datetime,
) -> Sequence[Consent]:
    """Consents the caller may list, oldest first after the keyset ``after``.

    Enterprise users list their own; analysts and API clients those given to their
    institution; auditors all. ``status`` filters by state at ``now``.
    """
    stmt = sa.select(Consent)
    if principal.role is Role.ENTERPRISE:
        stmt = stmt.where(Consent.enterprise_id == principal.enterprise_id)
    elif principal.role in INSTITUTION_ROLES:
        stmt = stmt.where(Consent.institution_id == principal.institution_id)
    elif principal.role is not Role.AUDITOR:
        raise PermissionDeniedError(f"role {principal.role.value} does not list consents")
    if status == "revoked":
        stmt = stmt.where(Consent.revoked_at.is_not(None))
    elif status == "live":
        stmt = stmt.where(Consent.revoked_at.is_(None), Consent.expires_at > now)
    elif status == "expired":
        stmt = stmt.where(Consent.revoked_at.is_(None), Consent.expires_at <= now)
    if after is not None:
        created, last_id = after
        stmt = stmt.where(
            sa.or_(
                Consent.created_at > created,
                sa.and_(Consent.created_at == created, Consent.id > last_id),
            )
        )
    return db.execute(stmt.order_by(Consent.created_at, Consent.id).limit(limit)).scalars().all()


def consent_view(db: Session, consent: Consent, now: datetime) -> ConsentPublic:
    """The API view of a consent, with the enterprise's code and the institution's name."""
    enterprise = db.get_one(Enterprise, consent.enterprise_id)
    institution = db.get_one(Institution, consent.institution_id)
    return ConsentPublic(
        id=consent.id,
        enterprise_id=enterprise.id,
        credit_code=enterprise.credit_code,
        institution_id=institution.id,
        institution_name=institution.name,
        purpose=consent.purpose,
        scopes=[Operation(s) for s in consent.scopes],
        expires_at=consent.expires_at,
        created_at=consent.created_at,
        revoked_at=consent.revoked_at,
        status=consent_status(consent, now),
    )
