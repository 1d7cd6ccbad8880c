"""The whole pipeline on a synthetic consortium: what ``make demo`` runs before serving.

Rules:
- Steps, in order: generate the consortium (``flowbureau synth``), migrate the service database,
  ingest every bank's files through the contract and the consortium log (``flowbureau ingest``),
  train the anomaly model and run detection (``flowbureau anomaly train/run``), resolve the
  counterparty graph (``flowbureau graph build``), train the credit model and score every
  enterprise, then create the demo accounts. Each step calls the same function as its CLI
  command; nothing here is demo-only logic except the choice of labels below.
- The consortium's ground truth is read only where a real deployment has labels of its own:
  the planted anomaly types stand for analysts' labels, the generated defaults for a lender's
  observed outcomes. The ingest, graph and scoring pipelines never read it.
- Re-running is cheap and safe: an existing consortium with the same parameters is reused (a
  different one is refused rather than overwritten), files already ingested add nothing, an
  existing anomaly model is reused; graph, scores and demo accounts are refreshed.
- Refused in production: demo accounts have generated passwords that are printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowbureau.config import Settings, get_settings
from flowbureau.errors import ConfigurationError, InputError

__all__ = ["DemoParameters", "DemoReport", "run_demo"]


@dataclass(frozen=True, slots=True)
class DemoParameters:
    """The size of the sample consortium and the demo's anomaly training epochs."""

    enterprises: int = 200
    banks: int = 5
    months: int = 24
    seed: int = 1
    anomaly_epochs: int = 10

    def as_manifest(self) -> dict[str, int]:
        """The parameters as ``flowbureau synth`` records them in ``manifest.json``."""
        return {
            "enterprises": self.enterprises,
            "banks": self.banks,
            "months": self.months,
            "seed": self.seed,
        }


@dataclass(slots=True)
class DemoReport:
    """What each step did, its wall time, and the demo accounts to print."""

    consortium: Path
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    accounts: list[Any] = field(default_factory=list)


Step = Callable[[str], None]


def _reuse_or_generate(root: Path, parameters: DemoParameters) -> dict[str, Any]:
    from flowbureau.synth import generate

    manifest = root / "manifest.json"
    if manifest.is_file():
        found = json.loads(manifest.read_text(encoding="utf-8")).get("parameters", {})
        wanted = parameters.as_manifest()
        if {k: found.get(k) for k in wanted} != wanted:
            raise InputError(
                f"{root} holds a consortium generated with {found}, not {wanted}; "
                "pass another --dir or delete it",
                field="--dir",
            )
        return {"reused": True, **wanted}
    if root.exists() and any(root.iterdir()):
        raise InputError(f"{root} exists and is not a synthetic consortium", field="--dir")
    summary = generate(
        root,
        enterprises=parameters.enterprises,
        banks=parameters.banks,
        months=parameters.months,
        seed=parameters.seed,
    )
    return {
        "reused": False,
        "statement_files": summary.statement_files,
        "entries": summary.entries,
        "defaults": summary.defaults,
    }


def _anomaly(root: Path, settings: Settings, epochs: int) -> dict[str, Any]:
    from flowbureau.anomaly.model import list_versions
    from flowbureau.anomaly.pipeline import models_dir, run_detection, train_model

    trained: dict[str, Any] = {"reused": True}
    if not list_versions(models_dir(settings)):
        report = train_model(ground_truth=root / "ground_truth", epochs=epochs, settings=settings)
        trained = {"reused": False, "version": report.version, "rows": report.rows}
    run = run_detection(settings=settings)
    return {
        "model": trained,
        "flagged": run.flagged,
        "corrections_applied": run.corrections_applied,
    }


def run_demo(
    root: Path,
    *,
    parameters: DemoParameters | None = None,
    settings: Settings | None = None,
    on_step: Step | None = None,
) -> DemoReport:
    """Run every step of the pipeline over the consortium in ``root`` (see module rules)."""
    from flowbureau.graph.store import build_graph
    from flowbureau.ingestion import ingest
    from flowbureau.scoring.demo import train_and_score_synthetic
    from flowbureau.service.demo import seed_demo
    from flowbureau.storage.database import upgrade_database

    settings = settings or get_settings()
    if settings.env == "production":
        raise ConfigurationError("refusing to run the demo with production settings")
    parameters = parameters or DemoParameters()
    root = Path(root).resolve()
    report = DemoReport(consortium=root)

    def step(name: str, work: Callable[[], dict[str, Any]]) -> None:
        if on_step is not None:
            on_step(name)
        started = time.perf_counter()
        report.steps[name] = work()
        report.seconds[name] = round(time.perf_counter() - started, 2)

    step("generate the consortium", lambda: _reuse_or_generate(root, parameters))

    def migrate() -> dict[str, Any]:
        return {"revision": upgrade_database(settings.resolved_database_url)}

    step("migrate the service database", migrate)

    def contribute() -> dict[str, Any]:
        done = ingest([root / "banks"]).to_json()
        return {k: done[k] for k in ("files", "records", "new_records", "quarantined")}

    step("ingest through the consortium log", contribute)
    step("detect anomalies", lambda: _anomaly(root, settings, parameters.anomaly_epochs))
    step(
        "resolve the counterparty graph",
        lambda: build_graph(root / "registry", root / "public_records").as_dict(),
    )

    def score() -> dict[str, Any]:
        result = train_and_score_synthetic(root, settings=settings)
        metrics = result["training"]["metrics"]
        return {
            "trained_on": result["training"]["rows"],
            "defaults": result["training"]["bads"],
            "out_of_fold_auc": round(float(metrics.get("champion_oof_auc", float("nan"))), 3),
            "evaluated": result["run"]["evaluated"],
        }

    step("train the credit model and score", score)

    def accounts() -> dict[str, Any]:
        report.accounts = seed_demo(settings, consortium_dir=root)
        return {"accounts": len(report.accounts)}

    step("create the demo accounts", accounts)
    return report
