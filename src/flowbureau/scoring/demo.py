"""The scoring steps of the demo: train on a synthetic consortium and score it.

Rules:
- For ``make demo`` only (and anyone exploring a synthetic consortium): the outcomes are the
  generator's ground truth (:func:`~flowbureau.scoring.training.synthetic_outcomes`), which a
  real deployment never has; it supplies an outcome file to ``flowbureau score train``.
- Steps, after the consortium's bank files were ingested and the service database upgraded:
  import its public records and registry into the external-data directory, train and save the
  credit model on the default cohorts, then evaluate every enterprise as of the day after the
  simulated period (stored in the score history, alerts included).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from flowbureau.config import Settings, get_settings
from flowbureau.scoring.evaluation import CreditEvaluator, external_dirs, models_dir
from flowbureau.scoring.external import import_external, load_external
from flowbureau.scoring.training import synthetic_outcomes, train_and_save
from flowbureau.storage.database import make_engine, session_factory
from flowbureau.storage.warehouse import Warehouse

__all__ = ["train_and_score_synthetic"]


def train_and_score_synthetic(
    consortium: Path, *, settings: Settings | None = None, as_of: date | None = None
) -> dict[str, Any]:
    """Import ``consortium``'s public data, train on its ground truth, score everyone.

    Returns ``{"training": {...}, "run": RunReport.to_json()}``.
    """
    settings = settings or get_settings()
    root = Path(consortium)
    target = settings.scoring.external_dir or settings.data_dir / "external"
    sources = [d for d in (root / "public_records", root / "registry") if d.is_dir()]
    import_external(sources, target)
    outcomes = synthetic_outcomes(root)
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    trained = train_and_save(
        warehouse=warehouse,
        outcomes=outcomes,
        external=load_external(*external_dirs(settings)),
        models_root=models_dir(settings),
        name=settings.scoring.model_name,
        horizon_months=settings.scoring.horizon_months,
        timezone=settings.timezone,
        currency=settings.scoring.currency,
    )
    evaluator = CreditEvaluator.load(settings, version=trained.artefact.manifest.version)
    engine = make_engine(settings.resolved_database_url)
    try:
        report = evaluator.run(
            warehouse=warehouse,
            sessions=session_factory(engine),
            as_of=as_of or outcomes.observed_until + timedelta(days=1),
            pd_jump=settings.scoring.pd_jump_alert,
        )
    finally:
        engine.dispose()
    return {
        "training": {
            "model": trained.model,
            "cohorts": [d.isoformat() for d in trained.cohorts],
            "rows": trained.rows,
            "bads": trained.bads,
            "metrics": trained.metrics,
        },
        "run": report.to_json(),
    }
