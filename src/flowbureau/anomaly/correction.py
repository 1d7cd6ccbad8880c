"""Corrections: proposed, applied, accepted or reverted, recorded, never destructive.

Rules:
- **What may be corrected**: an entry's amount, when a rule proves the true value exactly
  (``balance_decimal_slip``, ``statement_decimal_slip``) or when the model flags the entry as
  a decimal slip (:data:`~flowbureau.anomaly.CORRECTABLE_TYPES`) and predicts the written
  amount divided by 10 or 100. Duplicate postings, real flows (outliers, circular flows,
  bursts) and dates are flagged, never corrected automatically. A proposal is applied only
  when its confidence reaches the configured bar (``settings.anomaly.confidence``, CLI
  ``--confidence``); when a rule and the model agree the confidence is the higher of the two,
  when they disagree the rule's exact value wins.
- **Never overridden** (the model reads each entry with the entries after it, so a later run,
  with more entries, may read an earlier entry differently; what was decided stands):
  a run never reverts or replaces a correction in effect (a correction the latest run no
  longer proposes stays in effect and is reported as unsupported, for an analyst to review);
  never applies a corrected value that was reverted before; after any revert of an entry,
  corrects it again only when the analyst's current label asks for that type; and never
  corrects an entry against its analyst label (labelled ``normal``, ``outlier``, ... or a
  different slip type). A revert and an analyst's label stand until an analyst changes them.
- **A correction record** holds: id, transaction, field, original, corrected, type, reason
  (the rule's evidence or the model's reading), source (``rule``, ``model``, ``rule+model``),
  model version, confidence, run, who applied it and when; accepting or reverting adds an
  event with who, when and why. The id is deterministic (SHA-256 of transaction, field,
  corrected value, source and model version).
- **The stored transaction is never changed.** The ``transactions`` view shows an active
  (applied or accepted, not reverted) correction as ``corrected_amount_minor`` +
  ``correction_id`` and the quality flag ``corrected``; reverting removes them, so the view
  shows the original again. Scoring uses ``coalesce(corrected_amount_minor, amount_minor)``.
- Every write appends its events to the log first, then re-projects the whole view from the
  log and the latest run and publishes it, under the warehouse writer lock. A crash between
  the two leaves the view behind the log until the next write (or :func:`publish_view`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flowbureau.anomaly import CORRECTABLE_TYPES
from flowbureau.anomaly.store import CORRECTION_EVENT_SCHEMA, AnomalyStore
from flowbureau.errors import ConflictError, InputError, NotFoundError

if TYPE_CHECKING:
    from flowbureau.storage.warehouse import Warehouse, WarehouseWriter

__all__ = [
    "EXACT_RULES",
    "Correction",
    "CorrectionProposal",
    "accept_correction",
    "apply_corrections",
    "correction_id_for",
    "corrections",
    "project",
    "propose_corrections",
    "publish_view",
    "revert_correction",
    "unsupported_corrections",
]

EXACT_RULES = frozenset({"balance_decimal_slip", "statement_decimal_slip"})
"""Rules whose suggested amount is proved by the data (balances, reconciliation)."""

SCOPE = "anomaly"
"""The one annotation scope this stage writes (replaced whole on every projection)."""


@dataclass(frozen=True, slots=True)
class CorrectionProposal:
    """A proposed amount correction, before the confidence bar and the analyst checks."""

    tx_id: str
    account_id: str
    original_minor: int
    corrected_minor: int
    anomaly_type: str
    reason: str
    source: str
    model_version: str | None
    confidence: float


@dataclass(frozen=True, slots=True)
class Correction:
    """A correction's current state, folded from its events."""

    correction_id: str
    tx_id: str
    account_id: str
    field: str
    original_minor: int
    corrected_minor: int
    anomaly_type: str
    reason: str
    source: str
    model_version: str | None
    confidence: float
    run_id: str | None
    status: str
    """``active``, ``accepted`` or ``reverted``."""
    applied_by: str
    applied_at: datetime
    accepted_by: str | None = None
    reverted_by: str | None = None
    reverted_at: datetime | None = None
    revert_note: str | None = None

    @property
    def in_effect(self) -> bool:
        """True while the view shows the corrected amount (applied or accepted)."""
        return self.status != "reverted"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamps as ISO text)."""
        data = asdict(self)
        for key in ("applied_at", "reverted_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data


def correction_id_for(
    tx_id: str, corrected_minor: int, source: str, model_version: str | None
) -> str:
    """The deterministic id of a correction (module rules)."""
    text = f"{tx_id}\x00amount_minor\x00{corrected_minor}\x00{source}\x00{model_version or ''}"
    return "corr-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def propose_corrections(
    scores: pd.DataFrame,
    flags: pd.DataFrame,
    *,
    model_version: str | None,
) -> list[CorrectionProposal]:
    """Proposals from a run: ``scores`` has ``tx_id``, ``account_id``, ``amount_minor``,
    ``flagged``, ``anomaly_type``, ``predicted_amount_minor``, ``normal_confidence``;
    ``flags`` the rule flags (:data:`flowbureau.anomaly.preprocessing.FLAG_COLUMNS`)."""
    exact = flags[flags["rule"].isin(list(EXACT_RULES)) & flags["suggested_amount_minor"].notna()]
    exact = exact.sort_values(["tx_id", "confidence"], ascending=[True, False]).drop_duplicates(
        "tx_id"
    )
    by_rule: dict[str, dict[str, Any]] = {str(r["tx_id"]): r for r in _records(exact)}
    predicted = scores["predicted_amount_minor"].to_numpy(np.int64)
    amount = scores["amount_minor"].to_numpy(np.int64)
    slip = (predicted != 0) & ((predicted * 10 == amount) | (predicted * 100 == amount))
    model = scores[
        scores["flagged"].to_numpy(bool)
        & slip
        & scores["anomaly_type"].isin(list(CORRECTABLE_TYPES)).to_numpy()
        & (scores["normal_confidence"].to_numpy(np.float64) > 0)
    ]
    by_model: dict[str, dict[str, Any]] = {str(r["tx_id"]): r for r in _records(model)}
    facts = {str(r["tx_id"]): r for r in _records(scores[["tx_id", "account_id", "amount_minor"]])}
    proposals: list[CorrectionProposal] = []
    for tx_id in sorted(set(by_rule) | set(by_model)):
        rule, guess = by_rule.get(tx_id), by_model.get(tx_id)
        model_text = (
            None
            if guess is None
            else f"model {model_version} reads this entry as {guess['anomaly_type']} "
            f"(p={guess['normal_confidence']:.3f}); normal amount "
            f"{int(guess['predicted_amount_minor'])}"
        )
        if rule is not None:
            value = int(rule["suggested_amount_minor"])
            confidence = float(rule["confidence"])
            reason = f"{rule['rule']}: {rule['evidence']}"
            source = "rule"
            if guess is not None and int(guess["predicted_amount_minor"]) == value:
                confidence = max(confidence, float(guess["normal_confidence"]))
                reason += f"; {model_text}"
                source = "rule+model"
            elif guess is not None:
                reason += f"; the model proposed otherwise ({model_text}), the proof wins"
            kind = str(rule["anomaly_type"])
        elif guess is not None:
            value = int(guess["predicted_amount_minor"])
            confidence = float(guess["normal_confidence"])
            reason = str(model_text)
            source = "model"
            kind = str(guess["anomaly_type"])
        proposals.append(
            CorrectionProposal(
                tx_id=tx_id,
                account_id=str(facts[tx_id]["account_id"]),
                original_minor=int(facts[tx_id]["amount_minor"]),
                corrected_minor=value,
                anomaly_type=kind,
                reason=reason,
                source=source,
                model_version=model_version if source != "rule" else None,
                confidence=confidence,
            )
        )
    return proposals


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def corrections(
    store: AnomalyStore | None = None,
    *,
    tx_ids: Iterable[str] | None = None,
    account_id: str | None = None,
) -> list[Correction]:
    """Every correction's current state (optionally of some transactions or one account),
    in order of first application."""
    store = store or AnomalyStore.default()
    events = store.read("corrections").to_pylist()
    wanted = None if tx_ids is None else set(tx_ids)
    states: dict[str, Correction] = {}
    for event in events:
        if wanted is not None and event["tx_id"] not in wanted:
            continue
        if account_id is not None and event["account_id"] != account_id:
            continue
        states[event["correction_id"]] = _fold(states.get(event["correction_id"]), event)
    return list(states.values())


def _fold(state: Correction | None, event: dict[str, Any]) -> Correction:
    kind = event["event"]
    if kind == "apply" or state is None:
        return Correction(
            correction_id=event["correction_id"],
            tx_id=event["tx_id"],
            account_id=event["account_id"],
            field=event["field"],
            original_minor=event["original_minor"],
            corrected_minor=event["corrected_minor"],
            anomaly_type=event["anomaly_type"],
            reason=event["reason"],
            source=event["source"],
            model_version=event["model_version"],
            confidence=event["confidence"],
            run_id=event["run_id"],
            status="active",
            applied_by=event["actor"],
            applied_at=event["at"],
        )
    if kind == "accept":
        return _replace(state, status="accepted", accepted_by=event["actor"])
    return _replace(
        state,
        status="reverted",
        reverted_by=event["actor"],
        reverted_at=event["at"],
        revert_note=event["note"],
    )


def _replace(state: Correction, **changes: Any) -> Correction:
    data = {name: getattr(state, name) for name in Correction.__dataclass_fields__}
    data.update(changes)
    return Correction(**data)


def _event(
    kind: str, c: Correction | CorrectionProposal, *, actor: str, note: str | None, **extra: Any
) -> dict[str, Any]:
    return {
        "event": kind,
        "correction_id": extra.get("correction_id", getattr(c, "correction_id", None)),
        "tx_id": c.tx_id,
        "account_id": c.account_id,
        "field": "amount_minor",
        "original_minor": c.original_minor,
        "corrected_minor": c.corrected_minor,
        "anomaly_type": c.anomaly_type,
        "reason": c.reason,
        "source": c.source,
        "model_version": c.model_version,
        "confidence": c.confidence,
        "run_id": extra.get("run_id", getattr(c, "run_id", None)),
        "actor": actor,
        "note": note,
        "at": datetime.now(UTC),
    }


def _check_actor(actor: str, field: str) -> str:
    if not actor or not actor.strip():
        raise InputError("must name who acts (a non-empty name)", field=field)
    return actor.strip()


def apply_corrections(
    proposals: Sequence[CorrectionProposal],
    *,
    confidence: float,
    actor: str,
    run_id: str | None = None,
    store: AnomalyStore | None = None,
    warehouse: Warehouse | None = None,
) -> list[Correction]:
    """Apply the proposals that reach ``confidence`` and that no analyst decision blocks
    (module rules); publish the view. Returns the corrections applied."""
    from flowbureau.anomaly.feedback import current_labels

    actor = _check_actor(actor, "actor")
    if not 0.0 < confidence <= 1.0:
        raise InputError(f"must be in (0, 1], got {confidence!r}", field="confidence")
    store = store or AnomalyStore.default()
    warehouse = warehouse or _default_warehouse()
    with warehouse.writer() as writer:
        existing = corrections(store)
        active = {c.tx_id for c in existing if c.in_effect}
        refused = {(c.tx_id, c.corrected_minor) for c in existing if c.status == "reverted"}
        reverted = {tx_id for tx_id, _ in refused}
        labels = current_labels(store)
        label_of = dict(zip(labels["tx_id"], labels["label"], strict=True))
        events: list[dict[str, Any]] = []
        applied: list[Correction] = []
        for p in proposals:
            if p.confidence < confidence or p.tx_id in active:
                continue
            if (p.tx_id, p.corrected_minor) in refused:
                continue
            label = label_of.get(p.tx_id)
            if label is not None and label != p.anomaly_type:
                continue  # the analyst's label says otherwise
            if p.tx_id in reverted and label is None:
                continue  # reverted before: only an analyst's label reopens the entry
            cid = correction_id_for(p.tx_id, p.corrected_minor, p.source, p.model_version)
            event = _event("apply", p, actor=actor, note=None, correction_id=cid, run_id=run_id)
            events.append(event)
            applied.append(_fold(None, event))
            active.add(p.tx_id)
        if events:
            store.append("corrections", pa.Table.from_pylist(events, CORRECTION_EVENT_SCHEMA))
        project(writer, store)
        writer.publish()
    return applied


def unsupported_corrections(
    proposals: Sequence[CorrectionProposal],
    *,
    confidence: float,
    store: AnomalyStore | None = None,
) -> list[Correction]:
    """Corrections applied by a run and not yet accepted by an analyst (status ``active``)
    that ``proposals`` no longer back with the same value at ``confidence``: they stay in
    effect (a run never undoes a correction), to be reviewed by an analyst."""
    store = store or AnomalyStore.default()
    backed = {(p.tx_id, p.corrected_minor) for p in proposals if p.confidence >= confidence}
    return [
        c
        for c in corrections(store)
        if c.status == "active" and (c.tx_id, c.corrected_minor) not in backed
    ]


def _change(
    correction_id: str,
    kind: str,
    *,
    actor: str,
    note: str | None,
    store: AnomalyStore | None,
    warehouse: Warehouse | None,
) -> Correction:
    actor = _check_actor(actor, "actor")
    store = store or AnomalyStore.default()
    warehouse = warehouse or _default_warehouse()
    with warehouse.writer() as writer:
        found = [c for c in corrections(store) if c.correction_id == correction_id]
        if not found:
            raise NotFoundError(f"no correction {correction_id!r}")
        current = found[0]
        if current.status == "reverted":
            raise ConflictError(f"correction {correction_id} was already reverted")
        if kind == "accept" and current.status == "accepted":
            return current
        event = _event(kind, current, actor=actor, note=note)
        store.append("corrections", pa.Table.from_pylist([event], CORRECTION_EVENT_SCHEMA))
        project(writer, store)
        writer.publish()
    return _fold(current, event)


def revert_correction(
    correction_id: str,
    *,
    actor: str,
    note: str | None = None,
    store: AnomalyStore | None = None,
    warehouse: Warehouse | None = None,
) -> Correction:
    """Stop a correction from taking effect: the view shows the original amount again."""
    return _change(
        correction_id, "revert", actor=actor, note=note, store=store, warehouse=warehouse
    )


def accept_correction(
    correction_id: str,
    *,
    actor: str,
    note: str | None = None,
    store: AnomalyStore | None = None,
    warehouse: Warehouse | None = None,
) -> Correction:
    """Record that an analyst confirmed a correction (it stays in effect)."""
    return _change(
        correction_id, "accept", actor=actor, note=note, store=store, warehouse=warehouse
    )


def project(writer: WarehouseWriter, store: AnomalyStore) -> None:
    """Stage the view's annotations from the log and the latest run: ``corrections`` (in
    effect), ``anomaly_scores`` (every scored entry) and ``anomaly_flags`` (flagged, ruled,
    filled or corrected entries). The caller publishes."""
    active = [c for c in corrections(store) if c.in_effect]
    writer.replace_annotation(
        "corrections",
        SCOPE,
        pa.table(
            {
                "tx_id": pa.array([c.tx_id for c in active], pa.string()),
                "corrected_amount_minor": pa.array([c.corrected_minor for c in active], pa.int64()),
                "correction_id": pa.array([c.correction_id for c in active], pa.string()),
            }
        ),
    )
    run_id = store.latest_run()
    corrected = {c.tx_id for c in active}
    rows: dict[str, dict[str, Any]] = {}
    if run_id is not None:
        info = store.run_info(run_id)
        run_scores = store.read_run(run_id, "scores").to_pandas()
        flags = store.read_run(run_id, "flags").to_pandas()
        fills = store.read_run(run_id, "fills").to_pandas()
        rules = flags.groupby("tx_id")["rule"].agg(lambda r: sorted(set(r))).to_dict()
        filled = fills.groupby("tx_id")["field"].agg(lambda f: sorted(set(f))).to_dict()
        keep = run_scores["flagged"] | run_scores["tx_id"].isin(
            set(rules) | set(filled) | corrected
        )
        for row in run_scores[keep].itertuples(index=False):
            quality = []
            if row.flagged:
                quality.append("anomaly_suspected")
            if row.tx_id in rules:
                quality.append("anomaly_rule")
            quality += [
                f"{field.removesuffix('_after_minor')}_filled"
                for field in filled.get(row.tx_id, [])
            ]
            rows[row.tx_id] = {
                "tx_id": row.tx_id,
                "anomaly_type": row.anomaly_type if row.flagged else None,
                "type_probability": float(row.type_probability) if row.flagged else None,
                "predicted_amount_minor": (
                    int(row.predicted_amount_minor)
                    if row.predicted_amount_minor != row.amount_minor
                    else None
                ),
                "rules": rules.get(row.tx_id, []),
                "model_version": info.get("model_version"),
                "run_id": run_id,
                "quality_flags": quality,
            }
        writer.replace_annotation(
            "anomaly_scores",
            SCOPE,
            pa.table(
                {
                    "tx_id": pa.array(run_scores["tx_id"], pa.string()),
                    "anomaly_score": pa.array(run_scores["anomaly_score"], pa.float64()),
                }
            ),
        )
    for tx_id in corrected:
        row = rows.setdefault(
            tx_id,
            {
                "tx_id": tx_id,
                "anomaly_type": None,
                "type_probability": None,
                "predicted_amount_minor": None,
                "rules": [],
                "model_version": None,
                "run_id": run_id or "",
                "quality_flags": [],
            },
        )
        row["quality_flags"] = [*row["quality_flags"], "corrected"]
    from flowbureau.storage.annotations import ANNOTATIONS

    schema = ANNOTATIONS["anomaly_flags"].schema
    writer.replace_annotation(
        "anomaly_flags", SCOPE, pa.Table.from_pylist(sorted(rows.values(), key=_tx), schema)
    )


def _tx(row: dict[str, Any]) -> str:
    return str(row["tx_id"])


def publish_view(*, store: AnomalyStore | None = None, warehouse: Warehouse | None = None) -> None:
    """Re-project the view from the log and the latest run and publish it (what every write
    does; call it to repair a view left behind by a crash)."""
    store = store or AnomalyStore.default()
    warehouse = warehouse or _default_warehouse()
    with warehouse.writer() as writer:
        project(writer, store)
        writer.publish()


def _default_warehouse() -> Warehouse:
    from flowbureau.storage.warehouse import Warehouse

    return Warehouse.default()
