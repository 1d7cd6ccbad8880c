"""Score history and alerts, in the service database (tables on the shared ``Base``).

Rules:
- Every evaluation is kept (:class:`ScoreEvaluation`): nothing is updated or deleted, so the
  history shows what the bureau said about an enterprise, when, with which model and data.
  Its data is JSON beside the headline numbers: reasons, similar cases, the feature values
  used, the data summary (entries, corrected entries, ``uses_corrected_values``), the sources.
- ``data_fingerprint`` identifies the inputs of an evaluation (model version, as-of date, the
  enterprise's own data); an incremental run re-evaluates an enterprise only when its
  fingerprint for that date and model differs from the latest stored one.
- An alert (:class:`ScoreAlert`) is raised when a new evaluation, compared with the
  enterprise's previous one (the latest stored before it, by as-of date then computation
  time), lowers the grade (``downgrade``; grades ranked by the master scale) or raises the PD by
  at least ``pd_jump`` (``pd_jump``); one alert per kind. Alerts are acknowledged, not deleted.
- Stored together: :func:`record_evaluations` adds evaluations and their alerts in the caller's
  transaction (the caller commits), so a crash stores both or neither.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from flowbureau.errors import NotFoundError
from flowbureau.storage.database import Base, UTCDateTime

__all__ = [
    "ALERT_KINDS",
    "ScoreAlert",
    "ScoreEvaluation",
    "acknowledge_alert",
    "evaluation_history",
    "latest_evaluation",
    "latest_fingerprints",
    "latest_score",
    "list_alerts",
    "record_evaluations",
]

ALERT_KINDS = ("downgrade", "pd_jump")
"""Kinds of score alerts."""


def _new_id() -> str:
    return str(uuid.uuid4())


class ScoreEvaluation(Base):
    """One evaluation of one enterprise as of a date (immutable)."""

    __tablename__ = "score_evaluations"
    __table_args__ = (
        sa.Index("ix_score_evaluations_enterprise_as_of", "enterprise_id", "as_of", "computed_at"),
        sa.Index("ix_score_evaluations_as_of_model", "as_of", "model_name", "model_version"),
        sa.CheckConstraint("pd >= 0 AND pd <= 1", name="pd_range"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_new_id)
    enterprise_id: Mapped[str] = mapped_column(sa.String(18))
    as_of: Mapped[date] = mapped_column(sa.Date())
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model_name: Mapped[str] = mapped_column(sa.String(100))
    model_version: Mapped[int] = mapped_column(sa.Integer())
    score: Mapped[int] = mapped_column(sa.Integer())
    pd: Mapped[float] = mapped_column(sa.Float())
    grade: Mapped[str] = mapped_column(sa.String(16))
    grade_rank: Mapped[int] = mapped_column(sa.Integer())
    challenger_score: Mapped[int | None] = mapped_column(sa.Integer())
    challenger_pd: Mapped[float | None] = mapped_column(sa.Float())
    challenger_grade: Mapped[str | None] = mapped_column(sa.String(16))
    case_pd: Mapped[float | None] = mapped_column(sa.Float())
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    cases: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    features: Mapped[dict[str, Any]] = mapped_column(sa.JSON())
    data_summary: Mapped[dict[str, Any]] = mapped_column(sa.JSON())
    sources: Mapped[list[str]] = mapped_column(sa.JSON())
    data_fingerprint: Mapped[str] = mapped_column(sa.String(64))


class ScoreAlert(Base):
    """A grade downgrade or PD jump between two evaluations of the same enterprise."""

    __tablename__ = "score_alerts"
    __table_args__ = (
        sa.Index("ix_score_alerts_enterprise_created", "enterprise_id", "created_at"),
        sa.CheckConstraint("kind IN ('downgrade', 'pd_jump')", name="kind"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_new_id)
    enterprise_id: Mapped[str] = mapped_column(sa.String(18))
    kind: Mapped[str] = mapped_column(sa.String(16))
    evaluation_id: Mapped[str] = mapped_column(sa.String(36), sa.ForeignKey("score_evaluations.id"))
    previous_evaluation_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("score_evaluations.id")
    )
    previous_grade: Mapped[str] = mapped_column(sa.String(16))
    grade: Mapped[str] = mapped_column(sa.String(16))
    previous_pd: Mapped[float] = mapped_column(sa.Float())
    pd: Mapped[float] = mapped_column(sa.Float())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


_NEWEST_FIRST = (
    ScoreEvaluation.as_of.desc(),
    ScoreEvaluation.computed_at.desc(),
    ScoreEvaluation.id,
)
_LATEST = (
    sa.select(ScoreEvaluation)
    .where(ScoreEvaluation.enterprise_id == sa.bindparam("enterprise_id"))
    .order_by(*_NEWEST_FIRST)
    .limit(1)
)
_LATEST_AS_OF = _LATEST.where(ScoreEvaluation.as_of <= sa.bindparam("as_of"))

SCORE_COLUMNS = (
    "enterprise_id",
    "as_of",
    "computed_at",
    "model_name",
    "model_version",
    "score",
    "pd",
    "grade",
    "reasons",
    "cases",
    "case_pd",
    "data_summary",
    "sources",
)
"""The columns a score read shows (not the feature values, the challenger or the fingerprint)."""

_table = ScoreEvaluation.__table__
_LATEST_SCORE = (
    sa.select(*(_table.c[name] for name in SCORE_COLUMNS))
    .where(_table.c.enterprise_id == sa.bindparam("enterprise_id"))
    .order_by(*_NEWEST_FIRST)
    .limit(1)
)
_LATEST_SCORE_AS_OF = _LATEST_SCORE.where(_table.c.as_of <= sa.bindparam("as_of"))
"""Built once: every score read (the open API's hottest route) runs one of them, in Core on
the session's connection, because building an ORM object and decoding the feature JSON was
the largest share of the route's CPU time."""


def latest_evaluation(
    db: Session, enterprise_id: str, *, as_of: date | None = None
) -> ScoreEvaluation | None:
    """The latest evaluation of ``enterprise_id`` as of ``as_of`` or earlier (any if None)."""
    if as_of is None:
        return db.execute(_LATEST, {"enterprise_id": enterprise_id}).scalar_one_or_none()
    return db.execute(
        _LATEST_AS_OF, {"enterprise_id": enterprise_id, "as_of": as_of}
    ).scalar_one_or_none()


def latest_score(db: Session, enterprise_id: str, *, as_of: date) -> sa.Row[Any] | None:
    """:data:`SCORE_COLUMNS` of the latest evaluation of ``enterprise_id`` as of ``as_of`` or
    earlier (the same evaluation :func:`latest_evaluation` returns), as a row."""
    return (
        db.connection()
        .execute(_LATEST_SCORE_AS_OF, {"enterprise_id": enterprise_id, "as_of": as_of})
        .one_or_none()
    )


def evaluation_history(
    db: Session, enterprise_id: str, *, limit: int = 50
) -> list[ScoreEvaluation]:
    """The enterprise's evaluations, newest first (by as-of date, then computation time)."""
    query = (
        sa.select(ScoreEvaluation)
        .where(ScoreEvaluation.enterprise_id == enterprise_id)
        .order_by(ScoreEvaluation.as_of.desc(), ScoreEvaluation.computed_at.desc())
        .limit(limit)
    )
    return list(db.execute(query).scalars())


def latest_fingerprints(
    db: Session, *, as_of: date, model_name: str, model_version: int
) -> dict[str, str]:
    """Enterprise id -> fingerprint of its latest evaluation for this date and model."""
    query = (
        sa.select(
            ScoreEvaluation.enterprise_id,
            ScoreEvaluation.data_fingerprint,
            ScoreEvaluation.computed_at,
        )
        .where(
            ScoreEvaluation.as_of == as_of,
            ScoreEvaluation.model_name == model_name,
            ScoreEvaluation.model_version == model_version,
        )
        .order_by(ScoreEvaluation.computed_at)
    )
    return {row.enterprise_id: row.data_fingerprint for row in db.execute(query)}


def record_evaluations(
    db: Session,
    evaluations: Sequence[ScoreEvaluation],
    *,
    pd_jump: float,
    now: datetime,
) -> list[ScoreAlert]:
    """Add ``evaluations`` and the alerts they raise against each enterprise's previous one."""
    previous = _previous_evaluations(db, evaluations)
    ordered = sorted(evaluations, key=lambda e: (e.as_of, e.computed_at))
    for evaluation in ordered:
        evaluation.id = evaluation.id or _new_id()
        db.add(evaluation)
    db.flush()  # alerts refer to the evaluations: insert those first
    alerts: list[ScoreAlert] = []
    for evaluation in ordered:
        before = previous.get(evaluation.enterprise_id)
        if before is None or before.as_of > evaluation.as_of:
            before = _latest_before(db, evaluation)
        previous[evaluation.enterprise_id] = evaluation
        if before is None:
            continue
        for kind in _alert_kinds(before, evaluation, pd_jump):
            alert = ScoreAlert(
                id=_new_id(),
                enterprise_id=evaluation.enterprise_id,
                kind=kind,
                evaluation_id=evaluation.id,
                previous_evaluation_id=before.id,
                previous_grade=before.grade,
                grade=evaluation.grade,
                previous_pd=before.pd,
                pd=evaluation.pd,
                created_at=now,
            )
            db.add(alert)
            alerts.append(alert)
    db.flush()
    return alerts


def _previous_evaluations(
    db: Session, evaluations: Sequence[ScoreEvaluation]
) -> dict[str, ScoreEvaluation]:
    """Latest stored evaluation per enterprise, as of the latest date in ``evaluations``."""
    if not evaluations:
        return {}
    ids = sorted({e.enterprise_id for e in evaluations})
    last = max(e.as_of for e in evaluations)
    out: dict[str, ScoreEvaluation] = {}
    for start in range(0, len(ids), 500):
        ranked = (
            sa.select(
                ScoreEvaluation.id,
                sa.func.row_number()
                .over(
                    partition_by=ScoreEvaluation.enterprise_id,
                    order_by=(ScoreEvaluation.as_of.desc(), ScoreEvaluation.computed_at.desc()),
                )
                .label("rank"),
            )
            .where(
                ScoreEvaluation.enterprise_id.in_(ids[start : start + 500]),
                ScoreEvaluation.as_of <= last,
            )
            .subquery()
        )
        query = sa.select(ScoreEvaluation).join(ranked, ranked.c.id == ScoreEvaluation.id)
        for row in db.execute(query.where(ranked.c.rank == 1)).scalars():
            out[row.enterprise_id] = row
    return out


def _latest_before(db: Session, evaluation: ScoreEvaluation) -> ScoreEvaluation | None:
    query = (
        sa.select(ScoreEvaluation)
        .where(
            ScoreEvaluation.enterprise_id == evaluation.enterprise_id,
            ScoreEvaluation.as_of <= evaluation.as_of,
            ScoreEvaluation.id != evaluation.id,
        )
        .order_by(ScoreEvaluation.as_of.desc(), ScoreEvaluation.computed_at.desc())
        .limit(1)
    )
    return db.execute(query).scalar_one_or_none()


def _alert_kinds(
    previous: ScoreEvaluation, current: ScoreEvaluation, pd_jump: float
) -> Iterable[str]:
    if current.grade_rank > previous.grade_rank:
        yield "downgrade"
    if current.pd - previous.pd >= pd_jump:
        yield "pd_jump"


def list_alerts(
    db: Session,
    *,
    enterprise_id: str | None = None,
    unacknowledged: bool = False,
    limit: int = 100,
) -> list[ScoreAlert]:
    """Alerts, newest first, optionally of one enterprise or only unacknowledged ones."""
    query = sa.select(ScoreAlert)
    if enterprise_id is not None:
        query = query.where(ScoreAlert.enterprise_id == enterprise_id)
    if unacknowledged:
        query = query.where(ScoreAlert.acknowledged_at.is_(None))
    query = query.order_by(ScoreAlert.created_at.desc(), ScoreAlert.id).limit(limit)
    return list(db.execute(query).scalars())


def acknowledge_alert(db: Session, alert_id: str, *, now: datetime) -> ScoreAlert:
    """Mark an alert acknowledged (idempotent); NotFoundError when there is none."""
    alert = db.get(ScoreAlert, alert_id)
    if alert is None:
        raise NotFoundError(f"no score alert {alert_id!r}")
    if alert.acknowledged_at is None:
        alert.acknowledged_at = now
    return alert
