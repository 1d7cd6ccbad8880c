"""The champion credit model: a points scorecard (monotonic WoE binning + logistic regression).

Rules:
- Binning: every feature gets optbinning's optimal binning with a monotonic bad-rate trend
  (``auto_asc_desc`` by default: ascending or descending, whichever fits; per-feature override
  with ``monotonic_trends``). Categorical features (object/string/category dtype) use
  optbinning's categorical binning. Missing values, ``special_codes`` (numerical features) and
  categories unseen in training get bins of their own (see :mod:`flowbureau.scoring._binning`).
- Variable selection: a feature enters when its information value is at least ``min_iv``
  (0.02, the usual "weak predictor" floor) and it has two or more regular bins. With
  ``enforce_signs``, the logistic regression is refitted without the feature whose weight
  has the wrong sign (a higher WoE, i.e. a safer bin, must never raise the PD), one at a time,
  until every weight is <= 0. Every dropped feature is listed in ``dropped_features_``.
- Model: ``logit(PD) = b0 + sum_j beta_j * WoE_j(x_j)`` (scikit-learn LogisticRegression,
  L2 penalty ``C``); ``weights_`` are the ``beta_j``, ``intercept_`` is ``b0``.
- Points (higher = lower risk): with ``factor = pdo / ln 2``,
  ``offset = base_score - factor * ln(base_odds)`` and ``n`` selected items, the points of
  the bin with WoE ``w`` of item ``j`` are
  ``round(-(beta_j * w + b0 / n) * factor + offset / n)``, rounded half away from zero to
  an integer once, at fit time. ``credit_score`` is the integer sum of the item points (plus
  ``base_points_``, which is 0 unless no feature was selected and then holds the rounded
  intercept-only score). Before rounding the sum equals ``offset - factor * logit(PD)``; the
  rounding moves a score by at most ``n / 2`` points.
- ``predict_proba`` is the logistic model's PD (unrounded). A calibrated PD and a grade come
  from :class:`flowbureau.scoring.calibration.CalibratedModel`.
- Three scoring paths give the same integers: ``credit_score`` (vectorised over a frame),
  ``score_one`` (one mapping, no pandas; the latency-critical path) and ``to_sql`` (one
  SELECT for DuckDB, SQLite and PostgreSQL; missing values must be SQL NULL there).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from flowbureau.errors import ModelError, ModelInputError
from flowbureau.scoring._binning import ItemBins, fit_item
from flowbureau.scoring._frame import (
    CreditClassifierMixin,
    column_kind,
    fingerprint,
    numeric_column,
    select_features,
)
from flowbureau.scoring.reasons import Reason, json_safe
from flowbureau.scoring.scale import ScoreScaling

# Compiled per-item tables for score_one: tuples of plain Python objects (fast, picklable).
_NumItem = tuple[str, list[float], list[int], frozenset[float], int, int]
_CatItem = tuple[str, dict[str, int], int, int]


class ScorecardModel(CreditClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Points scorecard with monotonic WoE binning, logistic weights and PDO scaling.

    ``fit(X, y)`` takes a DataFrame of numerical and categorical features (missing values
    allowed) and ``y`` with 1 = bad. See the module docstring for every formula.
    """

    def __init__(
        self,
        *,
        base_score: float = 600.0,
        base_odds: float = 50.0,
        pdo: float = 20.0,
        min_iv: float = 0.02,
        max_n_bins: int | None = None,
        min_bin_size: float = 0.05,
        monotonic_trend: str = "auto_asc_desc",
        monotonic_trends: Mapping[str, str] | None = None,
        special_codes: Sequence[float] | None = None,
        C: float = 1.0,
        enforce_signs: bool = True,
    ) -> None:
        self.base_score = base_score
        self.base_odds = base_odds
        self.pdo = pdo
        self.min_iv = min_iv
        self.max_n_bins = max_n_bins
        self.min_bin_size = min_bin_size
        self.monotonic_trend = monotonic_trend
        self.monotonic_trends = monotonic_trends
        self.special_codes = special_codes
        self.C = C
        self.enforce_signs = enforce_signs

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> ScorecardModel:
        """Bin every feature, select, fit the logistic weights and compile the points."""
        frame, target = self._fit_input(X, y)
        scaling = ScoreScaling(self.base_score, self.base_odds, self.pdo)
        self.feature_kinds_ = {name: column_kind(frame[name]) for name in frame.columns}
        trends = dict(self.monotonic_trends or {})
        unknown = set(trends) - set(frame.columns)
        if unknown:
            raise ModelInputError(
                f"monotonic_trends names unknown feature(s) {sorted(unknown)}",
                field="monotonic_trends",
            )

        bins: dict[str, ItemBins] = {}
        dropped: dict[str, str] = {}
        for name in frame.columns:
            column = frame[name]
            if self.feature_kinds_[name] == "numerical":
                column = pd.Series(numeric_column(column), name=name)
            if column.isna().all():
                dropped[name] = "no values: missing on every row"
                continue
            try:
                item = fit_item(
                    name,
                    column,
                    target,
                    kind=self.feature_kinds_[name],
                    monotonic_trend=trends.get(name, self.monotonic_trend),
                    max_n_bins=self.max_n_bins,
                    min_bin_size=self.min_bin_size,
                    special_codes=tuple(self.special_codes or ()),
                )
            except (ValueError, TypeError, RuntimeError) as exc:
                raise ModelError(f"binning feature {name!r} failed: {exc}") from exc
            bins[name] = item
            if item.n_regular < 2:
                dropped[name] = "a single bin: no discrimination"
            elif item.iv < self.min_iv:
                dropped[name] = f"information value {item.iv:.4f} < min_iv {self.min_iv}"
        self.iv_ = pd.Series({name: item.iv for name, item in bins.items()}, name="iv")
        self.trends_ = {name: item.trend for name, item in bins.items() if item.kind == "numerical"}
        selected = [name for name in frame.columns if name not in dropped]
        woe = pd.DataFrame(
            {name: np.asarray(bins[name].woe)[bins[name].slots(frame[name])] for name in selected},
            index=frame.index,
        )
        intercept, weights = self._fit_weights(woe, target, selected, dropped)
        self.dropped_features_ = dropped
        self.bins_ = {name: bins[name] for name in weights}
        self.intercept_ = intercept
        self.weights_ = pd.Series(weights, name="weight", dtype=np.float64)
        self._compile_points(scaling)
        self.training_fingerprint_ = fingerprint(frame, target)
        return self

    def _fit_weights(
        self,
        woe: pd.DataFrame,
        target: npt.NDArray[np.int_],
        selected: list[str],
        dropped: dict[str, str],
    ) -> tuple[float, dict[str, float]]:
        features = list(selected)
        while features:
            model = LogisticRegression(C=self.C, max_iter=1000)
            model.fit(woe[features].to_numpy(), target)
            coef = model.coef_[0]
            worst = int(np.argmax(coef))
            if not self.enforce_signs or coef[worst] <= 0:
                self.logistic_ = model
                return float(model.intercept_[0]), {
                    f: float(c) for f, c in zip(features, coef, strict=True)
                }
            dropped[features[worst]] = (
                f"weight {coef[worst]:+.4f} has the wrong sign (a safer bin would raise the PD)"
            )
            features.pop(worst)
        rate = float(np.clip(target.mean(), 1e-6, 1 - 1e-6))
        self.logistic_ = None
        return math.log(rate / (1.0 - rate)), {}

    def _compile_points(self, scaling: ScoreScaling) -> None:
        n = len(self.bins_)
        rows: list[dict[str, Any]] = []
        numeric: list[_NumItem] = []
        categorical: list[_CatItem] = []
        self._item_points: dict[str, npt.NDArray[np.int64]] = {}
        self.base_points_ = (
            0 if n else _round_half_away(scaling.offset - scaling.factor * self.intercept_)
        )
        for name, item in self.bins_.items():
            beta = float(self.weights_[name])
            points = [
                _round_half_away(
                    -(beta * w + self.intercept_ / n) * scaling.factor + scaling.offset / n
                )
                for w in item.woe
            ]
            self._item_points[name] = np.asarray(points, dtype=np.int64)
            for slot in _reachable_slots(item):
                count = item.count[slot]
                rows.append(
                    {
                        "feature": name,
                        "slot": slot,
                        "bin": item.labels[slot],
                        "count": count,
                        "event_rate": item.event[slot] / count if count else math.nan,
                        "woe": item.woe[slot],
                        "weight": beta,
                        "points": points[slot],
                    }
                )
            if item.kind == "numerical":
                numeric.append(
                    (
                        name,
                        list(item.edges),
                        points[: item.n_regular],
                        frozenset(item.special_codes),
                        points[item.special_slot],
                        points[item.missing_slot],
                    )
                )
            else:
                categorical.append(
                    (
                        name,
                        {cat: points[slot] for cat, slot in item.category_slots().items()},
                        points[item.missing_slot],
                        points[item.unknown_slot],
                    )
                )
        self.points_table_ = pd.DataFrame(
            rows,
            columns=["feature", "slot", "bin", "count", "event_rate", "woe", "weight", "points"],
        )
        self._best_points = {
            name: max(
                int(pts[slot]) for slot in range(len(pts)) if self.bins_[name].count[slot] > 0
            )
            for name, pts in self._item_points.items()
        }
        self._numeric_items = numeric
        self._categorical_items = categorical

    # ------------------------------------------------------------------ scoring
    def _features(self, X: Any) -> pd.DataFrame:
        check_is_fitted(self, "bins_")
        names = [str(n) for n in getattr(self, "feature_names_in_", [])] or [
            f"x{i}" for i in range(self.n_features_in_)
        ]
        return select_features(
            X,
            names,
            fitted_with_names=hasattr(self, "feature_names_in_"),
            model=type(self).__name__,
        )

    def _slots(self, frame: pd.DataFrame) -> dict[str, npt.NDArray[np.intp]]:
        out = {}
        for name, item in self.bins_.items():
            column = frame[name]
            if item.kind == "numerical":
                column = pd.Series(numeric_column(column), name=name, index=frame.index)
            out[name] = item.slots(column)
        return out

    def woe(self, X: Any) -> pd.DataFrame:
        """WoE of every selected item for each row (the logistic model's inputs)."""
        frame = self._features(X)
        return pd.DataFrame(
            {
                name: np.asarray(self.bins_[name].woe)[slots]
                for name, slots in self._slots(frame).items()
            },
            index=frame.index,
        )

    def points(self, X: Any) -> pd.DataFrame:
        """Integer points of every selected item for each row (columns = features)."""
        frame = self._features(X)
        return pd.DataFrame(
            {name: self._item_points[name][slots] for name, slots in self._slots(frame).items()},
            index=frame.index,
            dtype=np.int64,
        )

    def credit_score(self, X: Any) -> npt.NDArray[np.int64]:
        """Integer credit score of each row: the sum of its item points (higher = safer)."""
        total = self.points(X).to_numpy(dtype=np.int64).sum(axis=1) + self.base_points_
        return np.asarray(total, dtype=np.int64)

    def decision_function(self, X: Any) -> npt.NDArray[np.float64]:
        """Log-odds of bad, ``b0 + sum_j beta_j * WoE_j``."""
        woe = self.woe(X)
        weights = self.weights_.reindex(woe.columns).to_numpy()
        return np.asarray(self.intercept_ + woe.to_numpy() @ weights, dtype=np.float64)

    def predict_proba(self, X: Any) -> npt.NDArray[np.float64]:
        """``[P(good), P(bad)]`` per row from the logistic model; column 1 is the PD."""
        pd_bad = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - pd_bad, pd_bad])

    def predict(self, X: Any) -> npt.NDArray[np.int_]:
        """1 (bad) where the PD is at least 0.5; use ``predict_proba`` for decisions."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int_)

    def score_one(self, record: Mapping[str, Any]) -> int:
        """Credit score of one record given as a mapping feature -> value (no pandas).

        Every selected feature must be a key; ``None`` or NaN means missing.
        """
        check_is_fitted(self, "bins_")
        total: int = self.base_points_
        try:
            for name, edges, points, specials, special_pts, missing_pts in self._numeric_items:
                value = record[name]
                if value is None:
                    total += missing_pts
                    continue
                if isinstance(value, str | bytes):
                    raise ModelInputError(
                        f"numerical feature holds a non-number {value!r}", field=name
                    )
                x = float(value)
                if math.isnan(x):
                    total += missing_pts
                elif x in specials:
                    total += special_pts
                else:
                    total += points[bisect_right(edges, x)]
            for name, lookup, missing_pts, unknown_pts in self._categorical_items:
                value = record[name]
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    total += missing_pts
                else:
                    total += lookup.get(str(value), unknown_pts)
        except KeyError as exc:
            raise ModelInputError(
                "record lacks a feature of the model", field=str(exc.args[0])
            ) from None
        except (TypeError, ValueError) as exc:
            raise ModelInputError(f"record holds an unusable value: {exc}") from exc
        return total

    def reasons(self, X: Any, k: int = 4) -> list[list[Reason]]:
        """Per row, the ``k`` items costing the most points against their best bin."""
        if k < 1:
            raise ModelInputError(f"k must be at least 1, got {k}", field="k")
        frame = self._features(X)
        slots = self._slots(frame)
        names = list(self.bins_)
        if not names:
            return [[] for _ in range(len(frame))]
        earned = np.column_stack([self._item_points[n][slots[n]] for n in names])
        best = np.asarray([self._best_points[n] for n in names])
        lost = best[None, :] - earned
        order = np.argsort(-lost, axis=1, kind="stable")[:, :k]
        out: list[list[Reason]] = []
        for row in range(len(frame)):
            reasons = []
            for j in order[row]:
                if lost[row, j] <= 0:
                    break
                name = names[j]
                value = json_safe(frame[name].iloc[row])
                label = self.bins_[name].labels[slots[name][row]]
                reasons.append(
                    Reason(
                        feature=name,
                        value=value,
                        bin=label,
                        points=int(earned[row, j]),
                        points_lost=int(lost[row, j]),
                        description=(
                            f"{name} = {value!r} (bin {label}) earns {earned[row, j]} points, "
                            f"{lost[row, j]} fewer than its best bin"
                        ),
                    )
                )
            out.append(reasons)
        return out

    # ------------------------------------------------------------------ export
    def to_sql(self, table: str) -> str:
        """One SELECT over ``table``: all its columns plus ``credit_score``.

        Runs on DuckDB, SQLite and PostgreSQL and yields exactly :meth:`credit_score`;
        ``table`` is an identifier (``name`` or ``schema.name``) whose columns are named
        as the training features, with missing values as NULL.
        """
        check_is_fitted(self, "bins_")
        if not table or any(not part for part in table.split(".")):
            raise ModelInputError(f"not a table name: {table!r}", field="table")
        terms = [str(self.base_points_)] if self.base_points_ or not self.bins_ else []
        for name, edges, points, specials, special_pts, missing_pts in self._numeric_items:
            col = _quote_ident(name)
            whens = [f"WHEN {col} IS NULL THEN {missing_pts}"]
            if specials:
                codes = ", ".join(_sql_number(c) for c in sorted(specials))
                whens.append(f"WHEN {col} IN ({codes}) THEN {special_pts}")
            whens += [
                f"WHEN {col} < {_sql_number(edge)} THEN {pts}"
                for edge, pts in zip(edges, points, strict=False)
            ]
            terms.append(f"(CASE {' '.join(whens)} ELSE {points[-1]} END)")
        for name, lookup, missing_pts, unknown_pts in self._categorical_items:
            # categories are compared as text, as in Python (and DuckDB ENUMs need the cast)
            col = f"CAST({_quote_ident(name)} AS VARCHAR)"
            whens = [f"WHEN {col} IS NULL THEN {missing_pts}"]
            by_points: dict[int, list[str]] = {}
            for cat, pts in lookup.items():
                by_points.setdefault(pts, []).append(cat)
            for pts, cats in by_points.items():
                values = ", ".join(_sql_text(c) for c in sorted(cats))
                whens.append(f"WHEN {col} IN ({values}) THEN {pts}")
            terms.append(f"(CASE {' '.join(whens)} ELSE {unknown_pts} END)")
        source = ".".join(_quote_ident(part) for part in table.split("."))
        return f"SELECT *, {' + '.join(terms)} AS credit_score FROM {source}"


def _round_half_away(value: float) -> int:
    """Round half away from zero (not Python's half-to-even), the rule of every points table."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def _reachable_slots(item: ItemBins) -> list[int]:
    """Slots a record can land in: regular, special (if codes), missing, unknown (categorical)."""
    slots = list(range(item.n_regular))
    if item.special_codes:
        slots.append(item.special_slot)
    slots.append(item.missing_slot)
    if item.kind == "categorical":
        slots.append(item.unknown_slot)
    return slots


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_number(value: float) -> str:
    if not math.isfinite(value):
        raise ModelError(f"cannot write a non-finite bin edge {value} as SQL")
    return repr(float(value))
