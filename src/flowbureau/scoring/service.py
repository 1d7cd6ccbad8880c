"""The scoring engine behind the service's provider and evaluator protocols.

Rules:
- :class:`ScoringProvider` implements :class:`~flowbureau.service.providers.
  EnterpriseDataProvider`: scores come from the score history (the latest evaluation as of the
  requested day or earlier; ``None`` when there is none), everything else (search, transaction
  summaries, registration facts) from the provider it wraps, so the warehouse provider keeps
  its job and a report shows the stored score.
- :func:`score_view` carries everything an analyst sees of a stored evaluation (a
  :class:`~flowbureau.scoring.history.ScoreEvaluation` or a :func:`~flowbureau.scoring.history.
  latest_score` row, which reads only these columns): score, PD, grade,
  reasons with the points they cost, the similar past cases (id, similarity, outcome, when
  evaluated and when the outcome was observed) and the PD they imply (``case_pd``),
  ``uses_corrected_values`` (scoring reads the effective amounts, so a stored evaluation says
  true) with ``corrected_entries`` (entries whose amount an anomaly correction replaced), and
  the sources that contributed (``cashflow``, ``public_records``, ``industry``, ``macro``,
  ``graph``, plug-ins). An evaluation stored before these were recorded shows them as absent
  (``None`` / empty), never guessed.
- :class:`ScoringEvaluator` implements :class:`~flowbureau.service.providers.Evaluator`: an
  application is evaluated on the spot with the latest saved model, as of the application's
  day, and the evaluation (with any alert) is stored in the request's database session, so it
  commits or rolls back with the request. ``None`` while no model is saved or the warehouse
  holds no entries of the enterprise before that day.
- :class:`ModelCache` loads the model once per process and again only when a newer version is
  saved (one directory listing per request).
- :func:`plug_into` wires both into a :class:`~flowbureau.service.context.ServiceContext`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from flowbureau.config import Settings
from flowbureau.scoring.artefacts import model_label
from flowbureau.scoring.evaluation import CreditEvaluator, newest_version
from flowbureau.scoring.history import latest_score, record_evaluations
from flowbureau.service.context import ServiceContext
from flowbureau.service.providers import (
    EnterpriseDataProvider,
    EnterpriseSummary,
    Evaluator,
    ReasonView,
    ReportView,
    ScoreView,
    SimilarCaseView,
    TransactionsSummaryView,
)
from flowbureau.storage.warehouse import Warehouse

__all__ = [
    "ModelCache",
    "ScoringEvaluator",
    "ScoringProvider",
    "StoredScore",
    "plug_into",
    "score_view",
]


class StoredScore(Protocol):
    """What :func:`score_view` reads of a stored evaluation (the score history's column names)."""

    @property
    def enterprise_id(self) -> str: ...
    @property
    def as_of(self) -> date: ...
    @property
    def computed_at(self) -> datetime: ...
    @property
    def model_name(self) -> str: ...
    @property
    def model_version(self) -> int: ...
    @property
    def score(self) -> int: ...
    @property
    def pd(self) -> float: ...
    @property
    def grade(self) -> str: ...
    @property
    def reasons(self) -> list[dict[str, Any]]: ...
    @property
    def cases(self) -> list[dict[str, Any]]: ...
    @property
    def case_pd(self) -> float | None: ...
    @property
    def data_summary(self) -> dict[str, Any]: ...
    @property
    def sources(self) -> list[str]: ...


def score_view(stored: StoredScore) -> ScoreView:
    """The service's view of a stored evaluation: score, PD, grade, reasons (points lost), the
    similar past cases with their outcomes and the PD they imply, whether (and for how many
    entries) anomaly-corrected amounts were used, and the data sources that contributed."""
    data = stored.data_summary
    corrected = data.get("corrected_entries")
    uses_corrected = data.get("uses_corrected_values")
    return ScoreView(
        credit_code=stored.enterprise_id,
        as_of=stored.as_of,
        pd=stored.pd,
        score=stored.score,
        grade=stored.grade,
        reasons=[
            ReasonView(
                code=str(r["feature"]),
                description=str(r["description"]),
                points=round(float(r["points_lost"])),
            )
            for r in stored.reasons
        ],
        model_version=model_label(stored.model_name, stored.model_version),
        computed_at=stored.computed_at,
        similar_cases=[_case_view(case) for case in stored.cases],
        case_pd=stored.case_pd,
        uses_corrected_values=None if uses_corrected is None else bool(uses_corrected),
        corrected_entries=None if corrected is None else int(corrected),
        sources=list(stored.sources),
    )


def _case_view(case: dict[str, Any]) -> SimilarCaseView:
    """A stored case (:meth:`~flowbureau.scoring.cases.SimilarCase.as_evidence`) as a view."""
    outcome = case.get("outcome")
    outcome_at = case.get("outcome_at")
    return SimilarCaseView(
        case_id=str(case["case_id"]),
        similarity=float(case["similarity"]),
        outcome=None if outcome is None else int(outcome),
        evaluated_at=datetime.fromisoformat(str(case["evaluated_at"])),
        outcome_at=None if outcome_at is None else datetime.fromisoformat(str(outcome_at)),
    )


class ScoringProvider:
    """Scores from the score history; search, summaries and reports from ``base``."""

    def __init__(self, db: Session, base: EnterpriseDataProvider) -> None:
        self._db = db
        self._base = base

    def search(self, q: str, *, within: Collection[str], limit: int) -> Sequence[EnterpriseSummary]:
        """The wrapped provider's search."""
        return self._base.search(q, within=within, limit=limit)

    def score(self, credit_code: str, as_of: date) -> ScoreView | None:
        """The latest stored evaluation as of ``as_of`` or earlier."""
        row = latest_score(self._db, credit_code, as_of=as_of)
        return None if row is None else score_view(row)

    def transactions_summary(self, credit_code: str, as_of: date) -> TransactionsSummaryView | None:
        """The wrapped provider's transaction summary."""
        return self._base.transactions_summary(credit_code, as_of)

    def report(self, credit_code: str, as_of: date) -> ReportView | None:
        """The wrapped provider's report with the stored score."""
        report = self._base.report(credit_code, as_of)
        if report is None:
            return None
        return report.model_copy(update={"score": self.score(credit_code, as_of)})


class ModelCache:
    """The latest saved credit model, loaded once and reloaded when a newer one is saved."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._evaluator: CreditEvaluator | None = None

    def get(self) -> CreditEvaluator | None:
        """The evaluator of the newest model (``None`` while none is saved)."""
        newest = newest_version(self._settings)
        if newest is None:
            return None
        with self._lock:
            if self._evaluator is None or self._evaluator.model_version != newest:
                self._evaluator = CreditEvaluator.load(self._settings, version=newest)
            return self._evaluator


class ScoringEvaluator:
    """Evaluates an application now, stores the evaluation in the request's session."""

    def __init__(
        self,
        db: Session,
        *,
        models: ModelCache,
        warehouse: Warehouse,
        pd_jump: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._models = models
        self._warehouse = warehouse
        self._pd_jump = pd_jump
        self._clock = clock

    def evaluate(self, *, credit_code: str, as_of: date) -> ScoreView | None:
        """Score the enterprise as of ``as_of`` (``None`` without a model or its data)."""
        evaluator = self._models.get()
        if evaluator is None:
            return None
        now = self._clock()
        with self._warehouse.connect() as engine:
            evaluations = evaluator.evaluate(engine, as_of, enterprises=[credit_code], now=now)
        if not evaluations:
            return None
        record = evaluations[0].to_record()
        record_evaluations(self._db, [record], pd_jump=self._pd_jump, now=now)
        return score_view(record)


def plug_into(context: ServiceContext) -> None:
    """Serve scores from the score history and evaluate applications with the credit model."""
    settings = context.settings
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    models = ModelCache(settings)
    base_factory = context.provider_factory

    def provider(db: Session) -> EnterpriseDataProvider:
        return ScoringProvider(db, base_factory(db))

    def evaluator(db: Session) -> Evaluator:
        return ScoringEvaluator(
            db,
            models=models,
            warehouse=warehouse,
            pd_jump=settings.scoring.pd_jump_alert,
            clock=context.clock,
        )

    context.provider_factory = provider
    context.evaluator_factory = evaluator
