"""PD calibration on out-of-fold scores, grades, and the one-record rating path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from flowbureau.errors import ModelInputError
from flowbureau.scoring import (
    CalibratedModel,
    ChallengerModel,
    MasterScale,
    PDCalibrator,
    ScorecardModel,
)
from flowbureau.scoring.calibration import BASEL_PD_FLOOR


@pytest.fixture(scope="module")
def calibrated(synthetic) -> CalibratedModel:
    X, y = synthetic
    return CalibratedModel(ScorecardModel(special_codes=[-999.0]), cv=4).fit(X, y)


def test_calibrator_sees_only_out_of_fold_scores(calibrated: CalibratedModel, synthetic) -> None:
    X, y = synthetic
    expected = np.empty(len(X))
    folds = StratifiedKFold(n_splits=4, shuffle=True, random_state=0)
    for train, test in folds.split(X, y):
        model = clone(calibrated.estimator).fit(X.iloc[train], y[train])
        expected[test] = model.credit_score(X.iloc[test])
    np.testing.assert_array_equal(calibrated.oof_score_, expected)
    in_sample = calibrated.estimator_.credit_score(X)
    assert not np.array_equal(in_sample, calibrated.oof_score_)


def test_pd_is_a_non_increasing_function_of_score(calibrated: CalibratedModel, synthetic) -> None:
    X, y = synthetic
    rated = calibrated.rate(X)
    ordered = rated.sort_values("score")
    assert (np.diff(ordered["pd"].to_numpy()) <= 1e-15).all()
    ranks = ordered["grade"].map({g: i for i, g in enumerate(calibrated.scale_.names)})
    assert (np.diff(ranks.to_numpy()) <= 0).all()  # a higher score never gets a worse grade
    assert ((rated["pd"] >= BASEL_PD_FLOOR) & (rated["pd"] <= 1 - BASEL_PD_FLOOR)).all()
    # same score, same PD
    assert (rated.groupby("score")["pd"].nunique() == 1).all()
    # calibrated in the large: mean PD close to the bad rate
    assert abs(rated["pd"].mean() - y.mean()) < 0.03


def test_predict_proba_and_grade_agree_with_rate(calibrated: CalibratedModel, synthetic) -> None:
    X, _ = synthetic
    rated = calibrated.rate(X.iloc[:20])
    np.testing.assert_allclose(calibrated.predict_proba(X.iloc[:20])[:, 1], rated["pd"])
    assert calibrated.grade(X.iloc[:20]).tolist() == rated["grade"].tolist()


def test_rate_one_matches_rate(calibrated: CalibratedModel, synthetic) -> None:
    X, _ = synthetic
    rated = calibrated.rate(X.iloc[:30])
    for record, (_, row) in zip(X.iloc[:30].to_dict("records"), rated.iterrows(), strict=True):
        one = calibrated.rate_one(record)
        assert (one.score, one.grade) == (row["score"], row["grade"])
        assert one.pd == pytest.approx(row["pd"], rel=1e-12)


def test_platt_is_strictly_decreasing_and_configurable(synthetic) -> None:
    X, y = synthetic
    scale = MasterScale([("low", 0.2), ("mid", 0.5), ("high", 1.0)])
    model = CalibratedModel(
        ChallengerModel(n_estimators=40), method="platt", cv=3, scale=scale
    ).fit(X, y)
    assert model.calibrator_.slope_ < 0
    grid = np.arange(model.oof_score_.min(), model.oof_score_.max(), 5)
    curve = model.calibrator_.predict(grid)
    inside = (curve > BASEL_PD_FLOOR) & (curve < 1 - BASEL_PD_FLOOR)
    assert inside.sum() > 10
    assert (np.diff(curve[inside]) < 0).all()
    assert set(model.grade(X)) <= {"low", "mid", "high"}
    one = model.rate_one(X.iloc[0].to_dict())  # no score_one: one-row frame path
    assert one.score == int(model.credit_score(X.iloc[[0]])[0])


def test_calibrator_rejects_bad_settings() -> None:
    scores = np.array([500, 520, 540, 560, 580, 600])
    with pytest.raises(ModelInputError, match="method"):
        PDCalibrator(method="beta").fit(scores, [1, 1, 0, 1, 0, 0])
    with pytest.raises(ModelInputError, match="rank risk"):
        PDCalibrator(method="platt").fit(scores, [0, 0, 0, 1, 1, 1])
    with pytest.raises(ModelInputError, match="pd_floor"):
        PDCalibrator(pd_floor=0.7).fit(scores, [1, 1, 0, 1, 0, 0])
    with pytest.raises(ModelInputError, match="cv"):
        CalibratedModel(cv=1).fit(pd.DataFrame({"a": [1.0, 2.0]}), [0, 1])


def test_isotonic_is_constant_beyond_the_data() -> None:
    scores = np.array([500, 510, 520, 530, 540, 550, 560, 570])
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    calibrator = PDCalibrator().fit(scores, y)
    low, high = calibrator.predict([0, 2000])
    assert low == calibrator.predict([500])[0]
    assert high == calibrator.predict([570])[0]
    assert low == 1 - BASEL_PD_FLOOR
    assert high == BASEL_PD_FLOOR
    assert calibrator.pd_one(515.0) == pytest.approx(calibrator.predict([515.0])[0])


def test_groups_reach_every_fold_and_the_final_fit() -> None:
    rng = np.random.default_rng(5)
    n = 1200
    group = np.where(np.arange(n) < 2 * n // 3, "A", "B")
    steady, flip = rng.normal(size=n), rng.normal(size=n)
    logit = -1.0 + steady + np.where(group == "A", 1.5, -0.8) * flip
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    X = pd.DataFrame({"steady": steady, "flip": flip})
    plain = CalibratedModel(ScorecardModel(), cv=3).fit(X, y)
    assert "flip" in plain.estimator_.weights_.index
    grouped = CalibratedModel(ScorecardModel(), cv=3).fit(X, y, groups=group)
    assert "flip" not in grouped.estimator_.weights_.index
    assert "unstable" in grouped.estimator_.dropped_features_["flip"]
    # the out-of-fold scores come from fold models that got their rows' groups too
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    for train, test in folds.split(X, y):
        fold = ScorecardModel().fit(X.iloc[train], y[train], groups=group[train])
        assert np.array_equal(grouped.oof_score_[test], fold.credit_score(X.iloc[test]))
    with pytest.raises(ModelInputError, match="one label per row"):
        CalibratedModel(ScorecardModel(), cv=3).fit(X, y, groups=group[:5])
