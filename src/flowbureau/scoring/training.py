"""Training data and the credit model: labelled cohorts as of past dates, champion + challenger.

Rules:
- **Labels come from observed outcomes**, never from a model of the truth. An outcome file
  (:func:`load_outcomes`) lists the enterprises that defaulted and when; ``observed_until`` is
  the last day on which defaults are known to be complete. A real deployment builds it from
  what its members report (non-performing loan classifications, written-off facilities) or
  exports it from the case outcomes it recorded; the synthetic consortium's ground truth is
  read only by :func:`synthetic_outcomes`, which training and benchmark code may call and the
  evaluation pipeline never does.
- **A cohort** is the population as of a date ``D`` (:func:`~flowbureau.scoring.assembly.
  assemble_features`): an enterprise is bad (1) when it defaulted on a day in
  ``[D, D + horizon)``, good (0) otherwise; enterprises that had already defaulted before ``D``
  are left out. A cohort whose horizon ends after ``observed_until`` is refused: its goods
  would include defaults not yet seen.
- **The credit model** (:class:`CreditModel`) is trained on the stacked cohorts: the champion
  is a calibrated scorecard (:class:`~flowbureau.scoring.calibration.CalibratedModel` over
  :class:`~flowbureau.scoring.scorecard.ScorecardModel`), the challenger a calibrated LightGBM
  (:class:`~flowbureau.scoring.challenger.ChallengerModel`) whose monotone constraints are the
  champion's bad-rate trends. Both are calibrated on out-of-fold scores. The training cohorts
  become the case library (similar cases with their outcomes), over the champion's WoE values.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from flowbureau.errors import InputError, ModelError
from flowbureau.schema import is_valid_credit_code
from flowbureau.scoring._frame import as_frame, binary_target
from flowbureau.scoring.artefacts import Artefact, model_label, save_model
from flowbureau.scoring.assembly import (
    FeatureSet,
    FeatureSource,
    assemble_features,
    default_sources,
)
from flowbureau.scoring.calibration import CalibratedModel
from flowbureau.scoring.cases import CaseLibrary
from flowbureau.scoring.challenger import ChallengerModel
from flowbureau.scoring.external import ExternalData, read_csv_rows
from flowbureau.scoring.features import cutoff_instant, month_start
from flowbureau.scoring.scale import MasterScale
from flowbureau.scoring.scorecard import ScorecardModel
from flowbureau.storage.engine import Engine
from flowbureau.storage.warehouse import Warehouse

__all__ = [
    "CreditModel",
    "Outcomes",
    "TrainingResult",
    "TrainingSet",
    "build_case_library",
    "default_cohorts",
    "label_cohort",
    "load_outcomes",
    "synthetic_outcomes",
    "train_and_save",
    "training_set",
]


@dataclass(frozen=True)
class Outcomes:
    """Observed defaults (enterprise id -> first default day), complete up to ``observed_until``."""

    defaults: dict[str, date]
    observed_until: date

    def default_before(self, enterprise_id: str, day: date) -> bool:
        """True when the enterprise defaulted on a day before ``day``."""
        when = self.defaults.get(enterprise_id)
        return when is not None and when < day


def load_outcomes(path: str | Path, *, observed_until: date) -> Outcomes:
    """Read an outcome file: UTF-8 CSV with columns ``credit_code`` and ``default_date``
    (ISO day of the first default; empty = none observed). Enterprises not listed did not
    default by ``observed_until``. A default after ``observed_until`` is refused."""
    file = Path(path)
    header, rows = read_csv_rows(file)
    for column in ("credit_code", "default_date"):
        if column not in header:
            raise InputError(f"missing column {column}", file=file, line=1, field=column)
    code_at, day_at = header.index("credit_code"), header.index("default_date")
    defaults: dict[str, date] = {}
    for line, row in rows:
        code = row[code_at].strip().upper() if code_at < len(row) else ""
        if not is_valid_credit_code(code):
            raise InputError(
                f"not a unified social credit code: {code!r}",
                file=file,
                line=line,
                field="credit_code",
            )
        text = row[day_at].strip() if day_at < len(row) else ""
        if not text:
            continue
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InputError(
                f"not an ISO date: {text!r}", file=file, line=line, field="default_date"
            ) from None
        if day > observed_until:
            raise InputError(
                f"default on {day} is after observed_until {observed_until}",
                file=file,
                line=line,
                field="default_date",
            )
        if code in defaults and defaults[code] != day:
            raise InputError(
                f"{code} has two default dates", file=file, line=line, field="default_date"
            )
        defaults[code] = day
    return Outcomes(defaults, observed_until)


def synthetic_outcomes(consortium: str | Path) -> Outcomes:
    """Outcomes of a synthetic consortium from its ground truth (training/benchmarks only).

    Reads ``ground_truth/enterprises.parquet`` (``default_date``) and ``manifest.json`` (the
    simulated period, which is when outcomes are complete). The evaluation pipeline never
    calls this: in production outcomes come from :func:`load_outcomes`.
    """
    import pyarrow.parquet as pq

    root = Path(consortium)
    manifest_path = root / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
        parameters = manifest["parameters"]
        start = date.fromisoformat(parameters["start"])
        months = int(parameters["months"])
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(
            f"not a synthetic consortium manifest: {exc}", file=manifest_path
        ) from None
    truth = pq.read_table(root / "ground_truth" / "enterprises.parquet").to_pydict()
    defaults = {
        code: day
        for code, day in zip(truth["enterprise_id"], truth["default_date"], strict=True)
        if day is not None
    }
    end = month_start(start, -months)
    return Outcomes(defaults, date.fromordinal(end.toordinal() - 1))


def label_cohort(
    enterprises: Sequence[str], as_of: date, outcomes: Outcomes, horizon_months: int
) -> tuple[list[str], np.ndarray]:
    """The labelled members of a cohort: ``(ids, y)``, without those already defaulted."""
    end = month_start(as_of, -horizon_months)
    if end > date.fromordinal(outcomes.observed_until.toordinal() + 1):
        raise InputError(
            f"cohort {as_of} needs outcomes until {end}, observed only until "
            f"{outcomes.observed_until}",
            field="as_of",
        )
    kept: list[str] = []
    labels: list[int] = []
    for code in enterprises:
        when = outcomes.defaults.get(code)
        if when is not None and when < as_of:
            continue
        kept.append(code)
        labels.append(int(when is not None and when < end))
    return kept, np.asarray(labels, dtype=np.int_)


def default_cohorts(
    engine: Engine,
    outcomes: Outcomes,
    horizon_months: int,
    *,
    timezone: str = "Asia/Shanghai",
    limit: int = 8,
) -> list[date]:
    """Quarter starts with 12 months of entries before them and complete outcomes after
    them (the latest ``limit``); InputError when there is none."""
    cutoff = cutoff_instant(date.fromordinal(outcomes.observed_until.toordinal() + 1), timezone)
    first = (
        engine.query(
            "SELECT min(booked_at) AS first FROM transactions WHERE enterprise_id IS NOT NULL "
            f"AND booked_at < TIMESTAMPTZ '{cutoff.strftime('%Y-%m-%d %H:%M:%S')}+00:00'"
        )
        .column(0)[0]
        .as_py()
    )
    if first is None:
        raise InputError("the warehouse holds no entries of known enterprises", field="as_of")
    earliest = month_start(first.astimezone(ZoneInfo(timezone)).date(), -12)
    last_ok = date.fromordinal(outcomes.observed_until.toordinal() + 1)
    cohorts: list[date] = []
    day = date(earliest.year, 3 * ((earliest.month - 1) // 3) + 1, 1)
    while month_start(day, -horizon_months) <= last_ok:
        if day >= earliest:
            cohorts.append(day)
        day = month_start(day, -3)
    if not cohorts:
        raise InputError(
            f"no cohort date has 12 months of entries before it and {horizon_months} months "
            f"of outcomes after it (entries from {first:%Y-%m-%d}, outcomes until "
            f"{outcomes.observed_until}); pass --as-of",
            field="as_of",
        )
    return cohorts[-limit:]


@dataclass
class TrainingSet:
    """Stacked labelled cohorts: features, labels, and who/when each row is."""

    X: pd.DataFrame
    y: np.ndarray
    enterprise_id: list[str]
    as_of: list[date]
    outcome_at: list[date]

    @property
    def case_ids(self) -> list[str]:
        """``enterprise@as_of`` of each row."""
        return [f"{e}@{d.isoformat()}" for e, d in zip(self.enterprise_id, self.as_of, strict=True)]


def training_set(
    engine: Engine,
    as_ofs: Sequence[date],
    outcomes: Outcomes,
    sources: Sequence[FeatureSource],
    *,
    horizon_months: int = 12,
) -> TrainingSet:
    """Assemble and label one cohort per date of ``as_ofs`` and stack them."""
    if not as_ofs:
        raise InputError("at least one cohort date is needed", field="as_of")
    frames: list[pd.DataFrame] = []
    labels: list[np.ndarray] = []
    ids: list[str] = []
    days: list[date] = []
    seen: list[date] = []
    for as_of in sorted(set(as_ofs)):
        features: FeatureSet = assemble_features(engine, as_of, sources)
        kept, y = label_cohort(list(features.features.index), as_of, outcomes, horizon_months)
        frames.append(features.features.loc[kept])
        labels.append(y)
        ids += kept
        days += [as_of] * len(kept)
        end = month_start(as_of, -horizon_months)
        seen += [outcomes.defaults[c] if label else end for c, label in zip(kept, y, strict=True)]
    X = pd.concat(frames, axis=0).reset_index(drop=True)
    return TrainingSet(X, np.concatenate(labels), ids, days, seen)


class CreditModel(BaseEstimator):  # type: ignore[misc]
    """Champion (calibrated scorecard) and challenger (calibrated LightGBM), trained together.

    ``predict_proba`` and the other prediction methods are the champion's; the challenger
    runs in the shadow (its ratings are stored beside the champion's, never shown as the
    decision). ``metrics_`` holds out-of-fold AUCs of both.

    The scorecard is tighter than :class:`ScorecardModel`'s defaults: at most ``max_items``
    (10) items and L2 strength ``C`` = 0.01, because stacked monthly cohorts repeat the same
    few hundred firms (chosen on training cohorts only; ``docs/scoring.md``).
    """

    def __init__(
        self,
        *,
        cv: int = 5,
        min_iv: float = 0.02,
        max_items: int | None = 10,
        C: float = 0.01,
        scale: MasterScale | None = None,
        challenger: bool = True,
        random_state: int = 0,
    ) -> None:
        self.cv = cv
        self.min_iv = min_iv
        self.max_items = max_items
        self.C = C
        self.scale = scale
        self.challenger = challenger
        self.random_state = random_state

    def fit(self, X: Any, y: Any, groups: Any = None) -> CreditModel:
        """Fit and calibrate the champion, then the challenger with the champion's trends.

        ``groups`` (optional): the cohort of each row (e.g. :attr:`TrainingSet.as_of`); the
        scorecard then keeps only items that rank every cohort the right way.
        """
        frame = as_frame(X)
        target = binary_target(y, len(frame))
        if target.sum() < self.cv or (len(target) - target.sum()) < self.cv:
            raise ModelError(
                f"training needs at least {self.cv} bads and {self.cv} goods "
                f"(got {int(target.sum())} bads of {len(target)})"
            )
        self.champion_ = CalibratedModel(
            ScorecardModel(min_iv=self.min_iv, max_items=self.max_items, C=self.C),
            cv=self.cv,
            scale=self.scale,
            random_state=self.random_state,
        ).fit(frame, target, groups=groups)
        card = self.champion_.estimator_
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        self.classes_ = np.array([0, 1])
        self.training_fingerprint_ = self.champion_.training_fingerprint_
        metrics = {
            "champion_oof_auc": float(roc_auc_score(target, -self.champion_.oof_score_)),
            "rows": float(len(target)),
            "bads": float(target.sum()),
            "selected_features": float(len(card.weights_)),
        }
        self.challenger_: CalibratedModel | None = None
        if self.challenger:
            trends = {name: int(t) for name, t in card.trends_.items()}
            self.challenger_ = CalibratedModel(
                ChallengerModel(monotone_constraints=trends, random_state=self.random_state),
                cv=self.cv,
                scale=self.scale,
                random_state=self.random_state,
            ).fit(frame, target)
            metrics["challenger_oof_auc"] = float(
                roc_auc_score(target, -self.challenger_.oof_score_)
            )
        self.metrics_ = metrics
        return self

    @property
    def scorecard_(self) -> ScorecardModel:
        """The champion's fitted scorecard (weights, points table, ``to_sql``)."""
        check_is_fitted(self, "champion_")
        card: ScorecardModel = self.champion_.estimator_
        return card

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[P(good), P(bad)]`` of the champion."""
        check_is_fitted(self, "champion_")
        return np.asarray(self.champion_.predict_proba(X))

    def rate(self, X: Any) -> pd.DataFrame:
        """The champion's score, calibrated PD and grade per row."""
        check_is_fitted(self, "champion_")
        return self.champion_.rate(X)


def build_case_library(
    model: CreditModel, data: TrainingSet, *, timezone: str = "Asia/Shanghai"
) -> CaseLibrary | None:
    """The training cohorts as cases over the champion's WoE values (``None`` when the
    scorecard selected no feature). Weights are learned from the labelled cases."""
    woe = model.scorecard_.woe(data.X)
    if woe.shape[1] == 0:
        return None
    zone = ZoneInfo(timezone)

    def instant(day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)

    frame = woe.copy()
    frame.insert(0, "case_id", data.case_ids)
    frame.insert(1, "evaluated_at", [instant(d) for d in data.as_of])
    frame.insert(2, "outcome", data.y.astype(int))
    frame.insert(3, "outcome_at", [instant(d) for d in data.outcome_at])
    library = CaseLibrary(list(woe.columns))
    library.add_frame(frame, outcome_column="outcome", outcome_date_column="outcome_at")
    if len(set(data.y.tolist())) == 2:
        library.learn_weights()
    return library


@dataclass(frozen=True)
class TrainingResult:
    """A trained and saved credit model, with what it was trained on."""

    artefact: Artefact
    cohorts: list[date]
    rows: int
    bads: int
    metrics: dict[str, float]
    sources: list[str]

    @property
    def model(self) -> str:
        """``name/vNNNN`` of the saved artefact."""
        return model_label(self.artefact.manifest.name, self.artefact.manifest.version)


def train_and_save(
    *,
    warehouse: Warehouse,
    outcomes: Outcomes,
    external: ExternalData | None,
    models_root: Path,
    name: str = "credit",
    cohorts: Sequence[date] | None = None,
    horizon_months: int = 12,
    timezone: str = "Asia/Shanghai",
    currency: str = "CNY",
    cv: int = 5,
    challenger: bool = True,
    seed: int = 0,
    on_step: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Assemble the cohorts (default: :func:`default_cohorts`), train a :class:`CreditModel`,
    build its case library and save both as the next version of ``name``."""
    step = on_step or (lambda _message: None)
    sources = default_sources(external, timezone=timezone, currency=currency)
    with warehouse.connect() as engine:
        step("choosing cohorts")
        chosen = list(
            cohorts or default_cohorts(engine, outcomes, horizon_months, timezone=timezone)
        )
        step(f"features of {len(chosen)} cohort(s)")
        data = training_set(engine, chosen, outcomes, sources, horizon_months=horizon_months)
    step(f"training on {len(data.y)} rows")
    model = CreditModel(cv=cv, challenger=challenger, random_state=seed).fit(
        data.X, data.y, groups=data.as_of
    )
    step("case library and artefact")
    cases = build_case_library(model, data, timezone=timezone)
    metrics = {**model.metrics_, "horizon_months": float(horizon_months)}
    artefact = save_model(model, models_root, name, metrics=metrics, cases=cases)
    return TrainingResult(
        artefact=artefact,
        cohorts=sorted(set(chosen)),
        rows=len(data.y),
        bads=int(data.y.sum()),
        metrics=metrics,
        sources=[s.name for s in sources],
    )
