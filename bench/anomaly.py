"""Anomaly-detection benchmark: the sequence model against baselines on a held-out consortium.

Run: ``.venv/bin/python bench/anomaly.py [--quick] [--seed N] [--work-dir DIR]
[--export DIR]``.

- Two synthetic consortia are generated with ``flowbureau.synth`` (seed ``N`` to train, seed
  ``N + 1`` held out) with planted-problem rates raised (``RATES``) so that every type has
  enough examples to measure, ingested through the real pipeline, pre-processed and
  featurised; duplicate postings are planted into both frames (0.3 %, different seeds).
- The sequence model (default configuration: a bidirectional GRU over each account's whole
  history; ``--direction causal`` for the forward-only variant; CPU, 1 thread) is trained on
  the first and scored on the second; in the same run the baselines are fitted and scored on
  the same rows (the features are past-only for every detector; only the bidirectional
  model's recurrence reads later rows):
  the robust per-account MAD z-score rule, PyOD ``IForest`` and ``ECOD`` on the model's own
  features (unsupervised, contamination = the training anomaly share), and, for reference, a
  supervised per-row LightGBM on the same features (no recurrence).
- Per type and overall: AUPRC, precision@k (k = positives), recall at each detector's own
  threshold. Goal: overall AUPRC >= 1.5x the best of MAD / IForest / ECOD.
- Correction accuracy on the held-out decimal slips (``typo_x10`` / ``typo_x100``), the
  entries to correct being given to both methods: mean absolute error of the model's value for
  a slip (``Analysis.slip_amount_minor``: ÷10 or ÷100 as the type head says) against the true
  amount, against the naive fix (the account's median amount in the same direction). Goal: at
  most half the naive error. Also reported: the model's unconditional normal value on those
  entries (where it must also decide whether they are slips) and the end-to-end effect of
  ``flowbureau anomaly run``'s policy (rule proofs + model, default confidence 0.99): slips fixed,
  amounts wrongly changed.
- ``--export DIR`` writes the training and held-out feature matrices to ``DIR/anomaly.npz``
  for ``bench/anomaly_device.py`` (the same training on a GPU).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Report, Stopwatch, parse_args

RATES = {
    "typo_rate": 0.004,
    "date_shift_rate": 0.002,
    "outlier_rate": 0.001,
    "circular_rate": 0.15,
    "burst_rate": 0.15,
    "missing_rate": 0.002,
}
"""Planted-problem rates (the defaults are 0.0004 / 0.0004 / 0.0002 / 0.004 / 0.004 / 0.0004:
too few positives per type to measure on a consortium this size)."""

DUPLICATE_RATE = 0.003
CONFIDENCE = 0.99


@dataclass
class Split:
    """One consortium as the model sees it."""

    features: pd.DataFrame
    labels: np.ndarray
    truth: pd.DataFrame
    flags: pd.DataFrame
    entries: int


def consortium(work: Path, name: str, *, enterprises: int, months: int, seed: int) -> Path:
    """Generate and ingest one consortium; return its root (banks, ground truth, data)."""
    from flowbureau.config import get_settings
    from flowbureau.ingestion import ingest
    from flowbureau.synth import SynthConfig, generate

    root = work / name
    summary = generate(
        root / "consortium",
        enterprises=enterprises,
        months=months,
        seed=seed,
        config=SynthConfig(**RATES),
    )
    os.environ["FLOWBUREAU_DATA_DIR"] = str(root / "data")
    get_settings.cache_clear()
    ingest([summary.banks_dir])
    return root


def prepare(root: Path, seed: int) -> Split:
    """Load, plant duplicates, pre-process, featurise and label one ingested consortium."""
    from flowbureau.anomaly.evaluation import attach_truth, load_truth, plant_duplicates
    from flowbureau.anomaly.features import build_features
    from flowbureau.anomaly.preprocessing import load_transactions, preprocess
    from flowbureau.storage.warehouse import Warehouse

    with Warehouse(root / "data" / "warehouse").connect() as engine:
        raw = load_transactions(engine)
    frame = plant_duplicates(raw, rate=DUPLICATE_RATE, seed=seed)
    pre = preprocess(frame)
    features = build_features(pre.frame)
    truth = attach_truth(pre.frame, load_truth(root / "consortium" / "ground_truth"))
    return Split(features, truth["label"].to_numpy(object), truth, pre.flags, len(raw))


def naive_fix(features: pd.DataFrame) -> np.ndarray:
    """Per-account median amount in the same direction (the naive corrected value)."""
    amount = features["amount_minor"].to_numpy(np.int64)
    frame = pd.DataFrame({"a": amount, "s": features["sequence_id"], "in": amount > 0})
    return np.asarray(frame.groupby(["s", "in"])["a"].transform("median"), dtype=np.float64)


def main() -> None:
    from flowbureau.anomaly.baselines import MadRule, PyodBaseline
    from flowbureau.anomaly.evaluation import detection_metrics
    from flowbureau.anomaly.features import FEATURE_NAMES
    from flowbureau.anomaly.model import SequenceAnomalyDetector

    args = parse_args(
        __doc__.splitlines()[0],
        work_dir={"type": Path, "default": None, "help": "where to generate (default: a temp dir)"},
        export={"type": Path, "default": None, "help": "write anomaly.npz here for the GPU run"},
        epochs={"type": int, "default": None, "help": "training epochs (default 25; quick 8)"},
        direction={
            "type": str,
            "default": "causal",
            "choices": ("both", "causal"),
            "help": "the model's direction: causal (default) or both",
        },
    )
    enterprises, months = (20, 4) if args.quick else (150, 12)
    epochs = args.epochs or (8 if args.quick else 25)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-anomaly-"))
    if args.work_dir is None:
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    os.environ.setdefault("FLOWBUREAU_ENV", "test")
    watch = Stopwatch()
    with watch.time("generate + ingest"):
        train_root = consortium(
            work, "train", enterprises=enterprises, months=months, seed=args.seed
        )
        test_root = consortium(
            work, "test", enterprises=enterprises, months=months, seed=args.seed + 1
        )
    with watch.time("pre-process + features"):
        train = prepare(train_root, seed=args.seed)
        test = prepare(test_root, seed=args.seed + 1)
    if args.export is not None:
        export(args.export / "anomaly.npz", train, test, list(FEATURE_NAMES))

    model = SequenceAnomalyDetector(
        epochs=epochs, seed=args.seed, device="cpu", direction=args.direction
    )
    cpu_before = time.process_time()
    model.fit(train.features, list(train.labels))
    fit_cpu = time.process_time() - cpu_before
    load_after_fit = os.getloadavg()
    with watch.time("score held-out"):
        analysis = model.analyse(test.features)
    share = float(np.mean(train.labels != "normal"))
    detectors: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "sequence model (GRU)": (analysis.score, analysis.score >= model.threshold)
    }
    mad = MadRule().fit(train.features)
    detectors["MAD z-score rule"] = (
        mad.decision_function(test.features),
        mad.predict(test.features).astype(bool),
    )
    for method, label in (("iforest", "PyOD IForest"), ("ecod", "PyOD ECOD")):
        with watch.time(label):
            baseline = PyodBaseline(method=method, contamination=share, seed=args.seed)
            baseline.fit(train.features)
            detectors[label] = (
                baseline.decision_function(test.features),
                baseline.predict(test.features).astype(bool),
            )
    with watch.time("LightGBM"):
        detectors["LightGBM per row (supervised, ref.)"] = lightgbm_scores(train, test, args.seed)

    metrics = {
        name: detection_metrics(test.labels, scores, flagged=flagged)
        for name, (scores, flagged) in detectors.items()
    }
    report = Report(
        bench="anomaly",
        title=(
            f"held-out consortium (seed {args.seed + 1}): {len(test.features):,} entries, "
            f"{int(np.sum(test.labels != 'normal')):,} anomalous; trained on seed {args.seed} "
            f"({len(train.features):,} entries); model direction {args.direction}"
        ),
        columns=("detector", "type", "positives", "AUPRC", "precision@k", "recall"),
    )
    types = [t for t in metrics["sequence model (GRU)"] if t != "overall"] + ["overall"]
    for kind in types:
        for name, result in metrics.items():
            m = result[kind]
            report.row(
                name, kind, int(m["positives"]), m["auprc"], m["precision_at_k"], m["recall"]
            )
    ours = metrics["sequence model (GRU)"]["overall"]["auprc"]
    unsupervised = ("MAD z-score rule", "PyOD IForest", "PyOD ECOD")
    best_name = max(unsupervised, key=lambda n: metrics[n]["overall"]["auprc"])
    best = metrics[best_name]["overall"]["auprc"]
    report.goal("overall AUPRC / best baseline", ours / best, 1.5, higher_is_better=True)

    slips = np.isin(test.labels, ["typo_x10", "typo_x100"])
    true = test.truth["true_amount_minor"].to_numpy(np.float64)
    ours_fix = analysis.slip_amount_minor.astype(np.float64)
    unconditional = analysis.normal_amount_minor.astype(np.float64)
    mae_model = float(np.mean(np.abs(ours_fix[slips] - true[slips])))
    mae_unconditional = float(np.mean(np.abs(unconditional[slips] - true[slips])))
    mae_naive = float(np.mean(np.abs(naive_fix(test.features)[slips] - true[slips])))
    mae_none = float(np.mean(np.abs(test.features["amount_minor"].to_numpy()[slips] - true[slips])))
    report.goal("correction MAE / naive MAE", mae_model / mae_naive, 0.5, higher_is_better=False)
    end_to_end = apply_policy(model, test)

    report.figures.update(
        {
            "train_entries": len(train.features),
            "test_entries": len(test.features),
            "epochs": epochs,
            "direction": args.direction,
            "fit_seconds_cpu": model.fit_seconds_,
            "fit_cpu_time_seconds": fit_cpu,
            "load_average_after_fit": [round(v, 2) for v in load_after_fit],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
            "best_baseline": best_name,
            "auprc": {n: r["overall"]["auprc"] for n, r in metrics.items()},
            "auprc_by_type_model": {
                t: m["auprc"] for t, m in metrics["sequence model (GRU)"].items()
            },
            "slips": int(slips.sum()),
            "mae_model_yuan": mae_model / 100,
            "mae_naive_yuan": mae_naive / 100,
            "mae_uncorrected_yuan": mae_none / 100,
            "mae_model_unconditional_yuan": mae_unconditional / 100,
            "exact_model_fixes": float(np.mean(ours_fix[slips] == true[slips])),
            "exact_model_unconditional": float(np.mean(unconditional[slips] == true[slips])),
            **end_to_end,
            "seconds": dict(watch.seconds),
        }
    )
    print_summary(
        [
            (
                f"training (CPU, 1 thread, direction {args.direction})",
                f"{model.fit_seconds_:.1f} s wall, {fit_cpu:.1f} s CPU for {epochs} epochs "
                f"(load average {load_after_fit[0]:.2f} / {load_after_fit[1]:.2f} / "
                f"{load_after_fit[2]:.2f})",
            ),
            ("held-out decimal slips", f"{int(slips.sum())}"),
            ("MAE model's value for a slip (location given)", f"{mae_model / 100:,.2f} yuan"),
            ("MAE naive fix (account median)", f"{mae_naive / 100:,.2f} yuan"),
            (
                "MAE model's normal value (location not given)",
                f"{mae_unconditional / 100:,.2f} yuan "
                f"({np.mean(unconditional[slips] == true[slips]):.1%} exact)",
            ),
            ("MAE left uncorrected", f"{mae_none / 100:,.2f} yuan"),
            (
                f"anomaly run policy (confidence {CONFIDENCE})",
                f"{end_to_end['policy_corrections']} corrections "
                f"{end_to_end['policy_corrections_by_source']}: "
                f"{end_to_end['policy_slips_fixed_exactly']} of "
                f"{end_to_end['policy_slips_total']} slips fixed exactly, "
                f"{end_to_end['policy_wrong_corrections']} wrong",
            ),
            *((f"time: {k}", f"{v:.1f} s") for k, v in watch.seconds.items()),
        ]
    )
    report.print()


def lightgbm_scores(train: Split, test: Split, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Supervised per-row gradient boosting on the same features (anomalous vs normal)."""
    import lightgbm

    from flowbureau.anomaly.features import FEATURE_NAMES

    names = list(FEATURE_NAMES)
    known = np.array([v is not None for v in train.labels])
    y = (train.labels[known] != "normal").astype(int)
    model = lightgbm.LGBMClassifier(
        n_estimators=300,
        learning_rate=0.05,
        num_leaves=31,
        random_state=seed,
        verbose=-1,
        n_jobs=1,
    )
    model.fit(train.features.loc[known, names], y)
    scores = model.predict_proba(test.features[names])[:, 1]
    return scores, scores >= 0.5


def apply_policy(model: Any, test: Split) -> dict[str, Any]:
    """What ``anomaly run`` would change on the held-out set (without a warehouse)."""
    from flowbureau.anomaly.correction import propose_corrections
    from flowbureau.anomaly.pipeline import score_frame

    scores = score_frame(model, test.features)
    proposals = [
        p
        for p in propose_corrections(scores, test.flags, model_version="bench")
        if p.confidence >= CONFIDENCE
    ]
    truth = test.truth.set_index("tx_id")
    slips = set(truth.index[truth["label"].isin(["typo_x10", "typo_x100"])])
    fixed = [p for p in proposals if p.tx_id in slips]
    exact = sum(p.corrected_minor == truth.at[p.tx_id, "true_amount_minor"] for p in fixed)
    wrong = [p for p in proposals if p.corrected_minor != truth.at[p.tx_id, "true_amount_minor"]]
    by_source: dict[str, int] = {}
    for p in proposals:
        by_source[p.source] = by_source.get(p.source, 0) + 1
    return {
        "policy_corrections": len(proposals),
        "policy_corrections_by_source": by_source,
        "policy_slips_total": len(slips),
        "policy_slips_fixed_exactly": int(exact),
        "policy_wrong_corrections": len(wrong),
    }


def export(path: Path, train: Split, test: Split, names: list[str]) -> None:
    """Feature matrices, sequence keys and labels of both splits for the GPU run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"names": np.array(names)}
    for key, split in (("train", train), ("test", test)):
        arrays[f"{key}_x"] = split.features[names].to_numpy(np.float32)
        arrays[f"{key}_sequence"] = pd.factorize(split.features["sequence_id"])[0]
        arrays[f"{key}_position"] = split.features["position"].to_numpy(np.int64)
        arrays[f"{key}_amount"] = split.features["amount_minor"].to_numpy(np.int64)
        arrays[f"{key}_labels"] = np.array([v or "" for v in split.labels])
    np.savez_compressed(path, **arrays)


def print_summary(rows: list[tuple[str, str]]) -> None:
    """The correction and timing figures as a small table (before the report's JSON line)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="corrections and timings")
    table.add_column("what")
    table.add_column("value")
    for what, value in rows:
        table.add_row(what, value)
    Console(file=sys.stdout, width=120).print(table)


if __name__ == "__main__":
    main()
