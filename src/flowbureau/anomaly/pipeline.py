"""The anomaly stage end to end: train, run detection and correction, report one account.

Rules:
- :func:`train_model` reads every stored transaction, pre-processes it, builds features and
  trains :class:`~flowbureau.anomaly.model.SequenceAnomalyDetector` on the labels available:
  the synthetic ground truth when a ``ground_truth`` directory is given (with duplicate
  postings planted at ``settings.anomaly.duplicate_rate``, since ingest stores none) and the
  analysts' current labels, which take precedence. Entries with neither are unlabelled: they
  give context to the sequence but no loss. The model is saved as the next version under
  ``settings.anomaly.models_dir`` (default ``data_dir/models/anomaly``).
- :func:`run_detection` scores every stored transaction with a model version (default the
  latest), stores the run (scores, rule flags, fills) as an immutable snapshot, applies the
  corrections that reach the confidence bar and publishes the view (``anomaly_scores``,
  ``anomaly_flags``, ``corrections``). Computing happens outside the warehouse writer lock;
  only the final publish holds it.
- **Incremental runs re-score everything.** With a bidirectional model (``direction="both"``;
  the default is causal) an entry's score depends on the entries after it in its account, so
  when new statements arrive the scores, types and proposals of an account's earlier
  entries (mostly its latest ones) may change. A run therefore scores every stored entry of
  every account, never reusing an earlier run's scores, and the view shows the latest run
  only. What analysts and earlier runs decided is not undone
  (:mod:`~flowbureau.anomaly.correction` rules): corrections in effect stay in effect (those
  this run no longer proposes are listed in ``run.json`` as ``unsupported_corrections``,
  counted in :class:`RunReport` and marked in :func:`account_report`), reverted values are
  not re-applied and analyst labels are obeyed.
- Everything is held in memory (one frame of all transactions): fine for the demo consortium
  (~160k entries, a few hundred MB), not for a national bureau (see ``docs/anomaly.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from flowbureau.anomaly.store import AnomalyStore, new_run_id
from flowbureau.errors import ModelInputError, NotFoundError

if TYPE_CHECKING:
    from flowbureau.anomaly.model import SequenceAnomalyDetector
    from flowbureau.config import Settings
    from flowbureau.storage.engine import Engine
    from flowbureau.storage.warehouse import Warehouse

__all__ = [
    "AccountReport",
    "RunReport",
    "TrainReport",
    "account_report",
    "models_dir",
    "run_detection",
    "score_frame",
    "train_model",
    "training_data",
]

Progress = Callable[[str, float], None]
"""``progress(step, fraction done)``."""


def models_dir(settings: Settings) -> Path:
    """Where anomaly model versions are saved."""
    return settings.anomaly.models_dir or settings.data_dir / "models" / "anomaly"


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What training produced."""

    version: str
    path: Path
    rows: int
    labelled: int
    labels: dict[str, int]
    analyst_labels: int
    device: str
    epochs: int
    fit_seconds: float
    final_loss: float
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "version": self.version,
            "path": str(self.path),
            "rows": self.rows,
            "labelled": self.labelled,
            "labels": self.labels,
            "analyst_labels": self.analyst_labels,
            "device": self.device,
            "epochs": self.epochs,
            "fit_seconds": round(self.fit_seconds, 3),
            "final_loss": round(self.final_loss, 6),
            "fingerprint": self.fingerprint,
        }


def training_data(
    engine: Engine,
    *,
    ground_truth: Path | None,
    duplicate_rate: float,
    seed: int,
    timezone: str,
    store: AnomalyStore,
) -> tuple[pd.DataFrame, list[str | None], int]:
    """(feature frame, per-row labels, how many come from analysts) for training."""
    from flowbureau.anomaly.evaluation import attach_truth, load_truth, plant_duplicates
    from flowbureau.anomaly.features import build_features
    from flowbureau.anomaly.feedback import current_labels
    from flowbureau.anomaly.preprocessing import load_transactions, preprocess

    frame = load_transactions(engine)
    if frame.empty:
        raise ModelInputError("the warehouse holds no transactions to train on")
    if ground_truth is not None and duplicate_rate > 0:
        frame = plant_duplicates(frame, rate=duplicate_rate, seed=seed)
    prepared = preprocess(frame, timezone=timezone)
    features = build_features(prepared.frame, timezone=timezone)
    labels: list[str | None] = [None] * len(features)
    if ground_truth is not None:
        truth = attach_truth(prepared.frame, load_truth(ground_truth))
        labels = list(truth["label"])
    analyst = current_labels(store).set_index("tx_id")["label"].to_dict()
    overridden = 0
    for i, tx_id in enumerate(features["tx_id"]):
        if tx_id in analyst:
            labels[i] = str(analyst[tx_id])
            overridden += 1
    return features, labels, overridden


def train_model(
    *,
    ground_truth: Path | None = None,
    epochs: int = 25,
    seed: int = 0,
    device: str = "auto",
    params: dict[str, Any] | None = None,
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> TrainReport:
    """Train on the stored transactions and the available labels; save the next version."""
    from flowbureau.anomaly.model import SequenceAnomalyDetector, save_version
    from flowbureau.config import get_settings
    from flowbureau.storage.warehouse import Warehouse

    settings = settings or get_settings()
    store = AnomalyStore(settings.anomaly.store_dir or settings.data_dir / "anomaly")
    if ground_truth is not None and not (ground_truth / "transactions.parquet").is_file():
        raise ModelInputError(
            f"{ground_truth} is not a ground_truth directory (no transactions.parquet)",
            file=ground_truth,
        )
    _step(progress, "loading and featurising transactions", 0.0)
    with Warehouse(settings.warehouse_dir, settings.warehouse).connect() as engine:
        features, labels, analyst = training_data(
            engine,
            ground_truth=ground_truth,
            duplicate_rate=settings.anomaly.duplicate_rate,
            seed=seed,
            timezone=settings.timezone,
            store=store,
        )
    detector = SequenceAnomalyDetector(
        **{**(params or {}), "epochs": epochs, "seed": seed, "device": device}
    )
    detector.set_params(threshold=settings.anomaly.threshold)

    def on_epoch(epoch: int, loss: float) -> None:
        _step(progress, f"training epoch {epoch}/{epochs} (loss {loss:.4f})", epoch / epochs)

    detector.fit(features, labels, progress=on_epoch)
    counts = pd.Series([v for v in labels if v is not None]).value_counts()
    metrics = {"final_loss": detector.history_[-1], "rows": float(len(features))}
    version = save_version(detector, models_dir(settings), metrics=metrics)
    return TrainReport(
        version=version,
        path=models_dir(settings) / version,
        rows=len(features),
        labelled=int(counts.sum()),
        labels={str(k): int(v) for k, v in counts.items()},
        analyst_labels=analyst,
        device=detector.device_,
        epochs=epochs,
        fit_seconds=detector.fit_seconds_,
        final_loss=detector.history_[-1],
        fingerprint=detector.training_fingerprint_,
    )


def score_frame(detector: SequenceAnomalyDetector, features: pd.DataFrame) -> pd.DataFrame:
    """The run's ``scores`` table: one row per feature row, the model's reading of it."""
    analysis = detector.analyse(features)
    flagged = analysis.score >= detector.threshold
    return pd.DataFrame(
        {
            "tx_id": features["tx_id"].to_numpy(object),
            "account_id": features["sequence_id"].to_numpy(object),
            "amount_minor": features["amount_minor"].to_numpy(np.int64),
            "anomaly_score": analysis.score,
            "flagged": flagged,
            "anomaly_type": analysis.type,
            "type_probability": analysis.type_probability,
            "predicted_amount_minor": analysis.normal_amount_minor,
            "normal_confidence": analysis.normal_confidence,
        }
    )


@dataclass(frozen=True, slots=True)
class RunReport:
    """What one detection run found and changed."""

    run_id: str
    model_version: str
    transactions: int
    flagged: int
    by_type: dict[str, int]
    rule_flags: dict[str, int]
    fills: dict[str, int]
    proposals: int
    corrections_applied: int
    confidence: float
    corrections_unsupported: int = 0
    """Corrections in effect (applied by a run, not yet accepted by an analyst) that this run
    no longer proposes at ``confidence``: kept in effect, to be reviewed."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def run_detection(
    *,
    confidence: float | None = None,
    version: str | None = None,
    actor: str = "flowbureau-anomaly",
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> RunReport:
    """Score every stored transaction, store the run, apply confident corrections, publish."""
    from flowbureau.anomaly.correction import (
        apply_corrections,
        propose_corrections,
        unsupported_corrections,
    )
    from flowbureau.anomaly.features import build_features
    from flowbureau.anomaly.model import load_version
    from flowbureau.anomaly.preprocessing import load_transactions, preprocess
    from flowbureau.config import get_settings
    from flowbureau.storage.warehouse import Warehouse

    settings = settings or get_settings()
    bar = settings.anomaly.confidence if confidence is None else confidence
    store = AnomalyStore(settings.anomaly.store_dir or settings.data_dir / "anomaly")
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    name, detector = load_version(models_dir(settings), version)
    started = datetime.now(UTC)
    _step(progress, "loading transactions", 0.0)
    with warehouse.connect() as engine:
        frame = load_transactions(engine)
    if frame.empty:
        raise NotFoundError("the warehouse holds no transactions: ingest statements first")
    _step(progress, "filling values and checking rules", 0.2)
    prepared = preprocess(frame, timezone=settings.timezone)
    _step(progress, "building sequence features", 0.4)
    features = build_features(prepared.frame, timezone=settings.timezone)
    _step(progress, f"scoring {len(features):,} transactions with model {name}", 0.6)
    scores = score_frame(detector, features)
    proposals = propose_corrections(scores, prepared.flags, model_version=name)
    run_id = new_run_id()
    by_type = scores.loc[scores["flagged"], "anomaly_type"].value_counts()
    unsupported = unsupported_corrections(proposals, confidence=bar, store=store)
    info = {
        "run_id": run_id,
        "model_version": name,
        "training_fingerprint": detector.training_fingerprint_,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "transactions": len(scores),
        "flagged": int(scores["flagged"].sum()),
        "threshold": detector.threshold,
        "confidence": bar,
        "proposals": len(proposals),
        "unsupported_corrections": [c.correction_id for c in unsupported],
    }
    _step(progress, "storing the run", 0.8)
    store.write_run(
        run_id,
        {
            "scores": pa.Table.from_pandas(scores, preserve_index=False),
            "flags": pa.Table.from_pandas(prepared.flags, preserve_index=False),
            "fills": pa.Table.from_pandas(prepared.fills.astype(str), preserve_index=False),
        },
        info,
    )
    _step(progress, "applying corrections and publishing the view", 0.9)
    applied = apply_corrections(
        proposals, confidence=bar, actor=actor, run_id=run_id, store=store, warehouse=warehouse
    )
    _step(progress, "done", 1.0)
    return RunReport(
        run_id=run_id,
        model_version=name,
        transactions=len(scores),
        flagged=int(scores["flagged"].sum()),
        by_type={str(k): int(v) for k, v in by_type.items()},
        rule_flags={str(k): int(v) for k, v in prepared.flags["rule"].value_counts().items()},
        fills={str(k): int(v) for k, v in prepared.fills["field"].value_counts().items()},
        proposals=len(proposals),
        corrections_applied=len(applied),
        confidence=bar,
        corrections_unsupported=len(unsupported),
    )


@dataclass(frozen=True, slots=True)
class AccountReport:
    """One account's flagged, ruled, filled, corrected or labelled entries and why."""

    account_id: str
    run_id: str | None
    model_version: str | None
    transactions: int
    entries: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "account_id": self.account_id,
            "run_id": self.run_id,
            "model_version": self.model_version,
            "transactions": self.transactions,
            "entries": self.entries,
        }


def account_report(
    account_id: str,
    *,
    store: AnomalyStore | None = None,
    warehouse: Warehouse | None = None,
) -> AccountReport:
    """What the latest run and the analysts say about one account's entries."""
    from flowbureau.anomaly.correction import corrections
    from flowbureau.storage.warehouse import Warehouse

    store = store or AnomalyStore.default()
    warehouse = warehouse or Warehouse.default()
    with warehouse.connect() as engine:
        stored = engine.query(
            "SELECT tx_id, booked_at, amount_minor, currency, counterparty_name, tx_type, "
            "corrected_amount_minor, correction_id, quality_flags "
            "FROM transactions WHERE account_id = ?",
            [account_id],
        ).to_pandas()
    if stored.empty:
        raise NotFoundError(f"no transactions of account {account_id!r}")
    run_id = store.latest_run()
    info = store.run_info(run_id) if run_id else {}
    unsupported = set(info.get("unsupported_corrections", []))
    scores = _run_rows(store, run_id, "scores", account_id, stored)
    flags = _run_rows(store, run_id, "flags", account_id, stored)
    fills = _run_rows(store, run_id, "fills", account_id, stored)
    fixes = corrections(store, account_id=account_id)
    label_events = store.read("labels").to_pandas()
    label_events = label_events[label_events["account_id"] == account_id]
    interesting = set(scores.loc[scores["flagged"], "tx_id"]) if not scores.empty else set()
    interesting |= set(flags["tx_id"]) | set(fills["tx_id"]) | {c.tx_id for c in fixes}
    interesting |= set(label_events["tx_id"])
    entries = []
    by_tx = stored.set_index("tx_id")
    score_of = scores.set_index("tx_id") if not scores.empty else None
    for tx_id in sorted(interesting, key=lambda t: (by_tx.at[t, "booked_at"], t)):
        row = by_tx.loc[tx_id]
        entry: dict[str, Any] = {
            "tx_id": tx_id,
            "booked_at": row["booked_at"].isoformat(),
            "amount_minor": int(row["amount_minor"]),
            "currency": row["currency"],
            "counterparty_name": row["counterparty_name"],
            "tx_type": row["tx_type"],
            "quality_flags": list(row["quality_flags"]),
        }
        if score_of is not None and tx_id in score_of.index:
            s = score_of.loc[tx_id]
            entry.update(
                anomaly_score=round(float(s["anomaly_score"]), 4),
                flagged=bool(s["flagged"]),
                anomaly_type=str(s["anomaly_type"]) if bool(s["flagged"]) else None,
                type_probability=round(float(s["type_probability"]), 4),
                predicted_amount_minor=int(s["predicted_amount_minor"]),
            )
        entry["rules"] = [
            {
                "rule": r["rule"],
                "anomaly_type": r["anomaly_type"],
                "confidence": float(r["confidence"]),
                "evidence": r["evidence"],
            }
            for r in flags[flags["tx_id"] == tx_id].to_dict("records")
        ]
        entry["fills"] = fills[fills["tx_id"] == tx_id][
            ["field", "value", "method", "evidence"]
        ].to_dict("records")
        entry["corrections"] = [
            {**c.to_dict(), "unsupported_by_latest_run": c.correction_id in unsupported}
            for c in fixes
            if c.tx_id == tx_id
        ]
        entry["labels"] = [
            {k: (v.isoformat() if k == "at" else v) for k, v in lab.items() if k != "sequence"}
            for lab in label_events[label_events["tx_id"] == tx_id].to_dict("records")
        ]
        entries.append(entry)
    return AccountReport(
        account_id=account_id,
        run_id=run_id,
        model_version=info.get("model_version"),
        transactions=len(stored),
        entries=entries,
    )


def _run_rows(
    store: AnomalyStore, run_id: str | None, table: str, account_id: str, stored: pd.DataFrame
) -> pd.DataFrame:
    if run_id is None:
        return pd.DataFrame(columns=["tx_id", "flagged"])
    rows: pd.DataFrame = store.read_run(run_id, table).to_pandas()
    keep = (
        rows["account_id"] == account_id
        if "account_id" in rows
        else rows["tx_id"].isin(set(stored["tx_id"]))
    )
    return rows.loc[keep]


def _step(progress: Progress | None, message: str, fraction: float) -> None:
    if progress is not None:
        progress(message, fraction)
