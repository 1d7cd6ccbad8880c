"""Versioned artefacts: identical scores after reload, manifest contents, refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from flowbureau.errors import InputError, IntegrityError, ModelError, NotFoundError
from flowbureau.scoring import (
    CalibratedModel,
    CaseLibrary,
    ChallengerModel,
    ScorecardModel,
    list_versions,
    load_model,
    save_model,
)
from flowbureau.scoring.artefacts import MANIFEST_FILE, MODEL_FILE


@pytest.mark.parametrize(
    "make",
    [lambda: ScorecardModel(special_codes=[-999.0]), lambda: ChallengerModel(n_estimators=30)],
)
def test_reloaded_model_gives_identical_scores(make, synthetic, tmp_path: Path) -> None:
    X, y = synthetic
    model = make().fit(X, y)
    saved = save_model(model, tmp_path, "champion", metrics={"auc": 0.81})
    loaded = load_model(tmp_path, "champion")
    np.testing.assert_array_equal(loaded.model.credit_score(X), model.credit_score(X))
    np.testing.assert_array_equal(loaded.model.predict_proba(X), model.predict_proba(X))
    assert loaded.manifest == saved.manifest
    assert loaded.path == tmp_path / "champion" / "v0001"


def test_manifest_records_what_was_trained(fitted_scorecard, tmp_path: Path) -> None:
    saved = save_model(fitted_scorecard, tmp_path, "card", metrics={"auc": 0.8, "ks": 0.45})
    raw = json.loads((saved.path / MANIFEST_FILE).read_text())
    assert raw["format_version"] == 1
    assert raw["training_fingerprint"] == fitted_scorecard.training_fingerprint_
    assert raw["model_class"] == "flowbureau.scoring.scorecard.ScorecardModel"
    assert raw["params"]["special_codes"] == [-999.0]
    assert raw["params"]["pdo"] == 20.0
    assert raw["metrics"] == {"auc": 0.8, "ks": 0.45}
    assert raw["features"] == list(fitted_scorecard.feature_names_in_)
    assert raw["library_versions"]["scikit-learn"]
    assert set(raw["files"]) == {MODEL_FILE}
    assert datetime.fromisoformat(raw["created_at"]).tzinfo is not None


def test_versions_increase_and_never_overwrite(fitted_scorecard, synthetic, tmp_path: Path) -> None:
    X, y = synthetic
    first = save_model(fitted_scorecard, tmp_path, "card")
    other = ScorecardModel(min_iv=0.1).fit(X, y)
    second = save_model(other, tmp_path, "card")
    assert (first.manifest.version, second.manifest.version) == (1, 2)
    assert list_versions(tmp_path, "card") == [1, 2]
    old = load_model(tmp_path, "card", version=1).model
    np.testing.assert_array_equal(old.credit_score(X), fitted_scorecard.credit_score(X))
    assert load_model(tmp_path, "card").manifest.params["min_iv"] == 0.1
    assert not [p for p in (tmp_path / "card").iterdir() if p.name.startswith(".")]


def test_calibrated_model_with_cases_round_trips(synthetic, tmp_path: Path) -> None:
    X, y = synthetic
    model = CalibratedModel(cv=3).fit(X, y)
    cases = CaseLibrary(["cash_days", "growth"])
    cases.add("c1", {"cash_days": 10.0, "growth": None}, datetime(2025, 1, 1, tzinfo=UTC))
    saved = save_model(model, tmp_path, "rated", cases=cases)
    loaded = load_model(tmp_path, "rated")
    assert loaded.manifest.params["estimator"] is None
    assert loaded.cases is not None
    assert len(loaded.cases) == 1
    assert loaded.model.rate(X).equals(model.rate(X))
    assert saved.manifest.files.keys() == {"model.joblib", "cases.parquet"}


def test_tampered_or_foreign_artefacts_are_refused(fitted_scorecard, tmp_path: Path) -> None:
    saved = save_model(fitted_scorecard, tmp_path, "card")
    with (saved.path / MODEL_FILE).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(IntegrityError, match="SHA-256"):
        load_model(tmp_path, "card")

    saved = save_model(fitted_scorecard, tmp_path, "other")
    manifest_path = saved.path / MANIFEST_FILE
    original = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**original, "training_fingerprint": "0" * 64}))
    with pytest.raises(IntegrityError, match="fingerprint"):
        load_model(tmp_path, "other")

    drifted = {**original, "library_versions": {**original["library_versions"], "lightgbm": "0.1"}}
    manifest_path.write_text(json.dumps(drifted))
    with pytest.raises(ModelError, match="lightgbm"):
        load_model(tmp_path, "other")
    assert load_model(tmp_path, "other", allow_version_drift=True).model is not None

    manifest_path.write_text(json.dumps({**original, "format_version": 99}))
    with pytest.raises(ModelError, match="format"):
        load_model(tmp_path, "other")
    manifest_path.write_text("{not json")
    with pytest.raises(InputError) as err:
        load_model(tmp_path, "other")
    assert err.value.file == str(manifest_path)


def test_refusals_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not fitted"):
        save_model(ScorecardModel(), tmp_path, "card")
    with pytest.raises(InputError, match="model name"):
        list_versions(tmp_path, "../escape")
    with pytest.raises(NotFoundError):
        load_model(tmp_path, "absent")
    assert not any(tmp_path.iterdir())


def test_unknown_version_is_not_found(fitted_scorecard, tmp_path: Path) -> None:
    save_model(fitted_scorecard, tmp_path, "card")
    with pytest.raises(NotFoundError, match="no version 7"):
        load_model(tmp_path, "card", version=7)
    with pytest.raises(InputError, match="metric"):
        save_model(fitted_scorecard, tmp_path, "card", metrics={"auc": float("nan")})
    assert list_versions(tmp_path, "card") == [1]
