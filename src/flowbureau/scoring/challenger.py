"""The challenger credit model: LightGBM with monotone constraints and SHAP reason codes.

Rules:
- Numerical features are used as they are (NaN = missing, LightGBM's own handling).
  Categorical features (object/string/category dtype) are compared as text and become a
  pandas Categorical over the categories seen in training; an unseen category is treated as
  missing.
- Monotone constraints (on the log-odds of bad, per numerical feature): ``"binning"`` derives
  them from the same monotonic WoE binning the scorecard uses: +1 where the bad rate rises with
  the value, -1 where it falls, 0 (free) where the feature's information value is below
  ``min_iv`` or it has a single bin. A mapping gives them explicitly (e.g. a fitted
  scorecard's ``trends_``); ``None`` means no constraints.
- Deterministic for a given ``random_state`` (LightGBM ``deterministic=True``, column-wise
  histograms); ``n_jobs`` threads (default 2).
- Scaling: ``credit_score = round_half_away(offset - factor * log_odds_bad)`` with the same
  ``base_score`` / ``base_odds`` / ``pdo`` scaling as the scorecard.
- Reasons: SHAP values from ``shap.TreeExplainer`` on the booster (log-odds of bad) times
  ``factor``, i.e. in score points; the features pushing hardest towards bad come first.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from flowbureau.errors import ModelError, ModelInputError
from flowbureau.scoring._binning import fit_item
from flowbureau.scoring._frame import (
    CreditClassifierMixin,
    column_kind,
    fingerprint,
    numeric_column,
    select_features,
)
from flowbureau.scoring.reasons import Reason, json_safe
from flowbureau.scoring.scale import ScoreScaling


class ChallengerModel(CreditClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Gradient-boosted trees (LightGBM) with monotone constraints and SHAP reasons."""

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 8,
        min_child_samples: int = 20,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        monotone_constraints: Mapping[str, int] | str | None = "binning",
        min_iv: float = 0.02,
        base_score: float = 600.0,
        base_odds: float = 50.0,
        pdo: float = 20.0,
        random_state: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.monotone_constraints = monotone_constraints
        self.min_iv = min_iv
        self.base_score = base_score
        self.base_odds = base_odds
        self.pdo = pdo
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any) -> ChallengerModel:
        """Derive the constraints, encode categories and train the booster."""
        import lightgbm

        frame, target = self._fit_input(X, y)
        kinds = {name: column_kind(frame[name]) for name in frame.columns}
        self.categories_ = {
            name: sorted({str(v) for v in frame[name].dropna()})
            for name, kind in kinds.items()
            if kind == "categorical"
        }
        self.monotone_constraints_ = self._constraints(frame, target, kinds)
        encoded = self._encode(frame)
        model = lightgbm.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=self.subsample,
            subsample_freq=1 if self.subsample < 1.0 else 0,
            colsample_bytree=self.colsample_bytree,
            reg_lambda=self.reg_lambda,
            monotone_constraints=[self.monotone_constraints_.get(n, 0) for n in frame.columns],
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        )
        try:
            model.fit(encoded, target)
        except lightgbm.basic.LightGBMError as exc:
            raise ModelError(f"LightGBM training failed: {exc}") from exc
        self.booster_ = model.booster_
        self.training_fingerprint_ = fingerprint(frame, target)
        return self

    def _constraints(
        self, frame: pd.DataFrame, target: npt.NDArray[np.int_], kinds: Mapping[str, str]
    ) -> dict[str, int]:
        given = self.monotone_constraints
        if given is None:
            return {}
        if isinstance(given, str):
            if given != "binning":
                raise ModelInputError(
                    f"monotone_constraints must be 'binning', a mapping or None, not {given!r}",
                    field="monotone_constraints",
                )
            out = {}
            for name, kind in kinds.items():
                if kind != "numerical":
                    continue
                item = fit_item(
                    name,
                    pd.Series(numeric_column(frame[name]), name=name),
                    target,
                    kind="numerical",
                    monotonic_trend="auto_asc_desc",
                    max_n_bins=None,
                    min_bin_size=0.05,
                    special_codes=(),
                )
                out[name] = item.trend if item.iv >= self.min_iv else 0
            return out
        constraints = {str(k): int(v) for k, v in given.items()}
        for name, value in constraints.items():
            if name not in kinds or value not in (-1, 0, 1):
                raise ModelInputError(
                    f"monotone constraint {name!r}: {value} must name a feature and be -1, 0 or 1",
                    field="monotone_constraints",
                )
            if value and kinds[name] != "numerical":
                raise ModelInputError(
                    f"monotone constraint on categorical feature {name!r} is meaningless",
                    field="monotone_constraints",
                )
        return constraints

    def _encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        columns: dict[str, Any] = {}
        for name in frame.columns:
            if name in self.categories_:
                known = set(self.categories_[name])
                text = [
                    None if pd.isna(v) or str(v) not in known else str(v)
                    for v in frame[name].astype(object)
                ]
                columns[name] = pd.Categorical(text, categories=self.categories_[name])
            else:
                columns[name] = numeric_column(frame[name])
        return pd.DataFrame(columns, index=frame.index)

    def _features(self, X: Any) -> pd.DataFrame:
        check_is_fitted(self, "booster_")
        names = [str(n) for n in getattr(self, "feature_names_in_", [])] or [
            f"x{i}" for i in range(self.n_features_in_)
        ]
        return select_features(
            X,
            names,
            fitted_with_names=hasattr(self, "feature_names_in_"),
            model=type(self).__name__,
        )

    def decision_function(self, X: Any) -> npt.NDArray[np.float64]:
        """Log-odds of bad (the booster's raw score)."""
        encoded = self._encode(self._features(X))
        return np.asarray(self.booster_.predict(encoded, raw_score=True), dtype=np.float64)

    def predict_proba(self, X: Any) -> npt.NDArray[np.float64]:
        """``[P(good), P(bad)]`` per row; column 1 is the PD."""
        pd_bad = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - pd_bad, pd_bad])

    def predict(self, X: Any) -> npt.NDArray[np.int_]:
        """1 (bad) where the PD is at least 0.5; use ``predict_proba`` for decisions."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int_)

    def credit_score(self, X: Any) -> npt.NDArray[np.int64]:
        """Integer score on the same scaling as the scorecard (higher = safer)."""
        scaling = ScoreScaling(self.base_score, self.base_odds, self.pdo)
        raw = scaling.score_from_log_odds_bad(self.decision_function(X))
        return (np.sign(raw) * np.floor(np.abs(raw) + 0.5)).astype(np.int64)

    def shap_values(self, X: Any) -> pd.DataFrame:
        """SHAP contribution of every feature to the log-odds of bad, per row."""
        with warnings.catch_warnings():
            # shap's plotting colour maps use a matplotlib call slated for deprecation
            warnings.filterwarnings(
                "ignore", category=PendingDeprecationWarning, module=r"shap\.plots"
            )
            import shap

        frame = self._features(X)
        explainer = shap.TreeExplainer(self.booster_)
        with warnings.catch_warnings():
            # shap notes that its LightGBM output layout changed; we pass the booster and
            # read the documented (n_rows, n_features) log-odds array.
            warnings.filterwarnings(
                "ignore",
                message="LightGBM binary classifier with TreeExplainer",
                category=UserWarning,
            )
            values = explainer.shap_values(self._encode(frame))
        array = np.asarray(values, dtype=np.float64)
        if array.ndim == 3:  # older layout: one array per class
            array = array[-1]
        return pd.DataFrame(array, index=frame.index, columns=frame.columns)

    def reasons(self, X: Any, k: int = 4) -> list[list[Reason]]:
        """Per row, the ``k`` features whose SHAP values push the score down the most."""
        if k < 1:
            raise ModelInputError(f"k must be at least 1, got {k}", field="k")
        frame = self._features(X)
        factor = ScoreScaling(self.base_score, self.base_odds, self.pdo).factor
        lost = self.shap_values(frame).to_numpy() * factor
        order = np.argsort(-lost, axis=1, kind="stable")[:, :k]
        names = list(frame.columns)
        out: list[list[Reason]] = []
        for row in range(len(frame)):
            reasons = []
            for j in order[row]:
                if lost[row, j] <= 0:
                    break
                value = json_safe(frame.iloc[row, j])
                points = round(float(lost[row, j]), 2)
                reasons.append(
                    Reason(
                        feature=names[j],
                        value=value,
                        bin="",
                        points=-points,
                        points_lost=points,
                        description=f"{names[j]} = {value!r} costs {points:g} points",
                    )
                )
            out.append(reasons)
        return out
