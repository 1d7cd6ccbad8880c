"""Freshness of an enterprise's information: stale records, update requests, updates.

Rules (the policy is data: ``flowbureau/identity/freshness.toml`` or ``policy_path``):
- Every record type has a maximum age (none for records of past events, which never go stale)
  and the kind of update that renews it (``profile`` or ``financial``).
- Ages count from: the enterprise's last profile update (``profile``); the end of the period of
  the latest declaration (``financial``); for an attached bank or public record, the later of its
  last load from the source and its last verification (``IdentityLink.verified_at``).
- :func:`review_enterprise` marks every stale attached record invalid (``invalid_since``, with
  the reason), clears the mark of records fresh again, and keeps one open
  :class:`~flowbureau.identity.models.UpdateRequest` per kind listing what is stale; a request
  whose items all became fresh by other means (a reload of the source) is closed as resolved by
  the system.
- :func:`apply_update` is what happens when the enterprise updates: in the caller's unit of
  work, the record is renewed (the profile was just saved, or a financial declaration added),
  the records linked to it are re-attributed and so re-verified (profile), the review runs
  again, the open request of that kind is resolved, and the enterprise is re-evaluated; the
  evaluation (or why there is none) is kept on the resolved request. Every step is audited.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowbureau.errors import InputError, ModelError, NotFoundError
from flowbureau.identity.models import (
    EnterpriseFinancials,
    IdentityLink,
    IdentityRecord,
    UpdateRequest,
)
from flowbureau.service import audit
from flowbureau.service.consent import audit_record
from flowbureau.service.models import Enterprise
from flowbureau.service.principals import Principal
from flowbureau.service.providers import Evaluator

__all__ = [
    "REQUEST_KINDS",
    "FinancialsData",
    "FreshnessPolicy",
    "RecordPolicy",
    "apply_update",
    "declare_financials",
    "latest_financials",
    "open_requests",
    "review_enterprise",
]

RequestKind = Literal["profile", "financial"]
REQUEST_KINDS: tuple[RequestKind, ...] = ("profile", "financial")
OPEN = "open"
DONE = "done"
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class RecordPolicy:
    """How long one record type stays fresh and which update renews it."""

    max_age_days: int | None
    request: RequestKind


@dataclass(frozen=True, slots=True)
class FreshnessPolicy:
    """The freshness policy: record type -> :class:`RecordPolicy`."""

    types: Mapping[str, RecordPolicy]

    @classmethod
    def load(cls, path: Path | None = None) -> FreshnessPolicy:
        """Read a policy TOML (default: the shipped ``freshness.toml``)."""
        name = str(path) if path else "flowbureau/identity/freshness.toml"
        try:
            text = (
                path.read_text("utf-8")
                if path
                else resources.files("flowbureau.identity")
                .joinpath("freshness.toml")
                .read_text("utf-8")
            )
            data = tomllib.loads(text)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"cannot read the freshness policy: {exc}", file=name) from None
        table = data.get("record_types")
        if not isinstance(table, dict) or not table:
            raise InputError("no [record_types.*] tables", file=name, field="record_types")
        types: dict[str, RecordPolicy] = {}
        for record_type, entry in table.items():
            where = f"record_types.{record_type}"
            age = entry.get("max_age_days")
            if age is not None and (not isinstance(age, int) or isinstance(age, bool) or age < 1):
                raise InputError(
                    "max_age_days must be a positive integer",
                    file=name,
                    field=f"{where}.max_age_days",
                )
            request = entry.get("request", "profile")
            if request not in REQUEST_KINDS:
                raise InputError(
                    f"request must be one of {', '.join(REQUEST_KINDS)}, not {request!r}",
                    file=name,
                    field=f"{where}.request",
                )
            unknown = set(entry) - {"max_age_days", "request"}
            if unknown:
                raise InputError(
                    f"unknown keys {', '.join(sorted(unknown))}", file=name, field=where
                )
            types[record_type] = RecordPolicy(age, request)
        for needed in REQUEST_KINDS:
            if needed not in types:
                raise InputError(f"the policy needs [record_types.{needed}]", file=name)
        return cls(types)

    def stale_since(self, record_type: str, fresh_as_of: date) -> date | None:
        """The day information of ``record_type`` dated ``fresh_as_of`` goes stale (or None)."""
        policy = self.types.get(record_type)
        if policy is None or policy.max_age_days is None:
            return None
        return fresh_as_of + timedelta(days=policy.max_age_days)

    def request_for(self, record_type: str) -> RequestKind:
        """The update kind that renews ``record_type`` (unknown types: the profile)."""
        policy = self.types.get(record_type)
        return policy.request if policy else "profile"


@dataclass(frozen=True, slots=True)
class FinancialsData:
    """A declaration of key financial figures for the period ending ``period_end``."""

    period_end: date
    currency: str
    revenue_minor: int
    total_assets_minor: int
    total_liabilities_minor: int
    net_profit_minor: int


def latest_financials(db: Session, enterprise_id: str) -> EnterpriseFinancials | None:
    """The enterprise's latest declaration of financial figures."""
    return db.execute(
        sa.select(EnterpriseFinancials)
        .where(EnterpriseFinancials.enterprise_id == enterprise_id)
        .order_by(
            EnterpriseFinancials.declared_at.desc(),
            EnterpriseFinancials.period_end.desc(),  # two at once: the later period counts
            EnterpriseFinancials.id,
        )
        .limit(1)
    ).scalar_one_or_none()


def open_requests(db: Session, enterprise_id: str) -> list[UpdateRequest]:
    """The enterprise's open update requests, oldest first."""
    return list(
        db.execute(
            sa.select(UpdateRequest)
            .where(UpdateRequest.enterprise_id == enterprise_id, UpdateRequest.status == OPEN)
            .order_by(UpdateRequest.created_at, UpdateRequest.id)
        ).scalars()
    )


def _item(record_type: str, since: date, label: str, ref: str | None) -> dict[str, Any]:
    return {
        "record_type": record_type,
        "stale_since": since.isoformat(),
        "label": label,
        "ref": ref,
    }


def review_enterprise(
    db: Session, *, enterprise: Enterprise, policy: FreshnessPolicy, now: datetime
) -> list[UpdateRequest]:
    """Mark stale records invalid, keep the update requests in step; return the open ones."""
    today = now.date()
    stale: dict[RequestKind, list[dict[str, Any]]] = {kind: [] for kind in REQUEST_KINDS}
    since = policy.stale_since("profile", enterprise.updated_at.date())
    if since is not None and since <= today:
        stale["profile"].append(_item("profile", since, enterprise.name or "", None))
    declared = latest_financials(db, enterprise.id)
    if declared is not None:
        since = policy.stale_since("financial", declared.period_end)
        if since is not None and since <= today:
            label = f"{declared.period_end.isoformat()}"
            stale["financial"].append(_item("financial", since, label, declared.id))
    rows = db.execute(
        sa.select(IdentityLink, IdentityRecord)
        .join(IdentityRecord, IdentityRecord.id == IdentityLink.record_id)
        .where(IdentityLink.enterprise_id == enterprise.id, IdentityLink.status == "attached")
        .order_by(IdentityRecord.record_type, IdentityRecord.id)
    ).all()
    for link, record in rows:
        confirmed = max(record.loaded_at, link.verified_at or link.matched_at)
        since = policy.stale_since(record.record_type, confirmed.date())
        if since is not None and since <= today:
            if link.invalid_since is None:
                link.invalid_since = now
            link.invalid_reason = (
                f"stale since {since.isoformat()}: last confirmed {confirmed.date().isoformat()}"
            )
            label = record.name or record.credit_code or record.source_ref
            stale[policy.request_for(record.record_type)].append(
                _item(record.record_type, since, label, record.id)
            )
        elif link.invalid_since is not None:
            link.invalid_since = None
            link.invalid_reason = None
    requests = {r.kind: r for r in open_requests(db, enterprise.id)}
    for kind in REQUEST_KINDS:
        request = requests.get(kind)
        if stale[kind] and request is None:
            request = UpdateRequest(
                enterprise_id=enterprise.id,
                kind=kind,
                items=stale[kind],
                status=OPEN,
                created_at=now,
            )
            db.add(request)
            requests[kind] = request
        elif stale[kind] and request is not None:
            request.items = stale[kind]
        elif request is not None:  # fresh again by other means (e.g. the source was reloaded)
            request.status, request.resolved_at, request.resolved_by = DONE, now, SYSTEM
            del requests[kind]
    db.flush()
    return [requests[k] for k in REQUEST_KINDS if k in requests]


def declare_financials(
    db: Session,
    *,
    enterprise: Enterprise,
    data: FinancialsData,
    principal: Principal,
    request_id: str | None,
    now: datetime,
) -> EnterpriseFinancials:
    """Add a declaration of financial figures (audited); the latest one counts."""
    if data.period_end > now.date():
        raise InputError("the period cannot end in the future", field="period_end")
    row = EnterpriseFinancials(
        enterprise_id=enterprise.id,
        period_end=data.period_end,
        currency=data.currency,
        revenue_minor=data.revenue_minor,
        total_assets_minor=data.total_assets_minor,
        total_liabilities_minor=data.total_liabilities_minor,
        net_profit_minor=data.net_profit_minor,
        declared_at=now,
        declared_by=principal.id,
    )
    db.add(row)
    db.flush()
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation="declare_financials",
            resource="/v1/enterprise/financials",
            outcome="done",
            request_id=request_id,
            enterprise_id=enterprise.id,
            credit_code=enterprise.credit_code,
            reason=f"period ending {data.period_end.isoformat()}",
        ),
    )
    return row


def _evaluate(evaluator: Evaluator, enterprise: Enterprise, today: date) -> dict[str, Any]:
    if enterprise.credit_code is None:
        return {"status": "not_available", "reason": "no credit code entered yet"}
    try:
        score = evaluator.evaluate(credit_code=enterprise.credit_code, as_of=today)
    except ModelError as exc:
        return {"status": "failed", "reason": str(exc)[:300]}
    if score is None:
        return {"status": "not_available", "reason": "no credit model can score it yet"}
    return {
        "status": "evaluated",
        "score": score.score,
        "grade": score.grade,
        "pd": score.pd,
        "model_version": score.model_version,
        "as_of": score.as_of.isoformat(),
    }


def apply_update(
    db: Session,
    *,
    enterprise: Enterprise,
    kind: RequestKind,
    principal: Principal,
    policy: FreshnessPolicy,
    evaluator: Evaluator,
    reattribute: Callable[[], object] | None,
    request_id: str | None,
    now: datetime,
) -> UpdateRequest | None:
    """After the enterprise updated ``kind``: cascade, resolve the request, re-evaluate.

    ``reattribute`` re-runs the attribution of the enterprise's records (None when no identity
    model is trained: linked records then keep their state). Returns the resolved request, or
    None when none was open (nothing was stale: no re-evaluation is needed).
    """
    if kind not in REQUEST_KINDS:
        raise NotFoundError(f"no update kind {kind!r}")
    request = next((r for r in open_requests(db, enterprise.id) if r.kind == kind), None)
    if kind == "profile" and reattribute is not None:
        reattribute()
        db.flush()
    still_open = {
        r.kind: r for r in review_enterprise(db, enterprise=enterprise, policy=policy, now=now)
    }
    if request is None:
        return None
    evaluation = _evaluate(evaluator, enterprise, now.astimezone(UTC).date())
    remaining = still_open.get(kind)
    if remaining is not None and remaining.id == request.id:
        request.items = remaining.items  # not everything could be renewed by this update
        request.evaluation = evaluation
        db.flush()
        return request
    request.status, request.resolved_at, request.resolved_by = DONE, now, principal.id
    request.evaluation = evaluation
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation="resolve_update_request",
            resource=f"/v1/enterprise/update-requests/{request.id}",
            outcome="done",
            request_id=request_id,
            enterprise_id=enterprise.id,
            credit_code=enterprise.credit_code,
            reason=f"{kind} updated; re-evaluation: {evaluation['status']}",
        ),
    )
    db.flush()
    return request
