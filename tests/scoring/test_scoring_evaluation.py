"""Evaluation: what an evaluation carries, SQL export equality, incremental runs, alerts,
score history and the service protocols."""

from __future__ import annotations

import shutil
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from scoring_data import code, contribute, tx

from conftest import Trained
from flowbureau.config import get_settings
from flowbureau.scoring.artefacts import load_model
from flowbureau.scoring.assembly import FrameSource
from flowbureau.scoring.evaluation import CreditEvaluator, Evaluation
from flowbureau.scoring.external import ExternalData
from flowbureau.scoring.features import cashflow_sql
from flowbureau.scoring.history import (
    ScoreAlert,
    ScoreEvaluation,
    acknowledge_alert,
    evaluation_history,
    latest_evaluation,
    latest_score,
    list_alerts,
    record_evaluations,
)
from flowbureau.scoring.service import (
    ModelCache,
    ScoringEvaluator,
    ScoringProvider,
    score_view,
)
from flowbureau.service.providers import (
    EnterpriseSummary,
    ReportView,
    ScoreView,
    TransactionsSummaryView,
)
from flowbureau.storage.database import (
    make_engine,
    session_factory,
    session_scope,
    upgrade_database,
)
from flowbureau.storage.warehouse import Warehouse

AS_OF = date(2024, 6, 1)
NOW = datetime(2024, 6, 1, 8, tzinfo=UTC)


@pytest.fixture
def warehouse(trained: Trained, tmp_path: Path) -> Warehouse:
    """A private copy of the trained consortium's warehouse (tests may add data)."""
    shutil.copytree(trained.warehouse_root, tmp_path / "warehouse")
    return Warehouse(tmp_path / "warehouse")


@pytest.fixture
def evaluator(trained: Trained) -> CreditEvaluator:
    return CreditEvaluator(load_model(trained.models_root, "credit"), graph=False)


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sa.orm.sessionmaker[sa.orm.Session]]:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def test_an_evaluation_carries_rating_shadow_cases_data_and_sources(
    trained: Trained, warehouse: Warehouse
) -> None:
    enterprises = trained.consortium.enterprises
    first, second = enterprises[0], enterprises[1]
    fixed = [
        tx(
            "fix-1",
            first,
            datetime(2024, 5, 3, 2, tzinfo=UTC),
            10**9,
            corrected_amount_minor=10**7,
            correction_id="corr-1",
            account_id="acct-0",
        ),
        tx(
            "fix-2",
            first,
            datetime(2024, 5, 4, 2, tzinfo=UTC),
            10**9,
            corrected_amount_minor=10**7,
            correction_id="corr-2",
            account_id="acct-0",
        ),
    ]
    contribute(warehouse, fixed)
    graph = pd.DataFrame({"pagerank": [0.5]}, index=pd.Index([second], name="enterprise_id"))
    evaluator = CreditEvaluator(
        load_model(trained.models_root, "credit"),
        graph=False,
        extra_sources=[FrameSource("graph", lambda _as_of: graph, prefix="graph_")],
    )
    with warehouse.connect() as engine:
        evaluations = {e.enterprise_id: e for e in evaluator.evaluate(engine, AS_OF, now=NOW)}
    assert set(evaluations) <= set(enterprises)
    one = evaluations[first]
    assert 0 < one.pd < 1
    assert one.grade in evaluator.scale.names
    assert one.grade_rank == evaluator.scale.names.index(one.grade)
    assert one.model == f"credit/v{evaluator.model_version:04d}"
    assert one.challenger is not None
    assert 0 < one.challenger["pd"] < 1
    assert 1 <= len(one.reasons) <= 4
    assert all(r["points_lost"] > 0 for r in one.reasons)
    assert 1 <= len(one.cases) <= 5
    cutoff = datetime(2024, 5, 31, 16, tzinfo=UTC)
    assert all(datetime.fromisoformat(c["evaluated_at"]) < cutoff for c in one.cases)
    assert one.case_pd is not None
    assert one.data["uses_corrected_values"] is True
    assert one.data["corrected_entries"] == 2
    assert evaluations[second].data["corrected_entries"] == 0
    assert one.data["latest_entry_day"] < AS_OF.isoformat()
    assert one.sources == ["cashflow"]
    assert evaluations[second].sources == ["cashflow", "graph"]
    assert set(one.features) == {str(n) for n in evaluator.model.feature_names_in_}
    assert one.data_fingerprint
    assert one.computed_at == NOW
    record = one.to_record()
    assert Evaluation.from_record(record) == one


def test_the_riskier_enterprises_get_the_higher_pds(
    trained: Trained, evaluator: CreditEvaluator
) -> None:
    defaults = trained.consortium.defaults
    as_of = date(2024, 3, 1)
    with Warehouse(trained.warehouse_root).connect() as engine:
        evaluations = evaluator.evaluate(engine, as_of, now=NOW)
    live = [e for e in evaluations if defaults.get(e.enterprise_id, date.max) >= as_of]
    bad = [e.pd for e in live if defaults.get(e.enterprise_id, date.max) < date(2025, 1, 1)]
    good = [e.pd for e in live if e.enterprise_id not in defaults]
    assert bad
    assert good
    # 60 planted firms, 27 bad training rows: the 10-item champion (max_items=10, C=0.01) with
    # the payment-timing features gives a ratio of about 1.9 here (2.0 at C=0.1), the previous
    # 27-item card about 2.5
    assert np.mean(bad) > 1.5 * np.mean(good)


def test_sql_scores_equal_credit_score_on_every_row(
    trained: Trained, evaluator: CreditEvaluator
) -> None:
    card = evaluator.model.scorecard_
    with Warehouse(trained.warehouse_root).connect() as engine:
        features = evaluator.features(engine, AS_OF)
        X = evaluator.model_inputs(features)
        expected = card.credit_score(X)
        exported = f'WITH "features" AS (\n{cashflow_sql(AS_OF)}\n)\n{card.to_sql("features")}'
        via_warehouse = engine.query(exported).to_pandas().set_index("enterprise_id")
    assert (via_warehouse.loc[X.index, "credit_score"].to_numpy() == expected).all()
    frame = X.reset_index()
    connection = duckdb.connect()
    connection.register("features", frame)
    via_frame = connection.execute(card.to_sql("features")).df()["credit_score"].to_numpy()
    assert (via_frame == expected).all()
    assert len(expected) == len(trained.consortium.enterprises)


def test_runs_are_incremental(
    trained: Trained,
    warehouse: Warehouse,
    evaluator: CreditEvaluator,
    sessions: sa.orm.sessionmaker[sa.orm.Session],
) -> None:
    def run(**kw: object) -> int:
        report = evaluator.run(
            warehouse=warehouse, sessions=sessions, as_of=AS_OF, pd_jump=0.05, now=NOW, **kw
        )
        return report.evaluated

    population = len(trained.consortium.enterprises)
    assert run() == population
    assert run() == 0
    target = trained.consortium.enterprises[3]
    late = datetime(2024, 5, 31, 16, tzinfo=UTC)  # local midnight starting the as-of day
    contribute(warehouse, [tx("after", target, late, 5_000_000, account_id="acct-3")])
    assert run() == 0  # data on the as-of day does not concern this evaluation
    early = late - timedelta(minutes=1)
    contribute(warehouse, [tx("before", target, early, 5_000_000, account_id="acct-3")])
    assert run() == 1
    with session_scope(sessions) as db:
        history = evaluation_history(db, target)
        assert len(history) == 2
        assert history[0].data_summary["entries"] == history[1].data_summary["entries"] + 1
    assert run(enterprises=[target], full=True) == 1
    assert run(full=True) == population


def _record(enterprise: str, as_of: date, grade: str, rank: int, pd_: float) -> ScoreEvaluation:
    return ScoreEvaluation(
        enterprise_id=enterprise,
        as_of=as_of,
        computed_at=datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC),
        model_name="credit",
        model_version=1,
        score=600,
        pd=pd_,
        grade=grade,
        grade_rank=rank,
        reasons=[],
        cases=[],
        features={},
        data_summary={},
        sources=["cashflow"],
        data_fingerprint="x",
    )


def test_downgrades_and_pd_jumps_raise_alerts(
    sessions: sa.orm.sessionmaker[sa.orm.Session],
) -> None:
    e = code(7)
    with session_scope(sessions) as db:
        assert (
            record_evaluations(
                db, [_record(e, date(2024, 1, 1), "BB", 4, 0.02)], pd_jump=0.05, now=NOW
            )
            == []
        )
        alerts = record_evaluations(
            db, [_record(e, date(2024, 2, 1), "B", 5, 0.04)], pd_jump=0.05, now=NOW
        )
        assert [a.kind for a in alerts] == ["downgrade"]
        alerts = record_evaluations(
            db, [_record(e, date(2024, 3, 1), "B", 5, 0.0901)], pd_jump=0.05, now=NOW
        )
        assert [a.kind for a in alerts] == ["pd_jump"]
        alerts = record_evaluations(
            db, [_record(e, date(2024, 4, 1), "CC", 7, 0.30)], pd_jump=0.05, now=NOW
        )
        assert sorted(a.kind for a in alerts) == ["downgrade", "pd_jump"]
        assert alerts[0].previous_grade == "B"
        assert alerts[0].grade == "CC"
        # an upgrade, and a back-filled older date compared with what came before it
        assert (
            record_evaluations(
                db, [_record(e, date(2024, 5, 1), "BBB", 3, 0.005)], pd_jump=0.05, now=NOW
            )
            == []
        )
        backfill = record_evaluations(
            db, [_record(e, date(2024, 1, 15), "CCC", 6, 0.1)], pd_jump=0.05, now=NOW
        )
        assert {a.previous_grade for a in backfill} == {"BB"}
    with session_scope(sessions) as db:
        assert latest_evaluation(db, e).grade == "BBB"  # type: ignore[union-attr]
        assert latest_evaluation(db, e, as_of=date(2024, 2, 20)).grade == "B"  # type: ignore[union-attr]
        assert latest_evaluation(db, e, as_of=date(2023, 12, 31)) is None
        for day in (date(2024, 1, 15), date(2024, 2, 20), date(2024, 12, 31)):
            # the score read's column projection picks the same evaluation
            row, record = latest_score(db, e, as_of=day), latest_evaluation(db, e, as_of=day)
            assert row is not None
            assert record is not None
            assert (row.grade, row.as_of, row.pd) == (record.grade, record.as_of, record.pd)
        assert latest_score(db, e, as_of=date(2023, 12, 31)) is None
        assert len(list_alerts(db, enterprise_id=e)) == 6
        first = list_alerts(db, enterprise_id=e)[0]
        acknowledge_alert(db, first.id, now=NOW)
        assert len(list_alerts(db, enterprise_id=e, unacknowledged=True)) == 5
        assert db.scalar(sa.select(sa.func.count()).select_from(ScoreAlert)) == 6


class _Base:
    """The wrapped provider: it knows the enterprise and its flows, not its score."""

    def search(self, q: str, *, within: Collection[str], limit: int) -> Sequence[EnterpriseSummary]:
        return [EnterpriseSummary(credit_code=c, name=None, industry_code=None) for c in within]

    def score(self, credit_code: str, as_of: date) -> ScoreView | None:
        return None

    def transactions_summary(self, credit_code: str, as_of: date) -> TransactionsSummaryView | None:
        return None

    def report(self, credit_code: str, as_of: date) -> ReportView | None:
        return ReportView(
            credit_code=credit_code,
            name="某公司",
            industry_code="13",
            registration_date=None,
            registered_capital=None,
            registered_capital_currency=None,
            legal_representative=None,
            as_of=as_of,
            score=None,
            transactions=None,
        )


def test_the_service_protocols_serve_and_store_scores(
    trained: Trained, sessions: sa.orm.sessionmaker[sa.orm.Session]
) -> None:
    settings = get_settings()
    shutil.copytree(trained.models_root, settings.data_dir / "models")
    target = trained.consortium.enterprises[5]
    with session_scope(sessions) as db:
        provider = ScoringProvider(db, _Base())
        assert provider.score(target, AS_OF) is None
        assert [s.credit_code for s in provider.search("x", within=[target], limit=5)] == [target]
        evaluator = ScoringEvaluator(
            db,
            models=ModelCache(settings),
            warehouse=Warehouse(trained.warehouse_root),
            pd_jump=0.05,
            clock=lambda: NOW,
        )
        view = evaluator.evaluate(credit_code=target, as_of=AS_OF)
        assert view is not None
        assert view.credit_code == target
        assert view.model_version.startswith("credit/v")
        assert all(r.points is not None and r.points > 0 for r in view.reasons)
        assert 1 <= len(view.similar_cases) <= 5
        cutoff = datetime(2024, 5, 31, 16, tzinfo=UTC)
        assert all(c.evaluated_at < cutoff for c in view.similar_cases)
        assert all(0 < c.similarity <= 1 for c in view.similar_cases)
        assert all(c.outcome in (None, 0, 1) for c in view.similar_cases)
        assert view.case_pd is not None
        assert 0 <= view.case_pd <= 1
        assert view.uses_corrected_values is True
        assert view.corrected_entries == 0
        assert view.sources == ["cashflow"]
        assert ScoreView.model_validate(view.model_dump(mode="json")) == view
        assert evaluator.evaluate(credit_code=code(999), as_of=AS_OF) is None  # no data
    with session_scope(sessions) as db:
        provider = ScoringProvider(db, _Base())
        stored = provider.score(target, date(2024, 12, 1))
        assert stored is not None
        assert stored == view  # cases, case PD, corrections and sources come back stored
        assert provider.score(target, date(2024, 5, 31)) is None  # evaluated as of June 1
        report = provider.report(target, AS_OF)
        assert report is not None
        assert report.name == "某公司"
        assert report.score == stored


def test_score_view_shows_cases_corrections_and_sources(
    trained: Trained, warehouse: Warehouse
) -> None:
    first = trained.consortium.enterprises[0]
    contribute(
        warehouse,
        [
            tx(
                f"fix-{i}",
                first,
                datetime(2024, 5, 3 + i, 2, tzinfo=UTC),
                10**9,
                corrected_amount_minor=10**7,
                correction_id=f"corr-{i}",
                account_id="acct-0",
            )
            for i in range(3)
        ],
    )
    graph = pd.DataFrame({"pagerank": [0.5]}, index=pd.Index([first], name="enterprise_id"))
    evaluator = CreditEvaluator(
        load_model(trained.models_root, "credit"),
        graph=False,
        extra_sources=[FrameSource("graph", lambda _as_of: graph, prefix="graph_")],
    )
    with warehouse.connect() as engine:
        (one,) = evaluator.evaluate(engine, AS_OF, enterprises=[first], now=NOW)
    view = score_view(one.to_record())
    assert view.uses_corrected_values is True
    assert view.corrected_entries == 3
    assert view.sources == ["cashflow", "graph"]
    assert view.case_pd == one.case_pd
    assert [c.case_id for c in view.similar_cases] == [c["case_id"] for c in one.cases]
    assert [c.outcome for c in view.similar_cases] == [c["outcome"] for c in one.cases]
    for shown, case in zip(view.similar_cases, one.cases, strict=True):
        assert shown.similarity == pytest.approx(case["similarity"])
        assert shown.evaluated_at == datetime.fromisoformat(case["evaluated_at"])
        assert shown.evaluated_at.tzinfo is not None
        if case["outcome_at"] is not None:
            assert shown.outcome_at == datetime.fromisoformat(case["outcome_at"])


def test_score_view_of_an_evaluation_without_cases_or_data_facts() -> None:
    bare = Evaluation(
        enterprise_id=code(1),
        as_of=AS_OF,
        score=600,
        pd=0.02,
        grade="A",
        grade_rank=2,
        reasons=[],
        challenger=None,
        case_pd=None,
        cases=[],
        model_name="credit",
        model_version=1,
        features={},
        data={},
        sources=[],
        data_fingerprint="",
        computed_at=NOW,
    )
    view = score_view(bare.to_record())
    assert view.similar_cases == []
    assert view.case_pd is None
    assert view.uses_corrected_values is None  # not recorded: not guessed
    assert view.corrected_entries is None
    assert view.sources == []


def test_no_model_means_no_score(sessions: sa.orm.sessionmaker[sa.orm.Session]) -> None:
    with session_scope(sessions) as db:
        evaluator = ScoringEvaluator(
            db,
            models=ModelCache(get_settings()),
            warehouse=Warehouse.default(),
            pd_jump=0.05,
            clock=lambda: NOW,
        )
        assert evaluator.evaluate(credit_code=code(1), as_of=AS_OF) is None


def test_the_migration_downgrades_and_upgrades(tmp_path: Path) -> None:
    from alembic import command

    from flowbureau.storage.database import current_revision, migration_config

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade_database(url)
    command.downgrade(migration_config(url), "0001_service")
    engine = make_engine(url)
    assert "score_evaluations" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    assert upgrade_database(url) == current_revision(url)
    engine = make_engine(url)
    assert {"score_evaluations", "score_alerts"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def _penalty_table(codes: list[str]) -> pa.Table:
    return pa.table(
        {
            "record_id": [f"P{i}" for i in range(len(codes))],
            "credit_code": codes,
            "date": pa.array([date(2024, 2, 1)] * len(codes), pa.date32()),
            "authority": ["x"] * len(codes),
            "severity": ["fine"] * len(codes),
            "fine_minor": pa.array([1000] * len(codes), pa.int64()),
        }
    )


def test_a_new_public_record_re_scores_only_its_enterprise(
    trained: Trained, sessions: sa.orm.sessionmaker[sa.orm.Session]
) -> None:
    enterprises = trained.consortium.enterprises
    warehouse = Warehouse(trained.warehouse_root)

    def run(codes: list[str]) -> int:
        evaluator = CreditEvaluator(
            load_model(trained.models_root, "credit"),
            external=ExternalData(records={"penalties": _penalty_table(codes)}),
            graph=False,
        )
        return evaluator.run(
            warehouse=warehouse, sessions=sessions, as_of=AS_OF, pd_jump=0.05, now=NOW
        ).evaluated

    assert run([enterprises[0]]) == len(enterprises)
    assert run([enterprises[0]]) == 0
    assert run([enterprises[0], enterprises[7]]) == 1
