"""Training data: outcome files, cohort labels, default cohorts, the credit model, cases."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scoring_data import code

from conftest import Trained
from flowbureau.errors import InputError, ModelError
from flowbureau.scoring.artefacts import load_model
from flowbureau.scoring.assembly import default_sources
from flowbureau.scoring.training import (
    CreditModel,
    Outcomes,
    default_cohorts,
    label_cohort,
    load_outcomes,
    synthetic_outcomes,
    training_set,
)
from flowbureau.storage.warehouse import Warehouse

E, F, G = code(1), code(2), code(3)


def test_outcome_file_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_text(f"credit_code,default_date\n{E},2024-05-03\n{F},\n", encoding="utf-8")
    outcomes = load_outcomes(path, observed_until=date(2024, 12, 31))
    assert outcomes.defaults == {E: date(2024, 5, 3)}
    assert outcomes.default_before(E, date(2024, 6, 1))
    assert not outcomes.default_before(E, date(2024, 5, 3))
    path.write_text(f"credit_code,default_date\n{E},2025-01-01\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_outcomes(path, observed_until=date(2024, 12, 31))
    assert (err.value.line, err.value.field) == (2, "default_date")
    path.write_text("credit_code,default_date\nnope,\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_outcomes(path, observed_until=date(2024, 12, 31))
    assert err.value.field == "credit_code"


def test_cohort_labels_exclude_earlier_defaults_and_need_complete_outcomes() -> None:
    outcomes = Outcomes(
        {E: date(2024, 2, 29), F: date(2025, 1, 1), G: date(2024, 12, 31)}, date(2025, 6, 30)
    )
    ids, y = label_cohort([E, F, G, code(4)], date(2024, 3, 1), outcomes, 10)
    # E defaulted before the cohort; F's default is after the 10-month horizon (2025-01-01)
    assert ids == [F, G, code(4)]
    assert y.tolist() == [0, 1, 0]
    with pytest.raises(InputError) as err:
        label_cohort([E], date(2024, 9, 1), outcomes, 12)
    assert err.value.field == "as_of"


def test_synthetic_outcomes_read_the_ground_truth(tmp_path: Path) -> None:
    (tmp_path / "ground_truth").mkdir()
    pq.write_table(
        pa.table(
            {
                "enterprise_id": [E, F],
                "default_date": pa.array([date(2024, 8, 2), None], pa.date32()),
            }
        ),
        tmp_path / "ground_truth" / "enterprises.parquet",
    )
    (tmp_path / "manifest.json").write_text(
        json.dumps({"parameters": {"start": "2024-01-01", "months": 24}}), encoding="utf-8"
    )
    outcomes = synthetic_outcomes(tmp_path)
    assert outcomes.defaults == {E: date(2024, 8, 2)}
    assert outcomes.observed_until == date(2025, 12, 31)


def test_default_cohorts_and_training_set(trained: Trained) -> None:
    outcomes = Outcomes(trained.consortium.defaults, trained.observed_until)
    with Warehouse(trained.warehouse_root).connect() as engine:
        cohorts = default_cohorts(engine, outcomes, 12)
        # entries from 2023-01: 12 months of history from 2024-01; outcomes to 2024-12-31
        assert cohorts == [date(2024, 1, 1)]
        assert default_cohorts(engine, outcomes, 6) == [
            date(2024, 1, 1),
            date(2024, 4, 1),
            date(2024, 7, 1),
        ]
        with pytest.raises(InputError):
            default_cohorts(engine, Outcomes({}, date(2023, 6, 30)), 12)
        data = training_set(engine, trained.cohorts, outcomes, default_sources(None, graph=False))
    assert len(data.y) == len(data.X) == len(data.case_ids)
    first = data.as_of.index(date(2024, 1, 1))
    assert sum(1 for d in data.as_of if d == date(2023, 10, 1)) == first
    for code_, as_of, label in zip(data.enterprise_id, data.as_of, data.y, strict=True):
        default = outcomes.defaults.get(code_)
        assert default is None or default >= as_of  # nobody already in default
        assert label == int(default is not None and default < date(as_of.year + 1, as_of.month, 1))


def test_the_trained_model_ranks_the_planted_risk(trained: Trained) -> None:
    artefact = load_model(trained.models_root, "credit")
    model = artefact.model
    assert isinstance(model, CreditModel)
    assert model.metrics_["champion_oof_auc"] > 0.65
    assert model.metrics_["challenger_oof_auc"] > 0.65
    assert artefact.manifest.metrics["bads"] == model.metrics_["bads"]
    assert artefact.cases is not None
    assert len(artefact.cases) == model.metrics_["rows"]
    # the challenger's monotone constraints are the champion's trends
    constraints = model.challenger_.estimator_.monotone_constraints_  # type: ignore[union-attr]
    for name, trend in model.scorecard_.trends_.items():
        assert constraints.get(name, 0) == trend
    # the all-missing anomaly score (no anomaly model ran) is dropped, not an error
    assert "anomaly_score_mean_12m" in model.scorecard_.dropped_features_


def test_too_few_bads_is_a_model_error() -> None:
    X = np.arange(20, dtype=float).reshape(-1, 1)
    y = np.zeros(20, dtype=int)
    y[0] = 1
    with pytest.raises(ModelError):
        CreditModel(cv=2).fit(X, y)


def test_credit_model_passes_its_selection_rule_and_cohorts_to_the_scorecard(synthetic) -> None:
    X, y = synthetic
    X = X.assign(flip=np.random.default_rng(1).normal(size=len(X)))
    # "flip" ranks the first cohort one way and the second the other way
    cohort = np.where(np.arange(len(X)) < len(X) // 2, "2023-01", "2023-02")
    rank = np.where(cohort == "2023-01", 1.0, -1.0) * X["flip"].to_numpy()
    y = np.where(rank > 1.0, 1, np.where(rank < -1.0, 0, y))
    model = CreditModel(cv=2, max_items=2, C=0.05, challenger=False).fit(X, y, groups=cohort)
    card = model.scorecard_
    assert (card.max_items, card.C) == (2, 0.05)
    assert 1 <= len(card.weights_) <= 2
    assert "unstable" in card.dropped_features_["flip"]
    assert model.metrics_["selected_features"] == len(card.weights_)
    assert CreditModel().get_params()["max_items"] == 10
