"""Calibration of credit scores to PDs, and the rating (score, PD, grade) of a record.

Rules:
- The calibrator maps a model's *credit score* (higher = safer) to a PD, so the PD is a
  function of the score the analyst sees: equal scores get equal PDs and a higher score never
  gets a higher PD (hence never a worse grade).
- ``isotonic``: non-increasing isotonic regression of the outcome on the score (linear
  between its thresholds, constant beyond them). ``platt``: logistic regression of the
  outcome on the score, ``logit(PD) = a + b * score`` (Platt 1999), with ``b < 0``.
- PDs are clipped to ``[pd_floor, 1 - pd_floor]``; the default floor 0.03% is the Basel
  minimum PD for corporate exposures (CRR Art. 160(1)), so no record is ever "riskless".
- :class:`CalibratedModel` fits the calibrator on *out-of-fold* scores (stratified K-fold, the
  model refitted on each training part), then refits the model on all the data, as
  scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does; the calibrator never sees
  scores of records the model was trained on.
- The grade comes from the calibrated PD on the master scale (:mod:`flowbureau.scoring.scale`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from flowbureau.errors import ModelInputError
from flowbureau.scoring._frame import (
    CreditClassifierMixin,
    as_frame,
    binary_target,
    group_labels,
)
from flowbureau.scoring.reasons import Reason
from flowbureau.scoring.scale import MasterScale
from flowbureau.scoring.scorecard import ScorecardModel

BASEL_PD_FLOOR = 0.0003
"""Minimum PD for corporate exposures under the CRR (Art. 160(1)): 0.03%."""


class PDCalibrator(BaseEstimator):  # type: ignore[misc]
    """Monotone map from credit score (higher = safer) to PD: isotonic or Platt."""

    def __init__(
        self, method: Literal["isotonic", "platt"] = "isotonic", pd_floor: float = BASEL_PD_FLOOR
    ) -> None:
        self.method = method
        self.pd_floor = pd_floor

    def fit(self, score: npt.ArrayLike, y: npt.ArrayLike) -> PDCalibrator:
        """Fit on scores and outcomes (1 = bad)."""
        s = np.asarray(score, dtype=np.float64).ravel()
        target = binary_target(y, len(s))
        if not 0.0 <= self.pd_floor < 0.5:
            raise ModelInputError(f"pd_floor {self.pd_floor} not in [0, 0.5)", field="pd_floor")
        if self.method == "isotonic":
            iso = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(s, target)
            self.thresholds_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self.pd_at_thresholds_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        elif self.method == "platt":
            centre, spread = float(s.mean()), float(s.std()) or 1.0
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(
                ((s - centre) / spread)[:, None], target
            )
            self.slope_ = float(lr.coef_[0, 0]) / spread
            self.intercept_ = float(lr.intercept_[0]) - self.slope_ * centre
            if self.slope_ >= 0:
                raise ModelInputError(
                    "scores do not rank risk (a higher score does not mean a lower bad rate); "
                    "Platt calibration would invert them",
                    field="score",
                )
        else:
            raise ModelInputError(
                f"method must be 'isotonic' or 'platt', not {self.method!r}", field="method"
            )
        return self

    def predict(self, score: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """PD of each score."""
        s = np.asarray(score, dtype=np.float64)
        if self.method == "isotonic":
            check_is_fitted(self, "thresholds_")
            pd_bad = np.interp(s, self.thresholds_, self.pd_at_thresholds_)
        else:
            check_is_fitted(self, "slope_")
            pd_bad = 1.0 / (1.0 + np.exp(-(self.intercept_ + self.slope_ * s)))
        return np.clip(pd_bad, self.pd_floor, 1.0 - self.pd_floor)

    def pd_one(self, score: float) -> float:
        """PD of one score (same numbers as :meth:`predict`)."""
        if self.method == "isotonic":
            pd_bad = float(np.interp(score, self.thresholds_, self.pd_at_thresholds_))
        else:
            pd_bad = 1.0 / (1.0 + math.exp(-(self.intercept_ + self.slope_ * score)))
        return min(max(pd_bad, self.pd_floor), 1.0 - self.pd_floor)


@dataclass(frozen=True, slots=True)
class Rating:
    """A record's rating: integer score, calibrated PD and master-scale grade."""

    score: int
    pd: float
    grade: str


class CalibratedModel(CreditClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A credit model (scorecard by default) with an out-of-fold PD calibration and grades."""

    def __init__(
        self,
        estimator: Any = None,
        *,
        method: Literal["isotonic", "platt"] = "isotonic",
        cv: int = 5,
        pd_floor: float = BASEL_PD_FLOOR,
        scale: MasterScale | None = None,
        random_state: int = 0,
    ) -> None:
        self.estimator = estimator
        self.method = method
        self.cv = cv
        self.pd_floor = pd_floor
        self.scale = scale
        self.random_state = random_state

    def fit(self, X: Any, y: Any, groups: Any = None) -> CalibratedModel:
        """Out-of-fold scores -> calibrator; then the model refitted on all rows.

        ``groups`` (optional, one label per row, e.g. the cohort date) is passed on to the
        estimator's ``fit`` (the rows of each fold with theirs); the scorecard uses it for
        its stability check.
        """
        frame = as_frame(X)
        target = binary_target(y, len(frame))
        labels = group_labels(groups, len(frame))
        if self.cv < 2:
            raise ModelInputError(f"cv must be at least 2, got {self.cv}", field="cv")
        base = ScorecardModel() if self.estimator is None else self.estimator
        oof = np.empty(len(frame), dtype=np.float64)
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        for train, test in folds.split(frame, target):
            extra = {} if labels is None else {"groups": labels[train]}
            model = clone(base).fit(frame.iloc[train], target[train], **extra)
            oof[test] = model.credit_score(frame.iloc[test])
        self.oof_score_ = oof
        self.calibrator_ = PDCalibrator(self.method, self.pd_floor).fit(oof, target)
        extra = {} if labels is None else {"groups": labels}
        self.estimator_ = clone(base).fit(
            X if isinstance(X, pd.DataFrame) else frame, target, **extra
        )
        self.scale_ = self.scale or MasterScale()
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = self.estimator_.n_features_in_
        if hasattr(self.estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.estimator_.feature_names_in_
        self.training_fingerprint_ = self.estimator_.training_fingerprint_
        return self

    def credit_score(self, X: Any) -> npt.NDArray[np.int64]:
        """The model's integer credit score."""
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.credit_score(X), dtype=np.int64)

    def predict_proba(self, X: Any) -> npt.NDArray[np.float64]:
        """``[P(good), P(bad)]`` with the calibrated PD in column 1."""
        pd_bad = self.calibrator_.predict(self.credit_score(X))
        return np.column_stack([1.0 - pd_bad, pd_bad])

    def predict(self, X: Any) -> npt.NDArray[np.int_]:
        """1 (bad) where the calibrated PD is at least 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int_)

    def grade(self, X: Any) -> npt.NDArray[np.str_]:
        """Master-scale grade of each row, from its calibrated PD."""
        return self.scale_.grades_for_pd(self.predict_proba(X)[:, 1])

    def rate(self, X: Any) -> pd.DataFrame:
        """Score, calibrated PD and grade of each row."""
        frame = as_frame(X)
        score = self.credit_score(X)
        pd_bad = self.calibrator_.predict(score)
        return pd.DataFrame(
            {"score": score, "pd": pd_bad, "grade": self.scale_.grades_for_pd(pd_bad)},
            index=frame.index,
        )

    def rate_one(self, record: Mapping[str, Any]) -> Rating:
        """Rating of one record; uses the model's ``score_one`` fast path when it has one."""
        check_is_fitted(self, "estimator_")
        if hasattr(self.estimator_, "score_one"):
            score = int(self.estimator_.score_one(record))
        else:
            score = int(self.estimator_.credit_score(pd.DataFrame([dict(record)]))[0])
        pd_bad = self.calibrator_.pd_one(score)
        return Rating(score=score, pd=pd_bad, grade=self.scale_.grade_for_pd(pd_bad).name)

    def reasons(self, X: Any, k: int = 4) -> list[list[Reason]]:
        """The model's reason codes (see :mod:`flowbureau.scoring.reasons`)."""
        check_is_fitted(self, "estimator_")
        reasons: list[list[Reason]] = self.estimator_.reasons(X, k=k)
        return reasons
