"""Case-based reasoning: a library of past evaluations, similar-case retrieval and risk.

Rules:
- A case is one past evaluation: an id, the time it was made (time-zone aware), its numerical
  features (NaN = unknown) and, once known, its outcome (1 = default, 0 = performed) with the
  time the outcome was observed. Outcomes arrive later through :meth:`CaseLibrary.record_outcome`;
  a recorded outcome is never silently changed (a different one raises ConflictError).
- Retrieval as of a date sees only cases evaluated strictly before it, and only outcomes
  observed on or before it: backtests get no look-ahead.
- Distance: features are standardised with the mean and standard deviation of the eligible
  cases; ``d^2 = sum_j w_j (z_qj - z_cj)^2``, summed over the features known on both sides and
  rescaled by ``sum(w) / sum(w over those features)`` so a missing value neither helps nor hurts.
  Similarity is ``1 / (1 + d)`` in (0, 1]. Ties are broken by insertion order.
- Weights are configured (a mapping feature -> weight >= 0; default all 1) or learned from the
  labelled cases by :meth:`CaseLibrary.learn_weights`: the absolute coefficients of an
  L2-regularised logistic regression on the standardised features, scaled to mean 1.
- Risk: similarity-weighted default rate of the ``k`` most similar labelled cases, shrunk to a
  prior: ``pd = (sum s_i y_i + n0 * p0) / (sum s_i + n0)`` with ``n0 = prior_strength`` and
  ``p0 = prior_pd`` (default: the default rate of all eligible labelled cases).
- The library persists as one Parquet file (written to a temporary name, then renamed), the
  configuration in its schema metadata.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from flowbureau.errors import ConflictError, InputError, ModelError, NotFoundError

FORMAT_VERSION = 1
_NO_TIME = np.iinfo(np.int64).max  # "not observed yet" for outcome times


@dataclass(frozen=True, slots=True)
class SimilarCase:
    """A retrieved case with its similarity to the query and its outcome (None if unknown)."""

    case_id: str
    similarity: float
    distance: float
    outcome: int | None
    evaluated_at: datetime
    outcome_at: datetime | None
    features: dict[str, float | None]

    def as_evidence(self) -> dict[str, Any]:
        """JSON-safe form shown as evidence beside an evaluation."""
        return {
            "case_id": self.case_id,
            "similarity": round(self.similarity, 6),
            "outcome": self.outcome,
            "evaluated_at": self.evaluated_at.isoformat(),
            "outcome_at": None if self.outcome_at is None else self.outcome_at.isoformat(),
            "features": self.features,
        }


@dataclass(frozen=True, slots=True)
class CaseRisk:
    """Risk predicted from similar cases: PD, the prior it was shrunk to, and the cases."""

    pd: float
    prior_pd: float
    similarity_mass: float
    cases: tuple[SimilarCase, ...]


class CaseLibrary:
    """Past evaluations with outcomes; retrieves similar cases and predicts risk from them."""

    def __init__(
        self,
        features: Sequence[str],
        *,
        weights: Mapping[str, float] | None = None,
        prior_strength: float = 2.0,
        prior_pd: float | None = None,
    ) -> None:
        """Library over the numerical ``features`` (names, in order)."""
        self.features = tuple(str(f) for f in features)
        if not self.features or len(set(self.features)) != len(self.features):
            raise InputError("features must be distinct names, at least one", field="features")
        if prior_strength < 0:
            raise InputError("prior_strength must not be negative", field="prior_strength")
        if prior_pd is not None and not 0.0 <= prior_pd <= 1.0:
            raise InputError("prior_pd must lie in [0, 1]", field="prior_pd")
        self.prior_strength = float(prior_strength)
        self.prior_pd = prior_pd
        self._weights = np.ones(len(self.features))
        if weights is not None:
            self.set_weights(weights)
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._rows: list[npt.NDArray[np.float64]] = []
        self._evaluated: list[int] = []
        self._outcome: list[int] = []
        self._outcome_at: list[int] = []
        self._cache: tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]] | None = None

    # ------------------------------------------------------------------ contents
    def __len__(self) -> int:
        """Number of cases."""
        return len(self._ids)

    @property
    def weights(self) -> dict[str, float]:
        """Feature weights of the distance."""
        return {f: float(w) for f, w in zip(self.features, self._weights, strict=True)}

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Configure the weights (features left out keep weight 0)."""
        unknown = set(weights) - set(self.features)
        if unknown:
            raise InputError(f"weights name unknown features {sorted(unknown)}", field="weights")
        array = np.asarray([float(weights.get(f, 0.0)) for f in self.features])
        if not np.all(np.isfinite(array)) or np.any(array < 0) or not array.any():
            raise InputError("weights must be finite, >= 0 and not all 0", field="weights")
        self._weights = array

    def add(
        self,
        case_id: str,
        features: Mapping[str, Any],
        evaluated_at: datetime,
        outcome: int | None = None,
        outcome_at: datetime | None = None,
    ) -> None:
        """Add one evaluation (with its outcome if already known)."""
        if case_id in self._index:
            raise ConflictError(f"case {case_id!r} is already in the library")
        vector = self._vector(features, where=f"case {case_id!r}")
        when = _micros(evaluated_at, "evaluated_at")
        result, result_at = self._checked_outcome(outcome, outcome_at, when)
        self._index[case_id] = len(self._ids)
        self._ids.append(case_id)
        self._rows.append(vector)
        self._evaluated.append(when)
        self._outcome.append(result)
        self._outcome_at.append(result_at)
        self._cache = None

    def add_frame(
        self,
        frame: pd.DataFrame,
        *,
        id_column: str = "case_id",
        date_column: str = "evaluated_at",
        outcome_column: str | None = None,
        outcome_date_column: str | None = None,
    ) -> int:
        """Add every row of ``frame``; all or nothing. Returns the number added."""
        wanted = [id_column, date_column, *self.features]
        wanted += [c for c in (outcome_column, outcome_date_column) if c is not None]
        absent = [c for c in wanted if c not in frame.columns]
        if absent:
            raise InputError(f"frame lacks column(s) {absent}", field=absent[0])
        staged = CaseLibrary(self.features)
        staged._index = dict(self._index)
        for row_number, row in enumerate(frame.to_dict("records"), start=1):
            try:
                staged.add(
                    str(row[id_column]),
                    {f: row[f] for f in self.features},
                    _as_datetime(row[date_column]),
                    None if outcome_column is None else _optional_int(row[outcome_column]),
                    None
                    if outcome_date_column is None
                    else _optional_datetime(row[outcome_date_column]),
                )
            except InputError as exc:
                raise InputError(exc.message, line=row_number, field=exc.field) from exc
        for i, case_id in enumerate(staged._ids):
            self._index[case_id] = len(self._ids)
            self._ids.append(case_id)
            self._rows.append(staged._rows[i])
            self._evaluated.append(staged._evaluated[i])
            self._outcome.append(staged._outcome[i])
            self._outcome_at.append(staged._outcome_at[i])
        self._cache = None
        return len(staged._ids)

    def record_outcome(self, case_id: str, outcome: int, observed_at: datetime) -> None:
        """Record the outcome of a case when it becomes known (idempotent for the same value)."""
        i = self._index.get(case_id)
        if i is None:
            raise NotFoundError(f"no case {case_id!r} in the library")
        result, result_at = self._checked_outcome(outcome, observed_at, self._evaluated[i])
        if self._outcome[i] >= 0:
            if self._outcome[i] != result:
                raise ConflictError(
                    f"case {case_id!r} already has outcome {self._outcome[i]}; refusing {result}"
                )
            return
        self._outcome[i] = result
        self._outcome_at[i] = result_at
        self._cache = None

    # ------------------------------------------------------------------ retrieval
    def query(
        self,
        features: Mapping[str, Any],
        k: int = 5,
        *,
        as_of: datetime | None = None,
        labelled_only: bool = False,
    ) -> list[SimilarCase]:
        """The ``k`` cases most similar to ``features``, most similar first."""
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}", field="k")
        query = self._vector(features, where="query")
        eligible, known = self._eligible(as_of)
        if labelled_only:
            eligible &= known
        idx = np.flatnonzero(eligible)
        if idx.size == 0:
            return []
        matrix, _ = self._arrays()
        distance = _distances(matrix[idx], query, self._weights)
        take = min(k, idx.size)
        nearest = np.lexsort((idx, distance))[:take]
        return [self._case(int(idx[j]), float(distance[j]), known) for j in nearest]

    def predict_risk(
        self, features: Mapping[str, Any], k: int = 20, *, as_of: datetime | None = None
    ) -> CaseRisk:
        """Similarity-weighted default rate of the ``k`` most similar labelled cases."""
        cases = self.query(features, k, as_of=as_of, labelled_only=True)
        prior = self._prior(as_of)
        mass = sum(c.similarity for c in cases)
        bad = sum(c.similarity * (c.outcome or 0) for c in cases)
        denominator = mass + self.prior_strength
        pd_value = (bad + self.prior_strength * prior) / denominator if denominator else prior
        return CaseRisk(pd=pd_value, prior_pd=prior, similarity_mass=mass, cases=tuple(cases))

    def learn_weights(self, *, as_of: datetime | None = None, C: float = 1.0) -> dict[str, float]:
        """Learn the weights from the labelled cases (see the module rules) and use them."""
        from sklearn.linear_model import LogisticRegression

        eligible, known = self._eligible(as_of)
        idx = np.flatnonzero(eligible & known)
        _, outcomes = self._arrays()
        y = outcomes[idx]
        if idx.size < 2 or len(np.unique(y)) < 2:
            raise ModelError("learning weights needs labelled cases of both outcomes")
        matrix, _ = self._arrays()
        z = _standardise(matrix[idx])
        model = LogisticRegression(C=C, max_iter=1000).fit(np.nan_to_num(z, nan=0.0), y)
        importance = np.abs(model.coef_[0])
        if not importance.any():
            raise ModelError("no feature separates the outcomes; keep configured weights")
        learned = importance * len(importance) / importance.sum()
        self._weights = learned
        return self.weights

    # ------------------------------------------------------------------ persistence
    def to_frame(self) -> pd.DataFrame:
        """All cases as a frame: id, times, outcome and the features."""
        matrix, outcomes = self._arrays()
        frame = pd.DataFrame(matrix, columns=list(self.features))
        frame.insert(0, "case_id", pd.Series(self._ids, dtype=object))
        frame.insert(1, "evaluated_at", pd.to_datetime(self._evaluated, unit="us", utc=True))
        frame.insert(
            2, "outcome", pd.Series([o if o >= 0 else None for o in outcomes], dtype="Int8")
        )
        times = np.asarray(self._outcome_at, dtype=np.int64)
        observed = pd.to_datetime(np.where(times == _NO_TIME, 0, times), unit="us", utc=True)
        frame.insert(3, "outcome_at", pd.Series(observed).where(times != _NO_TIME))
        return frame

    def save(self, path: str | Path) -> Path:
        """Write the library to one Parquet file (atomically)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = Path(path)
        table = pa.Table.from_pandas(self.to_frame(), preserve_index=False)
        config = {
            "format_version": FORMAT_VERSION,
            "features": list(self.features),
            "weights": self._weights.tolist(),
            "prior_strength": self.prior_strength,
            "prior_pd": self.prior_pd,
        }
        metadata = dict(table.schema.metadata or {})
        metadata[b"flowbureau.cases"] = json.dumps(config).encode()
        table = table.replace_schema_metadata(metadata)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            pq.write_table(table, temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return target

    @classmethod
    def load(cls, path: str | Path) -> CaseLibrary:
        """Read a library written by :meth:`save`."""
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read case library: {exc}", file=path) from exc
        raw = (table.schema.metadata or {}).get(b"flowbureau.cases")
        if raw is None:
            raise InputError("not a flowbureau case library (no metadata)", file=path)
        config = json.loads(raw)
        if config.get("format_version") != FORMAT_VERSION:
            raise InputError(
                f"case library format {config.get('format_version')} is not {FORMAT_VERSION}",
                file=path,
                field="format_version",
            )
        library = cls(
            config["features"],
            weights=dict(zip(config["features"], config["weights"], strict=True)),
            prior_strength=config["prior_strength"],
            prior_pd=config["prior_pd"],
        )
        frame = table.to_pandas()
        library.add_frame(
            frame,
            outcome_column="outcome",
            outcome_date_column="outcome_at",
        )
        return library

    # ------------------------------------------------------------------ internals
    def _vector(self, features: Mapping[str, Any], *, where: str) -> npt.NDArray[np.float64]:
        unknown = set(features) - set(self.features)
        if unknown:
            raise InputError(f"{where}: unknown features {sorted(unknown)}", field=min(unknown))
        out = np.full(len(self.features), np.nan)
        for j, name in enumerate(self.features):
            value = features.get(name)
            if value is None or value is pd.NA:
                continue
            if isinstance(value, str | bytes):
                raise InputError(f"{where}: feature is not a number: {value!r}", field=name)
            try:
                out[j] = float(value)
            except (TypeError, ValueError) as exc:
                raise InputError(
                    f"{where}: feature is not a number: {value!r}", field=name
                ) from exc
        return out

    def _checked_outcome(
        self, outcome: int | None, outcome_at: datetime | None, evaluated: int
    ) -> tuple[int, int]:
        if outcome is None:
            if outcome_at is not None:
                raise InputError("outcome_at given without an outcome", field="outcome_at")
            return -1, _NO_TIME
        if isinstance(outcome, bool) or outcome not in (0, 1):
            raise InputError(f"outcome must be 0 or 1, not {outcome!r}", field="outcome")
        if outcome_at is None:
            raise InputError("an outcome needs the time it was observed", field="outcome_at")
        when = _micros(outcome_at, "outcome_at")
        if when < evaluated:
            raise InputError("outcome observed before the evaluation", field="outcome_at")
        return int(outcome), when

    def _arrays(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        if self._cache is None:
            matrix = np.vstack(self._rows) if self._rows else np.empty((0, len(self.features)))
            self._cache = (matrix, np.asarray(self._outcome, dtype=np.int64))
        return self._cache

    def _eligible(
        self, as_of: datetime | None
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        _, outcomes = self._arrays()
        evaluated = np.asarray(self._evaluated, dtype=np.int64)
        outcome_at = np.asarray(self._outcome_at, dtype=np.int64)
        if as_of is None:
            return np.ones(len(self._ids), dtype=bool), outcomes >= 0
        cut = _micros(as_of, "as_of")
        return evaluated < cut, (outcomes >= 0) & (outcome_at <= cut)

    def _prior(self, as_of: datetime | None) -> float:
        if self.prior_pd is not None:
            return self.prior_pd
        eligible, known = self._eligible(as_of)
        _, outcomes = self._arrays()
        labelled = outcomes[eligible & known]
        if labelled.size == 0:
            raise ModelError("no labelled cases yet and no prior_pd configured")
        return float(labelled.mean())

    def _case(self, i: int, distance: float, known: npt.NDArray[np.bool_]) -> SimilarCase:
        matrix, outcomes = self._arrays()
        return SimilarCase(
            case_id=self._ids[i],
            similarity=1.0 / (1.0 + distance),
            distance=distance,
            outcome=int(outcomes[i]) if known[i] else None,
            evaluated_at=_from_micros(self._evaluated[i]),
            outcome_at=_from_micros(self._outcome_at[i]) if known[i] else None,
            features={
                f: None if np.isnan(v) else float(v)
                for f, v in zip(self.features, matrix[i], strict=True)
            },
        )


def _statistics(
    matrix: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Mean and standard deviation per feature (0 and 1 where undefined or constant)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: mean/std undefined
        mean = np.nanmean(matrix, axis=0)
        std = np.nanstd(matrix, axis=0)
    mean = np.where(np.isnan(mean), 0.0, mean)
    std = np.where(np.isnan(std) | (std == 0), 1.0, std)
    return mean, std


def _standardise(matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    mean, std = _statistics(matrix)
    return np.asarray((matrix - mean) / std, dtype=np.float64)


def _distances(
    cases: npt.NDArray[np.float64], query: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    mean, std = _statistics(cases)  # the query never shifts the statistics
    diff2 = ((cases - mean) / std - (query - mean) / std) ** 2
    present = ~np.isnan(diff2)
    weighted = np.where(present, diff2, 0.0) @ weights
    present_weight = present @ weights
    with np.errstate(divide="ignore", invalid="ignore"):
        d2 = np.where(present_weight > 0, weighted * weights.sum() / present_weight, np.inf)
    return np.asarray(np.sqrt(d2), dtype=np.float64)


def _micros(when: datetime, field: str) -> int:
    if not isinstance(when, datetime):
        raise InputError(f"{field} must be a datetime, not {type(when).__name__}", field=field)
    if when.tzinfo is None or when.utcoffset() is None:
        raise InputError(f"{field} must be time-zone aware", field=field)
    delta = when.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(value: int) -> datetime:
    return pd.Timestamp(value, unit="us", tz="UTC").to_pydatetime()


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, datetime):
        return value
    raise InputError(f"not a datetime: {value!r}", field="evaluated_at")


def _optional_datetime(value: Any) -> datetime | None:
    return None if value is None or pd.isna(value) else _as_datetime(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)
