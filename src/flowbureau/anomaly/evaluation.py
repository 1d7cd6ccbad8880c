"""Labels from a synthetic consortium's ground truth, planted duplicates, detection metrics.

Rules:
- The ground truth (``DIR/ground_truth/transactions.parquet``, never read by the pipeline)
  joins stored records on (``bank_id``, ``reference``). An entry's label is its planted data
  problem when that is a model class (``typo_x10``, ``typo_x100``, ``date_shift``), else its
  real-flow anomaly (``outlier``, ``circular_flow``, ``round_burst``), else ``normal``.
  ``missing_counterparty`` / ``missing_balance`` entries are ``normal`` for the model: the
  pre-processing fills handle them and are measured separately. A stored record without a
  truth row is unlabelled (``None``).
- Ingest stores an exact copy once, so no duplicate posting reaches the warehouse.
  :func:`plant_duplicates` inserts copies into a ledger-ordered frame (never into the
  warehouse): a copy of a random entry with a new ``tx_id``, booked 0-2 days after the
  original and placed 0-3 entries after it, with the original's value date but without a
  running balance (a copy delivered through another channel), labelled
  ``duplicate_posting``; its true amount is 0.
- Metrics compare scores against labels: average precision (area under the
  precision-recall curve, scikit-learn's step-wise estimate), precision@k with ``k`` = the
  number of positives, and recall at the detector's own operating threshold. Per type, the
  population is that type's entries plus the normal ones (other types left out).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from flowbureau.anomaly import ANOMALY_TYPES

__all__ = [
    "attach_truth",
    "detection_metrics",
    "load_truth",
    "plant_duplicates",
]

_PROBLEM_CLASSES = {"typo_x10", "typo_x100", "date_shift"}


def load_truth(ground_truth_dir: str | Path) -> pd.DataFrame:
    """Per true entry: ``bank_id``, ``reference``, ``label``, ``true_amount_minor``,
    ``true_counterparty_name`` (as Chinese and ASCII names)."""
    root = Path(ground_truth_dir)
    truth = pd.read_parquet(
        root / "transactions.parquet",
        columns=["bank_id", "reference", "problem", "anomaly", "amount_minor", "counterparty_name"],
    )
    names = pd.read_parquet(root / "counterparties.parquet", columns=["name", "name_ascii"])
    ascii_of = dict(zip(names["name"], names["name_ascii"], strict=False))
    problem = truth["problem"].where(truth["problem"].isin(list(_PROBLEM_CLASSES)))
    label = problem.fillna(truth["anomaly"]).fillna("normal")
    return pd.DataFrame(
        {
            "bank_id": truth["bank_id"],
            "reference": truth["reference"],
            "label": label.astype(object),
            "problem": truth["problem"].astype(object),
            "true_amount_minor": truth["amount_minor"].astype(np.int64),
            "true_counterparty_name": truth["counterparty_name"].astype(object),
            "true_counterparty_ascii": truth["counterparty_name"].map(ascii_of).astype(object),
        }
    )


def attach_truth(frame: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (row order kept) with the truth columns; unmatched rows get label None.

    Rows planted by :func:`plant_duplicates` keep their ``duplicate_posting`` label and true
    amount 0.
    """
    merged = frame.merge(truth, on=["bank_id", "reference"], how="left", validate="many_to_one")
    merged.index = frame.index
    if "planted_duplicate" in frame:
        planted = frame["planted_duplicate"].to_numpy(bool)
        merged.loc[planted, "label"] = "duplicate_posting"
        merged.loc[planted, "true_amount_minor"] = 0
    merged["label"] = merged["label"].astype(object).where(merged["label"].notna(), None)
    return merged


def plant_duplicates(frame: pd.DataFrame, *, rate: float, seed: int) -> pd.DataFrame:
    """A copy of ledger-ordered ``frame`` with duplicate postings inserted (module rules);
    planted rows have ``planted_duplicate`` True. Positions are renumbered."""
    rng = np.random.default_rng(seed)
    n = len(frame)
    chosen = np.sort(rng.choice(n, size=round(rate * n), replace=False))
    copies = frame.iloc[chosen].copy()
    offset_days = rng.uniform(0.0, 2.0, len(chosen))
    copies["booked_us"] = copies["booked_us"].to_numpy(np.int64) + (
        np.round(offset_days * 86_400) * 1_000_000
    ).astype(np.int64)
    copies["tx_id"] = [
        "dup-" + hashlib.sha256(f"{seed}:{t}".encode()).hexdigest()[:28] for t in copies["tx_id"]
    ]
    copies["reference"] = copies["tx_id"]
    copies["has_balance"] = False
    copies["balance_after_minor"] = 0
    copies["planted_duplicate"] = True
    later = rng.integers(0, 4, len(chosen))
    sort_key = frame["position"].to_numpy(np.int64) * 2
    lengths = frame.groupby("sequence_id", sort=False)["position"].transform("max").to_numpy()
    copy_key = np.minimum(frame["position"].to_numpy(np.int64)[chosen] + later, lengths[chosen])
    originals = frame.copy()
    originals["planted_duplicate"] = False
    combined = pd.concat(
        [originals.assign(_key=sort_key), copies.assign(_key=copy_key * 2 + 1)], ignore_index=True
    )
    combined = combined.sort_values(["sequence_id", "_key"], kind="stable").drop(columns="_key")
    combined = combined.reset_index(drop=True)
    combined["position"] = combined.groupby("sequence_id", sort=False).cumcount().astype(np.int64)
    return combined


def detection_metrics(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    flagged: npt.ArrayLike | None = None,
) -> dict[str, dict[str, float]]:
    """Per type and ``overall``: ``auprc``, ``precision_at_k``, ``recall`` (at ``flagged``,
    when given), ``positives`` and ``population``; unlabelled rows are ignored."""
    from sklearn.metrics import average_precision_score

    label = np.asarray(labels, dtype=object)
    score = np.asarray(scores, dtype=np.float64)
    flag = None if flagged is None else np.asarray(flagged, dtype=bool)
    known = np.array([v is not None for v in label])
    normal = known & (label == "normal")
    result: dict[str, dict[str, float]] = {}
    for name in (*ANOMALY_TYPES[1:], "overall"):
        positive = (known & (label != "normal")) if name == "overall" else (label == name)
        population = normal | positive
        count = int(positive.sum())
        if count == 0:
            continue
        y = positive[population]
        s = score[population]
        top = np.argsort(-s, kind="stable")[:count]
        entry = {
            "auprc": float(average_precision_score(y, s)),
            "precision_at_k": float(y[top].mean()),
            "positives": float(count),
            "population": float(population.sum()),
        }
        if flag is not None:
            entry["recall"] = float(flag[population][y].mean())
        result[name] = entry
    return result
