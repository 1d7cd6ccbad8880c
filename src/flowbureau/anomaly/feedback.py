"""Analyst feedback: confirm or reject a flag, or label an entry; labels feed retraining.

Rules:
- A label is an event in the append-only ``labels`` log (:mod:`flowbureau.anomaly.store`):
  transaction, label (an anomaly type of :data:`~flowbureau.anomaly.ANOMALY_TYPES`, ``normal``
  included), verdict (``confirm``, ``reject``, ``label``), the type the detector had given,
  analyst, note, time. The latest label of a transaction is its current label; nothing is
  overwritten.
- ``confirm_flag`` labels the entry with the type the latest run (model or rule) gave it and
  accepts its correction if one is in effect; ``reject_flag`` labels it ``normal`` and
  reverts its correction if one is in effect; ``label_transaction`` sets any label.
- Training (:func:`flowbureau.anomaly.pipeline.train_model`) uses the current labels, and they
  take precedence over the synthetic ground truth.
- These are keyword-only domain functions taking what an HTTP route or a CLI command has (the
  transaction id, the label, the analyst's name, a note); bad input raises ``InputError`` naming
  the field, an unknown transaction ``NotFoundError``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from flowbureau.anomaly import ANOMALY_TYPES
from flowbureau.anomaly.store import LABEL_EVENT_SCHEMA, AnomalyStore
from flowbureau.errors import ConflictError, InputError, NotFoundError

if TYPE_CHECKING:
    from flowbureau.storage.warehouse import Warehouse

__all__ = [
    "Label",
    "confirm_flag",
    "current_labels",
    "label_transaction",
    "reject_flag",
]


@dataclass(frozen=True, slots=True)
class Label:
    """One analyst label as recorded."""

    label_id: str
    tx_id: str
    account_id: str
    label: str
    verdict: str
    flagged_type: str | None
    analyst: str
    note: str | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "label_id": self.label_id,
            "tx_id": self.tx_id,
            "account_id": self.account_id,
            "label": self.label,
            "verdict": self.verdict,
            "flagged_type": self.flagged_type,
            "analyst": self.analyst,
            "note": self.note,
            "at": self.at.isoformat(),
        }


def current_labels(store: AnomalyStore | None = None) -> pd.DataFrame:
    """The latest label per transaction: ``tx_id``, ``label``, ``verdict``, ``analyst``, ``at``."""
    store = store or AnomalyStore.default()
    events = store.read("labels").to_pandas()
    if events.empty:
        return pd.DataFrame(columns=["tx_id", "label", "verdict", "analyst", "at"])
    latest = events.sort_values("sequence", kind="stable").drop_duplicates("tx_id", keep="last")
    result: pd.DataFrame = latest[["tx_id", "label", "verdict", "analyst", "at"]]
    return result.reset_index(drop=True)


def label_transaction(
    *,
    tx_id: str,
    label: str,
    analyst: str,
    note: str | None = None,
    store: AnomalyStore | None = None,
    warehouse: Warehouse | None = None,
) -> Label:
    """Record ``label`` (an anomaly type or ``normal``) for a stored transaction."""
    if label not in ANOMALY_TYPES:
        raise InputError(
            f"unknown label {label!r}; use one of {', '.join(ANOMALY_TYPES)}", field="label"
        )
    return _record(
        tx_id=tx_id,
        label=label,
        verdict="label",
        analyst=analyst,
        note=note,
        store=store,
        warehouse=warehouse,
    )


def confirm_flag(
    *,
    tx_id: str,
    analyst: str,
    note: str | None = None,
    store: AnomalyStore | None = None,
    warehouse: Warehouse | None = None,
) -> Label:
    """Confirm the latest run's flag: label the entry with its flagged type and accept its
    correction, if one is in effect. ``ConflictError`` if the entry is not flagged."""
    from flowbureau.anomaly.correction import accept_correction, corrections

    store = store or AnomalyStore.default()
    flagged = flagged_type(tx_id, store)
    if flagged is None:
        raise ConflictError(f"transaction {tx_id} is not flagged by the latest anomaly run")
    result = _record(
        tx_id=tx_id,
        label=flagged,
        verdict="confirm",
        analyst=analyst,
        note=note,
        store=store,
        warehouse=warehouse,
    )
    for c in corrections(store, tx_ids=[tx_id]):
        if c.status == "active":
            accept_correction(
                c.correction_id, actor=analyst, note=note, store=store, warehouse=warehouse
            )
    return result


def reject_flag(
    *,
    tx_id: str,
    analyst: str,
    note: str | None = None,
    store: AnomalyStore | None = None,
    warehouse: Warehouse | None = None,
) -> Label:
    """Reject a flag: label the entry ``normal`` and revert its correction, if one is in
    effect."""
    from flowbureau.anomaly.correction import corrections, revert_correction

    store = store or AnomalyStore.default()
    result = _record(
        tx_id=tx_id,
        label="normal",
        verdict="reject",
        analyst=analyst,
        note=note,
        store=store,
        warehouse=warehouse,
    )
    for c in corrections(store, tx_ids=[tx_id]):
        if c.in_effect:
            revert_correction(
                c.correction_id,
                actor=analyst,
                note=note or "flag rejected by the analyst",
                store=store,
                warehouse=warehouse,
            )
    return result


def flagged_type(tx_id: str, store: AnomalyStore) -> str | None:
    """The type the latest run gave ``tx_id`` (the model's when it flagged it, else the most
    confident rule's), or None when it is not flagged."""
    run_id = store.latest_run()
    if run_id is None:
        return None
    scores = store.read_run(run_id, "scores").to_pandas()
    row = scores[scores["tx_id"] == tx_id]
    if not row.empty and bool(row["flagged"].iloc[0]):
        return str(row["anomaly_type"].iloc[0])
    flags = store.read_run(run_id, "flags").to_pandas()
    ruled = flags[flags["tx_id"] == tx_id].sort_values("confidence", ascending=False)
    return None if ruled.empty else str(ruled["anomaly_type"].iloc[0])


def _record(
    *,
    tx_id: str,
    label: str,
    verdict: str,
    analyst: str,
    note: str | None,
    store: AnomalyStore | None,
    warehouse: Warehouse | None,
) -> Label:
    if not analyst or not analyst.strip():
        raise InputError("must name the analyst (a non-empty name)", field="analyst")
    store = store or AnomalyStore.default()
    if warehouse is None:
        from flowbureau.storage.warehouse import Warehouse

        warehouse = Warehouse.default()
    with warehouse.connect() as engine:
        found = engine.query(
            "SELECT account_id FROM stored_transactions WHERE tx_id = ?", [tx_id]
        ).to_pylist()
    if not found:
        raise NotFoundError(f"no stored transaction {tx_id!r}")
    record = Label(
        label_id="lbl-" + uuid.uuid4().hex[:24],
        tx_id=tx_id,
        account_id=str(found[0]["account_id"]),
        label=label,
        verdict=verdict,
        flagged_type=flagged_type(tx_id, store),
        analyst=analyst.strip(),
        note=note,
        at=datetime.now(UTC),
    )
    row = {name: getattr(record, name) for name in LABEL_EVENT_SCHEMA.names}
    store.append("labels", pa.Table.from_pylist([row], LABEL_EVENT_SCHEMA))
    return record
