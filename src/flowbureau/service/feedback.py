"""Analyst feedback on flagged transactions, under the access policy.

Rules:
- Confirming, rejecting or labelling a flagged entry (:mod:`flowbureau.anomaly.feedback`) reads
  and judges an enterprise's transactions, so it is allowed to analysts of an institution holding
  a live consent from that enterprise, for the stated purpose, covering ``view_transactions``
  (:func:`flowbureau.service.consent.require_access`), and to operators, who run the platform's
  data quality. API clients (machines) and enterprise users do not judge entries.
- The transaction must belong to the enterprise named in the path (else 404, as for an unknown
  one), so a consent from one enterprise never opens another's entries.
- Every decision is audited (operation ``anomaly_feedback``, or the consent check's entry for
  analysts); the label is recorded by the anomaly stage with the analyst's account id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from flowbureau.errors import InputError, NotFoundError
from flowbureau.service import audit
from flowbureau.service.consent import audit_record, require_access, require_role
from flowbureau.service.context import ServiceContext
from flowbureau.service.models import Operation, Purpose, Role
from flowbureau.service.principals import Principal

__all__ = ["Verdict", "give_feedback"]

Verdict = Literal["confirm", "reject", "label"]


def give_feedback(
    db: Session,
    *,
    context: ServiceContext,
    principal: Principal,
    credit_code: str,
    tx_id: str,
    verdict: Verdict,
    label: str | None,
    note: str | None,
    purpose: Purpose | None,
    resource: str,
    request_id: str | None,
    now: datetime,
) -> dict[str, object]:
    """Record the analyst's verdict on one entry of ``credit_code``; the label as recorded."""
    from flowbureau.anomaly import feedback
    from flowbureau.anomaly.store import AnomalyStore
    from flowbureau.storage.warehouse import Warehouse

    require_role(principal, Role.ANALYST, Role.OPERATOR, action="judging flagged transactions")
    if verdict == "label" and not label:
        raise InputError("a label verdict needs the label", field="label")
    if principal.role is Role.ANALYST:
        require_access(
            db,
            principal=principal,
            credit_code=credit_code,
            operation=Operation.VIEW_TRANSACTIONS,
            purpose=purpose,
            resource=resource,
            request_id=request_id,
            now=now,
        )
    settings = context.settings
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    with warehouse.connect() as engine:
        owner = engine.query(
            "SELECT enterprise_id FROM stored_transactions WHERE tx_id = ?", [tx_id]
        ).to_pylist()
    if not owner or owner[0]["enterprise_id"] != credit_code:
        raise NotFoundError(f"no transaction {tx_id} of enterprise {credit_code}")
    store = AnomalyStore(settings.anomaly.store_dir or settings.data_dir / "anomaly")
    analyst = f"{principal.role.value}:{principal.id}"
    if verdict == "confirm":
        recorded = feedback.confirm_flag(
            tx_id=tx_id, analyst=analyst, note=note, store=store, warehouse=warehouse
        )
    elif verdict == "reject":
        recorded = feedback.reject_flag(
            tx_id=tx_id, analyst=analyst, note=note, store=store, warehouse=warehouse
        )
    else:
        recorded = feedback.label_transaction(
            tx_id=tx_id,
            label=str(label),
            analyst=analyst,
            note=note,
            store=store,
            warehouse=warehouse,
        )
    audit.append(
        db,
        audit_record(
            principal,
            now=now,
            operation="anomaly_feedback",
            resource=resource,
            outcome="done",
            request_id=request_id,
            credit_code=credit_code,
            purpose=None if purpose is None else purpose.value,
            reason=f"{verdict}: {recorded.label} on {tx_id}",
        ),
    )
    return recorded.to_dict()
