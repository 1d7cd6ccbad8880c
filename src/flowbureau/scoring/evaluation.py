"""Evaluation of enterprises: features as of a date -> champion rating, challenger (shadow),
similar cases -> stored score history, incremental re-scoring and alerts.

Rules:
- An evaluation of enterprise ``e`` as of day ``D`` uses only data booked before ``D`` (see
  :mod:`flowbureau.scoring.features`) and the latest saved credit model. It carries: score,
  calibrated PD, grade and reason codes of the champion scorecard; the challenger's rating
  (shadow, never the decision); the PD implied by the most similar historical cases and those
  cases with their outcomes (only cases evaluated before ``D`` with outcomes observed by then);
  the model name and version; the feature values used; the data summary (entries read,
  ``uses_corrected_values: true`` with the count of entries whose amount an anomaly correction
  replaced, banks, first and latest entry day); and the sources that contributed.
- **Incremental**: an enterprise's *data fingerprint* hashes the model version, ``D``, the
  shared inputs (macro values, which record kinds are loaded) and the enterprise's own data
  before ``D`` (entry count, effective-amount total, latest ingest, corrections, resolved
  counterparties, flags, anomaly scores, its public records, its plug-in feature rows).
  :meth:`CreditEvaluator.run` re-evaluates only enterprises whose fingerprint differs from the
  one of their latest stored evaluation for ``D`` and this model: new data for one enterprise
  re-scores it alone. The industry trend is shared by a division; a change elsewhere in the
  division is picked up when the enterprise's own data changes, or by ``full=True``.
- Evaluations and their alerts are stored in one transaction of the service database
  (:mod:`flowbureau.scoring.history`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session, sessionmaker

from flowbureau.config import Settings
from flowbureau.errors import ModelError
from flowbureau.scoring.artefacts import Artefact, list_versions, load_model, model_label
from flowbureau.scoring.assembly import (
    CashflowSource,
    FeatureSet,
    FeatureSource,
    FrameSource,
    assemble_features,
    default_sources,
)
from flowbureau.scoring.external import ExternalData, load_external, macro_features
from flowbureau.scoring.features import (
    FEATURE_NAMES,
    check_enterprises,
    cutoff_instant,
    entries_digest_sql,
    month_start,
)
from flowbureau.scoring.history import (
    ScoreAlert,
    ScoreEvaluation,
    latest_fingerprints,
    record_evaluations,
)
from flowbureau.scoring.reasons import json_safe
from flowbureau.scoring.training import CreditModel
from flowbureau.storage.database import session_scope
from flowbureau.storage.engine import Engine
from flowbureau.storage.warehouse import Warehouse

__all__ = [
    "CreditEvaluator",
    "Evaluation",
    "RunReport",
    "external_dirs",
    "models_dir",
    "newest_version",
]

_IN_LIST_LIMIT = 500
"""Above this many enterprises a feature query reads everyone and filters afterwards."""


def models_dir(settings: Settings) -> Path:
    """The artefact store of credit models (``scoring.models_dir`` or ``data_dir/models``)."""
    return settings.scoring.models_dir or settings.data_dir / "models"


def external_dirs(settings: Settings) -> list[Path]:
    """The external-data directory, when it exists (``scoring.external_dir``)."""
    directory = settings.scoring.external_dir or settings.data_dir / "external"
    return [directory] if directory.is_dir() else []


@dataclass(frozen=True)
class Evaluation:
    """One enterprise's evaluation as of a date (see the module rules for every part)."""

    enterprise_id: str
    as_of: date
    score: int
    pd: float
    grade: str
    grade_rank: int
    reasons: list[dict[str, Any]]
    challenger: dict[str, Any] | None
    case_pd: float | None
    cases: list[dict[str, Any]]
    model_name: str
    model_version: int
    features: dict[str, Any]
    data: dict[str, Any]
    sources: list[str]
    data_fingerprint: str
    computed_at: datetime
    id: str | None = None

    @property
    def model(self) -> str:
        """``name/vNNNN`` of the model that made it."""
        return model_label(self.model_name, self.model_version)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (dates ISO)."""
        return {
            "id": self.id,
            "enterprise_id": self.enterprise_id,
            "as_of": self.as_of.isoformat(),
            "score": self.score,
            "pd": self.pd,
            "grade": self.grade,
            "reasons": self.reasons,
            "challenger": self.challenger,
            "case_pd": self.case_pd,
            "similar_cases": self.cases,
            "model": self.model,
            "data": self.data,
            "sources": self.sources,
            "features": self.features,
            "computed_at": self.computed_at.isoformat(),
        }

    def to_record(self) -> ScoreEvaluation:
        """The row stored in the score history."""
        challenger = self.challenger or {}
        return ScoreEvaluation(
            id=self.id,
            enterprise_id=self.enterprise_id,
            as_of=self.as_of,
            computed_at=self.computed_at,
            model_name=self.model_name,
            model_version=self.model_version,
            score=self.score,
            pd=self.pd,
            grade=self.grade,
            grade_rank=self.grade_rank,
            challenger_score=challenger.get("score"),
            challenger_pd=challenger.get("pd"),
            challenger_grade=challenger.get("grade"),
            case_pd=self.case_pd,
            reasons=self.reasons,
            cases=self.cases,
            features=self.features,
            data_summary=self.data,
            sources=self.sources,
            data_fingerprint=self.data_fingerprint,
        )

    @classmethod
    def from_record(cls, record: ScoreEvaluation) -> Evaluation:
        """The evaluation a stored row holds."""
        challenger = None
        if record.challenger_score is not None:
            challenger = {
                "score": record.challenger_score,
                "pd": record.challenger_pd,
                "grade": record.challenger_grade,
            }
        return cls(
            enterprise_id=record.enterprise_id,
            as_of=record.as_of,
            score=record.score,
            pd=record.pd,
            grade=record.grade,
            grade_rank=record.grade_rank,
            reasons=list(record.reasons),
            challenger=challenger,
            case_pd=record.case_pd,
            cases=list(record.cases),
            model_name=record.model_name,
            model_version=record.model_version,
            features=dict(record.features),
            data=dict(record.data_summary),
            sources=list(record.sources),
            data_fingerprint=record.data_fingerprint,
            computed_at=record.computed_at,
            id=record.id,
        )


@dataclass
class RunReport:
    """What one scoring run did."""

    as_of: date
    model: str
    population: int = 0
    evaluated: int = 0
    unchanged: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    grades: dict[str, int] = field(default_factory=dict)
    missing_features: list[str] = field(default_factory=list)
    """Model inputs no source produced (their source is unavailable): scored as missing."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "as_of": self.as_of.isoformat(),
            "model": self.model,
            "population": self.population,
            "evaluated": self.evaluated,
            "unchanged": self.unchanged,
            "grades": dict(sorted(self.grades.items())),
            "alerts": self.alerts,
            "missing_features": self.missing_features,
        }


class CreditEvaluator:
    """A loaded credit model with its feature sources; evaluates enterprises as of a date."""

    def __init__(
        self,
        artefact: Artefact,
        *,
        external: ExternalData | None = None,
        timezone: str = "Asia/Shanghai",
        currency: str = "CNY",
        similar_cases: int = 5,
        reasons: int = 4,
        extra_sources: Sequence[FeatureSource] = (),
        graph: bool = True,
    ) -> None:
        if not isinstance(artefact.model, CreditModel):
            raise ModelError(
                f"{artefact.path} holds a {type(artefact.model).__name__}, not a CreditModel"
            )
        self.artefact = artefact
        self.model: CreditModel = artefact.model
        self.external = external
        self.timezone = timezone
        self.currency = currency
        self.similar_cases = similar_cases
        self.reasons = reasons
        inputs = [str(n) for n in self.model.feature_names_in_]
        self.sources: list[FeatureSource] = [
            CashflowSource(
                timezone, currency, features=tuple(n for n in inputs if n in FEATURE_NAMES)
            )
        ]
        for source in [
            *default_sources(external, timezone=timezone, currency=currency, graph=graph)[1:],
            *extra_sources,
        ]:
            provides = getattr(source, "provides", None)
            if provides is None or any(provides(n) for n in inputs):
                self.sources.append(source)
        self.scale = self.model.champion_.scale_
        self.last_missing_features: list[str] = []
        """Model inputs the latest :meth:`evaluate` found no source for."""

    @classmethod
    def load(
        cls,
        settings: Settings,
        *,
        version: int | None = None,
        external: ExternalData | None = None,
        graph: bool = True,
    ) -> CreditEvaluator:
        """The latest (or ``version``) saved model of the settings, with their external data."""
        artefact = load_model(models_dir(settings), settings.scoring.model_name, version)
        if external is None:
            external = load_external(*external_dirs(settings))
        return cls(
            artefact,
            external=external,
            timezone=settings.timezone,
            currency=settings.scoring.currency,
            similar_cases=settings.scoring.similar_cases,
            graph=graph,
        )

    @property
    def model_name(self) -> str:
        """The artefact's name."""
        return self.artefact.manifest.name

    @property
    def model_version(self) -> int:
        """The artefact's version."""
        return self.artefact.manifest.version

    # ------------------------------------------------------------------ features and rating
    def features(
        self, engine: Engine, as_of: date, *, enterprises: Sequence[str] | None = None
    ) -> FeatureSet:
        """The features of the sources the model uses as of ``as_of`` (the cash-flow query
        computes only the model's cash-flow inputs)."""
        return assemble_features(engine, as_of, self.sources, enterprises=enterprises)

    def model_inputs(self, features: FeatureSet) -> pd.DataFrame:
        """The model's feature columns, in training order (absent sources -> NaN)."""
        names = [str(n) for n in self.model.feature_names_in_]
        return features.features.reindex(columns=names).astype("float64")

    def missing_features(self, features: FeatureSet) -> list[str]:
        """Model inputs that no source produced (scored as missing values)."""
        produced = set(features.features.columns)
        return [str(n) for n in self.model.feature_names_in_ if str(n) not in produced]

    def rate(self, features: FeatureSet) -> pd.DataFrame:
        """Champion score, PD and grade per enterprise (the fast batch path)."""
        return self.model.rate(self.model_inputs(features))

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        engine: Engine,
        as_of: date,
        *,
        enterprises: Sequence[str] | None = None,
        fingerprints: dict[str, str] | None = None,
        now: datetime | None = None,
    ) -> list[Evaluation]:
        """Evaluate ``enterprises`` (default: everyone with data) as of ``as_of``."""
        now = now or datetime.now(UTC)
        wanted = None if enterprises is None else check_enterprises(enterprises)
        restrict = wanted if wanted is not None and len(wanted) <= _IN_LIST_LIMIT else None
        features = self.features(engine, as_of, enterprises=restrict)
        if wanted is not None:
            keep = features.features.index.isin(list(wanted))
            features = FeatureSet(
                features.as_of,
                features.features[keep],
                features.summary[keep],
                features.coverage[keep],
                features.sources,
            )
        self.last_missing_features = self.missing_features(features)
        if features.features.empty:
            return []
        if fingerprints is None:
            fingerprints = self.fingerprints(engine, as_of, enterprises=wanted)
        X = self.model_inputs(features)
        champion = self.model.champion_
        rating = champion.rate(X)
        reasons = champion.reasons(X, k=self.reasons)
        shadow = self.model.challenger_.rate(X) if self.model.challenger_ is not None else None
        cases = self._cases(X, as_of)
        ranks = dict(zip(self.scale.names, range(len(self.scale.names)), strict=True))
        out: list[Evaluation] = []
        for i, enterprise in enumerate(X.index):
            row = rating.iloc[i]
            summary = features.summary.iloc[i]
            challenger = None
            if shadow is not None:
                other = shadow.iloc[i]
                challenger = {
                    "score": int(other["score"]),
                    "pd": float(other["pd"]),
                    "grade": str(other["grade"]),
                }
            case_pd, similar = cases[i]
            out.append(
                Evaluation(
                    enterprise_id=str(enterprise),
                    as_of=as_of,
                    score=int(row["score"]),
                    pd=float(row["pd"]),
                    grade=str(row["grade"]),
                    grade_rank=ranks[str(row["grade"])],
                    reasons=[r.as_dict() for r in reasons[i]],
                    challenger=challenger,
                    case_pd=case_pd,
                    cases=similar,
                    model_name=self.model_name,
                    model_version=self.model_version,
                    features={str(k): json_safe(v) for k, v in X.iloc[i].items()},
                    data=_data_summary(summary, as_of),
                    sources=features.sources_of(str(enterprise)),
                    data_fingerprint=fingerprints.get(str(enterprise), ""),
                    computed_at=now,
                )
            )
        return out

    def _cases(
        self, X: pd.DataFrame, as_of: date
    ) -> list[tuple[float | None, list[dict[str, Any]]]]:
        library = self.artefact.cases
        if library is None or self.similar_cases == 0:
            return [(None, [])] * len(X)
        woe = self.model.scorecard_.woe(X)
        when = cutoff_instant(as_of, self.timezone)
        k = max(self.similar_cases, 20)
        out: list[tuple[float | None, list[dict[str, Any]]]] = []
        for record in woe.reindex(columns=list(library.features)).to_dict("records"):
            query = {str(n): v for n, v in record.items()}
            shown = library.query(query, self.similar_cases, as_of=when)
            try:
                risk: float | None = float(library.predict_risk(query, k=k, as_of=when).pd)
            except ModelError:  # no case has a known outcome yet as of this date
                risk = None
            out.append((risk, [c.as_evidence() for c in shown]))
        return out

    # ------------------------------------------------------------------ incremental runs
    def fingerprints(
        self, engine: Engine, as_of: date, *, enterprises: Sequence[str] | None = None
    ) -> dict[str, str]:
        """Data fingerprint per enterprise with entries before ``as_of`` (module rules)."""
        restrict = (
            enterprises if enterprises is not None and len(enterprises) <= _IN_LIST_LIMIT else None
        )
        rows = engine.query(
            entries_digest_sql(as_of, timezone=self.timezone, enterprises=restrict)
        ).to_pylist()
        shared = self._shared_digest(as_of)
        wanted = None if enterprises is None else set(enterprises)
        own = self._external_digests(as_of, wanted)
        plugged = self._plugin_digests(engine, as_of)
        out: dict[str, str] = {}
        for row in rows:
            code = str(row["enterprise_id"])
            if wanted is not None and code not in wanted:
                continue
            payload = json.dumps(
                [shared, row, own.get(code), plugged.get(code)], default=str, sort_keys=True
            )
            out[code] = hashlib.sha256(payload.encode("utf-8")).hexdigest()
        return out

    def _shared_digest(self, as_of: date) -> str:
        """Inputs every enterprise shares: model, date, macro values, which kinds are loaded."""
        macro = (
            None
            if self.external is None or self.external.macro is None
            else macro_features(self.external.macro, as_of)
        )
        kinds = [] if self.external is None else sorted(self.external.records)
        payload = json.dumps(
            [self.model_name, self.model_version, as_of.isoformat(), macro, kinds],
            default=str,
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _external_digests(self, as_of: date, wanted: set[str] | None) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        if self.external is None:
            return out
        for kind, every in sorted(self.external.records.items()):
            table = every
            if wanted is not None:
                table = every.filter(
                    pc.is_in(every.column("credit_code"), pa.array(sorted(wanted)))
                )
            if kind == "registry":
                pairs = zip(
                    table.column("credit_code").to_pylist(),
                    table.column("division").to_pylist(),
                    strict=True,
                )
                for code, division in pairs:
                    out.setdefault(code, []).append([kind, division])
                continue
            day = "opened_on" if kind == "online_lending" else "date"
            for row in table.to_pylist():
                if row[day] < as_of:
                    out.setdefault(row["credit_code"], []).append([kind, row])
        return out

    def _plugin_digests(self, engine: Engine, as_of: date) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for source in self.sources:
            if isinstance(source, FrameSource):
                frame = source.compute(engine, as_of, None).frame
                for code, values in frame.iterrows():
                    out.setdefault(str(code), []).append(
                        [source.name, [json_safe(v) for v in values.tolist()]]
                    )
        return out

    def run(
        self,
        *,
        warehouse: Warehouse,
        sessions: sessionmaker[Session],
        as_of: date,
        pd_jump: float,
        full: bool = False,
        enterprises: Sequence[str] | None = None,
        now: datetime | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> RunReport:
        """Re-evaluate whoever needs it as of ``as_of``, store the evaluations and alerts."""
        now = now or datetime.now(UTC)
        step = on_step or (lambda _message: None)
        report = RunReport(as_of=as_of, model=model_label(self.model_name, self.model_version))
        wanted = None if enterprises is None else check_enterprises(enterprises)
        with warehouse.connect() as engine:
            step("fingerprinting the data")
            digests = self.fingerprints(engine, as_of, enterprises=wanted)
            report.population = len(digests)
            with session_scope(sessions) as db:
                stored = latest_fingerprints(
                    db, as_of=as_of, model_name=self.model_name, model_version=self.model_version
                )
            todo = sorted(e for e, digest in digests.items() if full or stored.get(e) != digest)
            report.unchanged = len(digests) - len(todo)
            if not todo:
                return report
            step(f"evaluating {len(todo)} enterprise(s)")
            evaluations = self.evaluate(
                engine,
                as_of,
                enterprises=None if len(todo) == len(digests) and wanted is None else todo,
                fingerprints=digests,
                now=now,
            )
        step("storing the evaluations")
        with session_scope(sessions) as db:
            alerts = record_evaluations(
                db, [e.to_record() for e in evaluations], pd_jump=pd_jump, now=now
            )
            report.alerts = [_alert_json(a) for a in alerts]
        report.evaluated = len(evaluations)
        report.missing_features = list(self.last_missing_features)
        for evaluation in evaluations:
            report.grades[evaluation.grade] = report.grades.get(evaluation.grade, 0) + 1
        return report


def newest_version(settings: Settings) -> int | None:
    """The newest saved version of the configured model (``None`` when none is saved)."""
    versions = list_versions(models_dir(settings), settings.scoring.model_name)
    return versions[-1] if versions else None


def _data_summary(summary: pd.Series, as_of: date) -> dict[str, Any]:
    def day(value: Any) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
            return None
        return pd.Timestamp(value).date().isoformat()

    return {
        "window_start": month_start(as_of, 24).isoformat(),
        "window_end_exclusive": as_of.isoformat(),
        "entries": int(summary["data_entries"]),
        "corrected_entries": int(summary["data_corrected_entries"]),
        "uses_corrected_values": True,
        "banks": int(summary["data_banks"]),
        "first_entry_day": day(summary["data_first_day"]),
        "latest_entry_day": day(summary["data_last_day"]),
    }


def _alert_json(alert: ScoreAlert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "enterprise_id": alert.enterprise_id,
        "kind": alert.kind,
        "previous_grade": alert.previous_grade,
        "grade": alert.grade,
        "previous_pd": alert.previous_pd,
        "pd": alert.pd,
    }
