"""Baselines the sequence model is measured against, on the same rows.

Rules:
- :class:`MadRule`: the robust per-account z-score of Iglewicz & Hoaglin on
  ``ln |amount|``: ``z = 0.6745 (x - median) / MAD`` per (account, direction) over the
  account's whole history (more than the sequence model may see: a generous baseline), score
  ``|z|``, flagged above ``threshold`` (3.5). MAD 0 gives score 0.
- :class:`PyodBaseline`: PyOD's ``IForest`` or ``ECOD``, unsupervised, fitted on the training
  feature matrix (the sequence model's own features, standardised with the training mean and
  deviation) and scoring each row on its own; flagged at PyOD's ``threshold_`` for the given
  ``contamination``.
- Both follow the estimator contract: parameters in ``__init__``, ``fit`` returns ``self``,
  learned state ends in ``_``, higher ``decision_function`` = more anomalous.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from flowbureau.errors import ModelInputError

__all__ = ["MadRule", "PyodBaseline"]


class MadRule(BaseEstimator):  # type: ignore[misc]
    """Robust per-account z-score of the log amount (module rules)."""

    def __init__(self, *, threshold: float = 3.5) -> None:
        self.threshold = threshold

    def fit(self, X: pd.DataFrame, y: object = None) -> MadRule:
        """Nothing to learn (the rule uses each account's own history); returns ``self``."""
        self.fitted_ = True
        return self

    def decision_function(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        """``|z|`` per row."""
        check_is_fitted(self, "fitted_")
        log_amount = np.log(np.abs(X["amount_minor"].to_numpy(np.int64)).astype(float) + 1.0)
        frame = pd.DataFrame(
            {
                "x": log_amount,
                "account": X["sequence_id"].to_numpy(),
                "inflow": X["amount_minor"] > 0,
            }
        )
        groups = frame.groupby(["account", "inflow"], sort=False)["x"]
        median = groups.transform("median")
        mad = (
            (frame["x"] - median)
            .abs()
            .groupby([frame["account"], frame["inflow"]])
            .transform("median")
        )
        z = 0.6745 * (frame["x"] - median) / mad.where(mad > 0)
        return np.asarray(z.abs().fillna(0.0), dtype=np.float64)

    def predict(self, X: pd.DataFrame) -> npt.NDArray[np.int64]:
        """1 where ``|z|`` exceeds ``threshold``."""
        return (self.decision_function(X) > self.threshold).astype(np.int64)


class PyodBaseline(BaseEstimator):  # type: ignore[misc]
    """PyOD ``IForest`` or ``ECOD`` on the standardised feature matrix (module rules)."""

    def __init__(
        self,
        *,
        method: str = "iforest",
        features: Sequence[str] | None = None,
        contamination: float = 0.02,
        seed: int = 0,
    ) -> None:
        self.method = method
        self.features = features
        self.contamination = contamination
        self.seed = seed

    def _names(self) -> list[str]:
        if self.features is not None:
            return list(self.features)
        from flowbureau.anomaly.features import FEATURE_NAMES

        return list(FEATURE_NAMES)

    def fit(self, X: pd.DataFrame, y: object = None) -> PyodBaseline:
        """Fit the detector on ``X``'s feature columns (labels are not used)."""
        matrix = X[self._names()].to_numpy(np.float64)
        self.mean_ = matrix.mean(axis=0)
        self.scale_ = np.maximum(matrix.std(axis=0), 1e-3)
        if self.method == "iforest":
            from pyod.models.iforest import IForest

            detector = IForest(contamination=self.contamination, random_state=self.seed)
        elif self.method == "ecod":
            from pyod.models.ecod import ECOD

            detector = ECOD(contamination=self.contamination)
        else:
            raise ModelInputError(f"unknown method {self.method!r}", field="method")
        detector.fit(self._standard(matrix))
        self.detector_ = detector
        return self

    def _standard(self, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(np.clip((matrix - self.mean_) / self.scale_, -10.0, 10.0), np.float64)

    def decision_function(self, X: pd.DataFrame) -> npt.NDArray[np.float64]:
        """PyOD's outlier score per row (higher = more anomalous)."""
        check_is_fitted(self, "detector_")
        matrix = self._standard(X[self._names()].to_numpy(np.float64))
        return np.asarray(self.detector_.decision_function(matrix), dtype=np.float64)

    def predict(self, X: pd.DataFrame) -> npt.NDArray[np.int64]:
        """1 where the score exceeds the fitted ``threshold_``."""
        threshold = float(self.detector_.threshold_)
        return np.asarray(self.decision_function(X) > threshold, dtype=np.int64)
