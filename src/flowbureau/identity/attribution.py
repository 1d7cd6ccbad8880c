"""Attribution: which of the records the platform holds belong to an enterprise.

Rules:
- The enterprise's *entry* is what its users entered: name, unified social credit code, contact
  phone, legal representative and bank accounts (their warehouse pseudonyms).
- Candidates are chosen in the service database (blocking): records sharing the credit code,
  the normalised name or its first four characters, the phone or one of the accounts; at most
  ``max_candidates``. The Fellegi-Sunter model (:mod:`flowbureau.identity.model`) gives each an
  attribution probability.
- A record with probability at least ``attach_threshold`` is ``attached``; from
  ``candidate_threshold`` it is a ``candidate`` the enterprise confirms or rejects; below, its
  link is removed. A record the enterprise rejected is never attached again by the model, and one
  it confirmed stays attached. A record attached to another enterprise with a higher probability
  is left to it.
- Attaching (or keeping attached) a record verifies it: ``verified_at`` becomes now, which is
  what keeps it fresh (:mod:`flowbureau.identity.freshness`).
- Every attribution run is audited (operation ``attribute_records``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.cleaning.normalise import normalise_name
from flowbureau.errors import NotFoundError
from flowbureau.identity.model import IdentityModel, MatchInput
from flowbureau.identity.models import IdentityLink, IdentityRecord
from flowbureau.identity.settings import IdentitySettings
from flowbureau.identity.sources import name_key, phone_key
from flowbureau.service import audit
from flowbureau.service.consent import audit_record
from flowbureau.service.models import Enterprise
from flowbureau.service.principals import Principal
from flowbureau.service.profiles import CONTACT_PHONE_CONTEXT
from flowbureau.service.vault import Vault

__all__ = [
    "ATTACHED",
    "CANDIDATE",
    "REJECTED",
    "Attribution",
    "attribute",
    "candidate_records",
    "enterprise_entry",
    "record_input",
    "set_link_status",
]

ATTACHED = "attached"
CANDIDATE = "candidate"
REJECTED = "rejected"
CONFIRMED_MODEL = "confirmed-by-enterprise"


def enterprise_entry(enterprise: Enterprise, vault: Vault) -> MatchInput:
    """What the enterprise's users entered, as the model compares it."""
    phone = (
        None
        if enterprise.contact_phone_enc is None
        else vault.decrypt(enterprise.contact_phone_enc, context=CONTACT_PHONE_CONTEXT)
    )
    norm = normalise_name(enterprise.name)
    return MatchInput(
        uid=f"enterprise:{enterprise.id}",
        credit_code=enterprise.credit_code,
        name_norm=norm,
        name_key=name_key(norm),
        phone_lookup=phone_key(vault, phone),
        accounts=tuple(sorted({a.account_id for a in enterprise.bank_accounts})),
        legal_representative=normalise_name(enterprise.legal_representative),
    )


def record_input(record: IdentityRecord) -> MatchInput:
    """A stored record as the model compares it."""
    return MatchInput(
        uid=record.id,
        credit_code=record.credit_code,
        name_norm=record.name_norm,
        name_key=record.name_key,
        phone_lookup=record.phone_lookup,
        accounts=(record.account_id,) if record.account_id else (),
        legal_representative=record.legal_representative,
    )


def candidate_records(db: Session, entry: MatchInput, *, limit: int) -> list[IdentityRecord]:
    """Records sharing at least one blocking key with ``entry`` (see the module rules)."""
    conditions: list[sa.ColumnElement[bool]] = []
    if entry.credit_code:
        conditions.append(IdentityRecord.credit_code == entry.credit_code)
    if entry.name_norm:
        conditions.append(IdentityRecord.name_norm == entry.name_norm)
    if entry.name_key:
        conditions.append(IdentityRecord.name_key == entry.name_key)
    if entry.phone_lookup:
        conditions.append(IdentityRecord.phone_lookup == entry.phone_lookup)
    if entry.accounts:
        conditions.append(IdentityRecord.account_id.in_(entry.accounts))
    if not conditions:
        return []
    stmt = sa.select(IdentityRecord).where(sa.or_(*conditions)).order_by(IdentityRecord.id)
    return list(db.execute(stmt.limit(limit)).scalars())


@dataclass(frozen=True, slots=True)
class Attribution:
    """Outcome of one attribution run."""

    model_version: str
    scored: int
    attached: int
    candidates: int


def attribute(
    db: Session,
    *,
    enterprise: Enterprise,
    model: IdentityModel,
    vault: Vault,
    settings: IdentitySettings,
    principal: Principal,
    request_id: str | None,
    now: datetime,
) -> Attribution:
    """Score the candidate records of ``enterprise`` and update its links (audited)."""
    entry = enterprise_entry(enterprise, vault)
    records = candidate_records(db, entry, limit=settings.max_candidates)
    probabilities = model.score(entry, [record_input(r) for r in records])
    links = {
        link.record_id: link
        for link in db.execute(
            sa.select(IdentityLink).where(IdentityLink.enterprise_id == enterprise.id)
        ).scalars()
    }
    claimed = _claimed_elsewhere(db, enterprise.id, [r.id for r in records])
    attached = candidates = 0
    for record in records:
        probability = probabilities.get(record.id, 0.0)
        link = links.get(record.id)
        if link is not None and link.status == REJECTED:
            link.probability = probability
            continue
        if link is not None and link.model_version == CONFIRMED_MODEL:
            link.verified_at = now
            attached += 1
            continue
        if probability >= settings.attach_threshold and claimed.get(record.id, 0.0) < probability:
            status = ATTACHED
        elif probability >= settings.candidate_threshold:
            status = CANDIDATE
        else:
            if link is not None:
                db.delete(link)
            continue
        if link is None:
            link = IdentityLink(enterprise_id=enterprise.id, record_id=record.id, matched_at=now)
            db.add(link)
        link.probability = probability
        link.status = status
        link.model_version = model.version
        if status == ATTACHED:
            link.verified_at = now
            attached += 1
        else:
            candidates += 1
    db.flush()
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation="attribute_records",
            resource=f"/v1/enterprises/{enterprise.credit_code or enterprise.id}/records",
            outcome="done",
            request_id=request_id,
            enterprise_id=enterprise.id,
            credit_code=enterprise.credit_code,
            reason=f"{model.version}: {len(records)} scored, {attached} attached, "
            f"{candidates} to confirm",
        ),
    )
    return Attribution(model.version, len(records), attached, candidates)


def _claimed_elsewhere(
    db: Session, enterprise_id: str, record_ids: Sequence[str]
) -> dict[str, float]:
    if not record_ids:
        return {}
    rows = db.execute(
        sa.select(IdentityLink.record_id, sa.func.max(IdentityLink.probability))
        .where(
            IdentityLink.record_id.in_(list(record_ids)),
            IdentityLink.enterprise_id != enterprise_id,
            IdentityLink.status == ATTACHED,
        )
        .group_by(IdentityLink.record_id)
    ).all()
    return {str(record_id): float(p) for record_id, p in rows}


def set_link_status(
    db: Session,
    *,
    enterprise: Enterprise,
    link_id: str,
    confirm: bool,
    principal: Principal,
    request_id: str | None,
    now: datetime,
) -> IdentityLink:
    """The enterprise confirms (attach) or rejects a candidate or attached record (audited)."""
    link = db.get(IdentityLink, link_id)
    if link is None or link.enterprise_id != enterprise.id:
        raise NotFoundError(f"no record link {link_id} of this enterprise")
    if confirm:
        link.status = ATTACHED
        link.model_version = CONFIRMED_MODEL
        link.verified_at = now
    else:
        link.status = REJECTED
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation="confirm_record" if confirm else "reject_record",
            resource=f"/v1/enterprise/records/{link.id}",
            outcome="done",
            request_id=request_id,
            enterprise_id=enterprise.id,
            credit_code=enterprise.credit_code,
        ),
    )
    return link
