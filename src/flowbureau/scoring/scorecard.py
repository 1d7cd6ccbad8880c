"""The champion credit model: a points scorecard (monotonic WoE binning + logistic regression).

Rules:
- Binning: every feature gets optbinning's optimal binning with a monotonic bad-rate trend
  (``auto_asc_desc`` by default: ascending or descending, whichever fits; per-feature override
  with ``monotonic_trends``). Categorical features (object/string/category dtype) use
  optbinning's categorical binning. Missing values, ``special_codes`` (numerical features) and
  categories unseen in training get bins of their own (see :mod:`flowbureau.scoring._binning`).
- Variable selection ("fewer, stable items"), in this order; every dropped feature is listed
  in ``dropped_features_`` with the reason, the kept ones in ``selection_order_``:

  1. a feature is a candidate when its information value is at least ``min_iv`` (0.02, the
     usual "weak predictor" floor) and it has two or more regular bins; candidates are
     ranked by information value, strongest first;
  2. stability (only when ``fit`` gets ``groups``, e.g. the cohort date of each row): in
     every group with at least ``min_group_bads`` bads and as many goods, the AUC of the
     item's WoE (low WoE = risky) must be at least 0.5; an item whose ranking reverses in
     any group is dropped;
  3. correlation pruning: walking down the ranking, an item whose WoE has a Pearson
     correlation above ``max_correlation`` (absolute) with an item already kept is dropped;
  4. the cap: only the ``max_items`` strongest remaining items enter (``None``: no cap);
  5. with ``enforce_signs``, the logistic regression is refitted without the feature whose
     weight has the wrong sign (a higher WoE, i.e. a safer bin, must never raise the PD),
     one at a time, until every weight is <= 0 (no replacement enters).
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
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from flowbureau.errors import ModelError, ModelInputError
from flowbureau.scoring._binning import ItemBins, fit_item
from flowbureau.scoring._frame import (
    CreditClassifierMixin,
    column_kind,
    fingerprint,
    group_labels,
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
        max_items: int | None = 15,
        max_correlation: float | None = 0.7,
        min_group_bads: int = 10,
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
        self.max_items = max_items
        self.max_correlation = max_correlation
        self.min_group_bads = min_group_bads

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any, groups: Any = None) -> ScorecardModel:
        """Bin every feature, select, fit the logistic weights and compile the points.

        ``groups`` (optional, one label per row, e.g. the cohort date) turns on the
        stability check of the item selection (see the module docstring).
        """
        frame, target = self._fit_input(X, y)
        labels = group_labels(groups, len(frame))
        self._check_selection_params()
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
        candidates = [name for name in frame.columns if name not in dropped]
        woe = pd.DataFrame(
            {
                name: np.asarray(bins[name].woe)[bins[name].slots(frame[name])]
                for name in candidates
            },
            index=frame.index,
        )
        selected = self._select_items(woe, target, labels, bins, dropped)
        self.selection_order_ = list(selected)
        intercept, weights = self._fit_weights(woe, target, selected, dropped)
        self.dropped_features_ = dropped
        self.bins_ = {name: bins[name] for name in weights}
        self.intercept_ = intercept
        self.weights_ = pd.Series(weights, name="weight", dtype=np.float64)
        self._compile_points(scaling)
        self.training_fingerprint_ = fingerprint(frame, target)
        return self

    def _check_selection_params(self) -> None:
        if self.max_items is not None and self.max_items < 1:
            raise ModelInputError(
                f"max_items must be at least 1 or None, got {self.max_items}", field="max_items"
            )
        if self.max_correlation is not None and not 0.0 < self.max_correlation <= 1.0:
            raise ModelInputError(
                f"max_correlation must be in (0, 1] or None, got {self.max_correlation}",
                field="max_correlation",
            )
        if self.min_group_bads < 1:
            raise ModelInputError(
                f"min_group_bads must be at least 1, got {self.min_group_bads}",
                field="min_group_bads",
            )

    def _select_items(
        self,
        woe: pd.DataFrame,
        target: npt.NDArray[np.int_],
        groups: npt.NDArray[Any] | None,
        bins: Mapping[str, ItemBins],
        dropped: dict[str, str],
    ) -> list[str]:
        """Rank the candidates by IV; drop unstable, correlated and surplus items."""
        ranked = sorted(woe.columns, key=lambda name: -bins[name].iv)
        self.group_auc_: dict[str, dict[str, float]] = {}
        if groups is not None:
            stable = []
            for name in ranked:
                aucs = _group_aucs(woe[name].to_numpy(), target, groups, self.min_group_bads)
                self.group_auc_[name] = aucs
                flipped = {g: a for g, a in aucs.items() if a < 0.5}
                if flipped:
                    worst = min(flipped, key=lambda g: flipped[g])
                    dropped[name] = (
                        f"unstable: ranks group {worst} the wrong way (AUC {flipped[worst]:.3f})"
                    )
                else:
                    stable.append(name)
            ranked = stable
        kept: list[str] = []
        values = woe.to_numpy(dtype=np.float64)
        column = {name: i for i, name in enumerate(woe.columns)}
        for name in ranked:
            if self.max_correlation is not None and kept:
                x = values[:, column[name]]
                corr = [(abs(_pearson(x, values[:, column[k]])), k) for k in kept]
                top, other = max(corr)
                if top > self.max_correlation:
                    dropped[name] = (
                        f"WoE correlation {top:.3f} with {other!r} > max_correlation "
                        f"{self.max_correlation}"
                    )
                    continue
            if self.max_items is not None and len(kept) >= self.max_items:
                dropped[name] = f"beyond the max_items = {self.max_items} strongest items"
                continue
            kept.append(name)
        return kept

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


def _pearson(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Pearson correlation; 0 when either side is constant."""
    sa, sb = float(a.std()), float(b.std())
    if sa == 0.0 or sb == 0.0:
        return 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def _group_aucs(
    woe: npt.NDArray[np.float64],
    target: npt.NDArray[np.int_],
    groups: npt.NDArray[Any],
    min_bads: int,
) -> dict[str, float]:
    """AUC of ``-woe`` (low WoE = risky) within each group with ``min_bads`` bads and goods."""
    out: dict[str, float] = {}
    for label in sorted(set(groups.tolist()), key=str):
        mask = groups == label
        y = target[mask]
        bads = int(y.sum())
        if bads < min_bads or len(y) - bads < min_bads:
            continue
        out[str(label)] = float(roc_auc_score(y, -woe[mask]))
    return out


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
