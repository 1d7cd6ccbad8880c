"""ScorecardModel: binning, selection, weights, points formula, fast path, reasons, errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from flowbureau.errors import ModelInputError
from flowbureau.scoring import ScorecardModel, ScoreScaling


@pytest.fixture(scope="module")
def german_model(german) -> ScorecardModel:
    X, y = german
    return ScorecardModel().fit(X, y)


def test_german_selection_weights_and_fit(german, german_model: ScorecardModel) -> None:
    X, y = german
    model = german_model
    # the strongest variable of this data set is always in; weak ones are out with a reason
    assert "status_of_existing_checking_account" in model.weights_.index
    for name, why in model.dropped_features_.items():
        assert name not in model.weights_.index
        assert why
    for name in model.weights_.index:
        assert model.iv_[name] >= model.min_iv
    assert (model.weights_ <= 0).all()  # higher WoE (safer bin) never raises the PD
    assert set(model.points_table_["feature"]) == set(model.weights_.index)
    auc = roc_auc_score(y, model.predict_proba(X)[:, 1])
    assert auc > 0.8
    assert set(model.feature_kinds_.values()) == {"numerical", "categorical"}


def test_points_follow_the_documented_formula(german_model: ScorecardModel) -> None:
    model = german_model
    scaling = ScoreScaling(model.base_score, model.base_odds, model.pdo)
    n = len(model.weights_)
    table = model.points_table_
    raw = (
        -(table["woe"] * table["weight"] + model.intercept_ / n) * scaling.factor
        + scaling.offset / n
    )
    expected = [int(math.copysign(math.floor(abs(v) + 0.5), v)) for v in raw]
    assert table["points"].tolist() == expected


def test_score_is_scaled_logit_up_to_rounding(german, german_model: ScorecardModel) -> None:
    X, _ = german
    model = german_model
    scaling = ScoreScaling(model.base_score, model.base_odds, model.pdo)
    unrounded = scaling.score_from_log_odds_bad(model.decision_function(X))
    gap = np.abs(model.credit_score(X) - unrounded)
    assert gap.max() <= len(model.weights_) / 2
    # higher score, lower PD: perfectly rank-consistent up to the rounding
    pd_bad = model.predict_proba(X)[:, 1]
    assert np.corrcoef(model.credit_score(X), pd_bad)[0, 1] < -0.95
    assert np.allclose(model.predict_proba(X).sum(axis=1), 1.0)


def test_numerical_bins_are_monotonic(german_model: ScorecardModel) -> None:
    for _name, item in german_model.bins_.items():
        if item.kind != "numerical":
            continue
        regular = zip(item.event[: item.n_regular], item.count[: item.n_regular], strict=True)
        rates = [e / c for e, c in regular]
        steps = np.diff(rates)
        assert (steps >= -1e-12).all() or (steps <= 1e-12).all()


def test_score_one_equals_credit_score_on_every_row(german, german_model: ScorecardModel) -> None:
    X, _ = german
    expected = german_model.credit_score(X)
    got = [german_model.score_one(record) for record in X.to_dict("records")]
    assert got == expected.tolist()


def test_missing_special_unknown_and_edges(fitted_scorecard: ScorecardModel, synthetic) -> None:
    X, _ = synthetic
    model = fitted_scorecard
    table = model.points_table_.set_index(["feature", "bin"])["points"]
    record = X.iloc[0].to_dict()
    base_points = model.points(X.iloc[[0]]).iloc[0]

    def item_points(changes: dict[str, object], feature: str) -> int:
        frame = pd.DataFrame([{**record, **changes}]).astype({"region": "category"})
        one = model.score_one({**record, **changes})
        many = int(model.credit_score(frame)[0])
        assert one == many
        return one - int(base_points.sum()) + int(base_points[feature])

    assert item_points({"growth": np.nan}, "growth") == table[("growth", "Missing")]
    assert item_points({"growth": None}, "growth") == table[("growth", "Missing")]
    assert item_points({"overdue": -999.0}, "overdue") == table[("overdue", "Special")]
    assert item_points({"sector": "mining"}, "sector") == table[("sector", "Unknown")]
    assert item_points({"sector": None}, "sector") == table[("sector", "Missing")]
    item = model.bins_["cash_days"]
    labels = item.labels
    for i, edge in enumerate(item.edges):  # a value on an edge belongs to the bin on its right
        assert item_points({"cash_days": edge}, "cash_days") == table[("cash_days", labels[i + 1])]
        below = np.nextafter(edge, -np.inf)
        assert item_points({"cash_days": below}, "cash_days") == table[("cash_days", labels[i])]


def test_reasons_are_the_largest_point_losses(fitted_scorecard: ScorecardModel, synthetic) -> None:
    X, _ = synthetic
    model = fitted_scorecard
    rows = X.iloc[:50]
    points = model.points(rows)
    table = model.points_table_
    best = table[table["count"] > 0].groupby("feature")["points"].max()
    for (_, row_points), reasons in zip(points.iterrows(), model.reasons(rows, k=3), strict=True):
        losses = (best[row_points.index] - row_points).sort_values(ascending=False)
        positive = losses[losses > 0]
        assert [r.points_lost for r in reasons] == positive.iloc[:3].tolist()
        for reason in reasons:
            assert reason.points == row_points[reason.feature]
            assert reason.feature in reason.description
            assert reason.bin in reason.description
    everything = model.reasons(rows, k=len(model.weights_))
    for (_, row_points), reasons in zip(points.iterrows(), everything, strict=True):
        total_lost = sum(r.points_lost for r in reasons)
        assert total_lost == int((best[row_points.index] - row_points).sum())


def test_reason_as_dict_is_json_safe(fitted_scorecard: ScorecardModel, synthetic) -> None:
    import json

    X, _ = synthetic
    row = X.iloc[[0]].copy()
    row["growth"] = np.nan
    reasons = fitted_scorecard.reasons(row, k=10)[0]
    dumped = json.loads(json.dumps([r.as_dict() for r in reasons]))
    growth = [r for r in dumped if r["feature"] == "growth"]
    assert all(r["value"] is None for r in growth)


def test_numpy_input_and_feature_name_checks(synthetic) -> None:
    X, y = synthetic
    numeric = X[["cash_days", "growth"]].to_numpy()
    model = ScorecardModel().fit(numeric, y)
    assert not hasattr(model, "feature_names_in_")
    assert set(model.weights_.index) <= {"x0", "x1"}
    assert model.credit_score(numeric).shape == (len(X),)
    with pytest.raises(ModelInputError, match="X has 1 features"):
        model.credit_score(numeric[:, :1])


def test_errors_name_the_field_and_row(fitted_scorecard: ScorecardModel, synthetic) -> None:
    X, y = synthetic
    with pytest.raises(ModelInputError) as missing:
        fitted_scorecard.credit_score(X.drop(columns=["sector"]))
    assert missing.value.field == "sector"
    bad = X.iloc[:5].astype({"cash_days": object})
    bad.loc[bad.index[3], "cash_days"] = "lots"
    with pytest.raises(ModelInputError) as text:
        fitted_scorecard.credit_score(bad)
    assert (text.value.field, text.value.line) == ("cash_days", 4)
    record = X.iloc[0].to_dict()
    del record["growth"]
    with pytest.raises(ModelInputError) as absent:
        fitted_scorecard.score_one(record)
    assert absent.value.field == "growth"
    with pytest.raises(ModelInputError, match="0 \\(good\\) or 1 \\(bad\\)") as labels:
        ScorecardModel().fit(X, np.where(y == 1, 2, 1))
    assert labels.value.field == "y"
    with pytest.raises(ModelInputError, match="one class"):
        ScorecardModel().fit(X, np.zeros(len(X), dtype=int))
    with pytest.raises(NotFittedError):
        ScorecardModel().credit_score(X)
    with pytest.raises(ModelInputError, match="unknown feature"):
        ScorecardModel(monotonic_trends={"nope": "ascending"}).fit(X, y)


def test_min_iv_controls_selection(synthetic) -> None:
    X, y = synthetic
    strict = ScorecardModel(min_iv=0.2).fit(X, y)
    assert set(strict.weights_.index) == {n for n, iv in strict.iv_.items() if iv >= 0.2}
    assert "noise" in strict.dropped_features_
    nothing = ScorecardModel(min_iv=10.0).fit(X, y)
    assert nothing.weights_.empty
    expected = round(600 - 20 / math.log(2) * (math.log(50) + math.log(y.mean() / (1 - y.mean()))))
    assert nothing.credit_score(X.iloc[:3]).tolist() == [expected] * 3
    assert nothing.to_sql("t") == f'SELECT *, {expected} AS credit_score FROM "t"'


def test_trend_override_is_respected(synthetic) -> None:
    X, y = synthetic
    # cash_days lowers risk; forcing an ascending bad-rate trend leaves a flat (one-bin) item
    model = ScorecardModel(monotonic_trends={"cash_days": "ascending"}).fit(X, y)
    assert "cash_days" not in model.weights_.index or model.bins_["cash_days"].trend >= 0
    assert ScorecardModel().fit(X, y).trends_["cash_days"] == -1


def test_fit_is_deterministic(synthetic) -> None:
    X, y = synthetic
    a = ScorecardModel().fit(X, y)
    b = ScorecardModel().fit(X, y)
    pd.testing.assert_frame_equal(a.points_table_, b.points_table_)
    assert a.training_fingerprint_ == b.training_fingerprint_
    c = ScorecardModel().fit(X.iloc[1:], y[1:])
    assert c.training_fingerprint_ != a.training_fingerprint_


def test_wrong_sign_weights_are_dropped(german) -> None:
    X, y = german
    # no cap and no correlation pruning: every item enters, so the sign check has work to do
    free = {"max_items": None, "max_correlation": None}
    loose = ScorecardModel(min_iv=0.0, enforce_signs=False, **free).fit(X, y)
    wrong = set(loose.weights_[loose.weights_ > 0].index)
    assert wrong  # weak, collinear items do get the wrong sign on this data
    strict = ScorecardModel(min_iv=0.0, **free).fit(X, y)
    assert (strict.weights_ <= 0).all()
    signed_out = {n for n, why in strict.dropped_features_.items() if "wrong sign" in why}
    assert signed_out & wrong


def test_max_items_keeps_the_strongest_items(synthetic) -> None:
    X, y = synthetic
    free = ScorecardModel(min_iv=0.0, max_items=None, max_correlation=None).fit(X, y)
    assert len(free.selection_order_) > 2
    capped = ScorecardModel(min_iv=0.0, max_items=2, max_correlation=None).fit(X, y)
    ranked = sorted(free.selection_order_, key=lambda n: -free.iv_[n])
    assert capped.selection_order_ == ranked[:2]
    assert set(capped.weights_.index) <= set(ranked[:2])
    for name in ranked[2:]:
        assert "max_items" in capped.dropped_features_[name]
    # the points table, SQL and the fast path cover only the kept items
    assert set(capped.points_table_["feature"]) == set(capped.weights_.index)
    rows = X.iloc[:20]
    assert [capped.score_one(r) for r in rows.to_dict("records")] == (
        capped.credit_score(rows).tolist()
    )


def test_correlated_items_are_pruned(synthetic) -> None:
    X, y = synthetic
    X = X.assign(cash_copy=X["cash_days"] * 2.0 + 1.0)  # same ranking, same bins
    free = ScorecardModel(max_items=None, max_correlation=None, enforce_signs=False).fit(X, y)
    assert {"cash_days", "cash_copy"} <= set(free.weights_.index)
    pruned = ScorecardModel(max_items=None, max_correlation=0.7).fit(X, y)
    kept = {"cash_days", "cash_copy"} & set(pruned.weights_.index)
    assert len(kept) == 1
    (gone,) = {"cash_days", "cash_copy"} - kept
    assert "correlation" in pruned.dropped_features_[gone]
    assert repr(kept.pop()) in pruned.dropped_features_[gone]


def _flipping_feature(n: int = 1200, seed: int = 5) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """``flip`` ranks cohort A strongly, cohort B the other way; ``steady`` ranks both."""
    rng = np.random.default_rng(seed)
    group = np.where(np.arange(n) < 2 * n // 3, "A", "B")
    steady = rng.normal(size=n)
    flip = rng.normal(size=n)
    sign = np.where(group == "A", 1.5, -0.8)
    logit = -1.0 + 1.0 * steady + sign * flip
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"steady": steady, "flip": flip}), y, group


def test_items_that_reverse_in_a_group_are_dropped() -> None:
    X, y, group = _flipping_feature()
    plain = ScorecardModel().fit(X, y)
    assert "flip" in plain.weights_.index  # pooled, it looks useful
    assert plain.group_auc_ == {}
    stable = ScorecardModel().fit(X, y, groups=group)
    assert "flip" not in stable.weights_.index
    assert "unstable" in stable.dropped_features_["flip"]
    assert "group B" in stable.dropped_features_["flip"]
    assert stable.group_auc_["flip"]["B"] < 0.5 < stable.group_auc_["flip"]["A"]
    assert "steady" in stable.weights_.index
    assert min(stable.group_auc_["steady"].values()) > 0.5
    # a group with too few bads is not judged
    few = ScorecardModel(min_group_bads=10_000).fit(X, y, groups=group)
    assert "flip" in few.weights_.index
    assert few.group_auc_["flip"] == {}


def test_selection_parameters_are_checked(synthetic) -> None:
    X, y = synthetic
    with pytest.raises(ModelInputError, match="max_items"):
        ScorecardModel(max_items=0).fit(X, y)
    with pytest.raises(ModelInputError, match="max_correlation"):
        ScorecardModel(max_correlation=1.5).fit(X, y)
    with pytest.raises(ModelInputError, match="min_group_bads"):
        ScorecardModel(min_group_bads=0).fit(X, y)
    with pytest.raises(ModelInputError, match="one label per row"):
        ScorecardModel().fit(X, y, groups=["a"] * 3)
