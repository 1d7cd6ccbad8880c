"""ChallengerModel: monotone constraints, determinism, categories, SHAP reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from flowbureau.errors import ModelInputError
from flowbureau.scoring import ChallengerModel, ScorecardModel, ScoreScaling


@pytest.fixture(scope="module")
def challenger(synthetic) -> ChallengerModel:
    X, y = synthetic
    return ChallengerModel(n_estimators=80).fit(X, y)


def test_constraints_come_from_the_binning_trends(challenger: ChallengerModel) -> None:
    constraints = challenger.monotone_constraints_
    assert constraints["cash_days"] == -1  # more cash, less risk
    assert constraints["growth"] == -1
    assert constraints["overdue"] == 1  # more overdue events, more risk
    assert constraints["noise"] == 0  # below min_iv: left free
    assert "sector" not in constraints


def test_predictions_respect_the_constraints(challenger: ChallengerModel, synthetic) -> None:
    X, _ = synthetic
    base = X.iloc[:25]
    for feature, sign in (("cash_days", -1), ("overdue", 1), ("growth", -1)):
        grid = np.linspace(X[feature].quantile(0.01), X[feature].quantile(0.99), 25)
        if feature == "overdue":
            grid = np.arange(0, 8, dtype=float)
        curves = []
        for value in grid:
            varied = base.copy()
            varied[feature] = value
            curves.append(challenger.decision_function(varied))
        steps = np.diff(np.vstack(curves), axis=0)
        assert (sign * steps >= -1e-12).all(), feature


def test_unconstrained_model_breaks_monotonicity_somewhere(synthetic) -> None:
    """The constraint test above can fail: without constraints the noise shows."""
    X, y = synthetic
    free = ChallengerModel(n_estimators=80, monotone_constraints=None, num_leaves=31).fit(X, y)
    base = X.iloc[:25]
    grid = np.linspace(X["cash_days"].quantile(0.01), X["cash_days"].quantile(0.99), 25)
    curves = []
    for value in grid:
        varied = base.copy()
        varied["cash_days"] = value
        curves.append(free.decision_function(varied))
    assert (np.diff(np.vstack(curves), axis=0) > 1e-9).any()


def test_explicit_constraints_from_a_scorecard(synthetic, fitted_scorecard: ScorecardModel) -> None:
    X, y = synthetic
    model = ChallengerModel(n_estimators=20, monotone_constraints=fitted_scorecard.trends_)
    model.fit(X, y)
    assert model.monotone_constraints_ == fitted_scorecard.trends_
    with pytest.raises(ModelInputError, match="categorical"):
        ChallengerModel(monotone_constraints={"sector": 1}).fit(X, y)
    with pytest.raises(ModelInputError):
        ChallengerModel(monotone_constraints={"cash_days": 2}).fit(X, y)
    with pytest.raises(ModelInputError):
        ChallengerModel(monotone_constraints="guess").fit(X, y)


def test_deterministic_for_a_seed(synthetic) -> None:
    X, y = synthetic
    a = ChallengerModel(n_estimators=30, random_state=5).fit(X, y).predict_proba(X)
    b = ChallengerModel(n_estimators=30, random_state=5).fit(X, y).predict_proba(X)
    c = ChallengerModel(n_estimators=30, random_state=6).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_scores_and_quality(challenger: ChallengerModel, synthetic) -> None:
    X, y = synthetic
    pd_bad = challenger.predict_proba(X)[:, 1]
    assert roc_auc_score(y, pd_bad) > 0.75
    scaling = ScoreScaling()
    expected = np.rint(scaling.score(pd_bad))
    assert np.abs(challenger.credit_score(X) - expected).max() <= 1


def test_unseen_category_is_treated_as_missing(challenger: ChallengerModel, synthetic) -> None:
    X, _ = synthetic
    unseen = X.iloc[:5].copy()
    unseen["sector"] = "mining"
    missing = X.iloc[:5].copy()
    missing["sector"] = None
    np.testing.assert_allclose(
        challenger.decision_function(unseen), challenger.decision_function(missing)
    )


def test_shap_reasons_explain_the_log_odds(challenger: ChallengerModel, synthetic) -> None:
    X, _ = synthetic
    rows = X.iloc[:20]
    shap = challenger.shap_values(rows)
    raw = challenger.decision_function(rows)
    # SHAP values plus a common base value add up to the log-odds of every row
    base = raw - shap.sum(axis=1).to_numpy()
    np.testing.assert_allclose(base, base[0], atol=1e-6)
    factor = ScoreScaling().factor
    for (_, row), reasons in zip(shap.iterrows(), challenger.reasons(rows, k=2), strict=True):
        pushing = (row[row > 0] * factor).sort_values(ascending=False)
        assert [r.feature for r in reasons] == pushing.index[:2].tolist()
        for reason in reasons:
            assert reason.points_lost == pytest.approx(pushing[reason.feature], abs=0.01)
            assert reason.points == -reason.points_lost


def test_missing_column_is_named(challenger: ChallengerModel, synthetic) -> None:
    X, _ = synthetic
    with pytest.raises(ModelInputError) as err:
        challenger.predict_proba(X.drop(columns=["growth"]))
    assert err.value.field == "growth"
    with pytest.raises(ModelInputError, match="k must be"):
        challenger.reasons(X.iloc[:1], k=0)


def test_german_credit_categoricals(german) -> None:
    X, y = german
    model = ChallengerModel(n_estimators=50).fit(X.iloc[:800], y[:800])
    assert len(model.categories_) == int((X.dtypes != np.int64).sum())
    auc = roc_auc_score(y[800:], model.predict_proba(X.iloc[800:])[:, 1])
    assert auc > 0.7
    assert isinstance(model.reasons(X.iloc[800:801])[0], list)
    assert pd.Series(model.monotone_constraints_).isin([-1, 0, 1]).all()
