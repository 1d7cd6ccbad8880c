"""CLI adapters of credit evaluation: ``flowbureau score train | run | show | export-sql |
import-external``.

Thin adapters over :mod:`flowbureau.scoring.training`, :mod:`flowbureau.scoring.evaluation`
and :mod:`flowbureau.scoring.history`. ``--json`` prints exactly one JSON document on stdout
(progress goes to stderr). Heavy imports stay inside the commands so ``flowbureau --help``
stays fast. The score history lives in the service database: run ``flowbureau db upgrade``
once before ``score run``.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from flowbureau.cli.output import echo_json, spinner

if TYPE_CHECKING:
    from flowbureau.config import Settings

app = typer.Typer(
    name="score",
    help="Train the credit model, evaluate enterprises, show and export scores.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _day(value: str | None, option: str) -> date | None:
    from flowbureau.errors import InputError

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"not an ISO date (YYYY-MM-DD): {value!r}", field=option) from None


def _today(settings: Settings) -> date:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(settings.timezone)).date()


def _check_database(settings: Settings) -> None:
    from flowbureau.errors import StorageError
    from flowbureau.storage.database import current_revision, head_revision

    url = settings.resolved_database_url
    if current_revision(url) != head_revision():
        raise StorageError(
            "the service database is not at the latest schema (the score history needs it): "
            "run `flowbureau db upgrade`"
        )


def train(
    *,
    outcomes: Annotated[
        Path | None,
        typer.Option(
            "--outcomes",
            help="Observed defaults: CSV with credit_code, default_date (see docs/scoring.md).",
        ),
    ] = None,
    observed_until: Annotated[
        str | None,
        typer.Option(
            "--observed-until", help="Last day the outcomes are complete (with --outcomes)."
        ),
    ] = None,
    synthetic: Annotated[
        Path | None,
        typer.Option(
            "--synthetic",
            help="Train on a synthetic consortium's ground-truth defaults (demo and tests only).",
        ),
    ] = None,
    as_of: Annotated[
        list[str] | None,
        typer.Option(
            "--as-of",
            help="Cohort date (repeatable); default: quarter starts with 12 months of history "
            "before them and complete outcomes after them.",
        ),
    ] = None,
    horizon: Annotated[
        int | None, typer.Option("--horizon", help="Months after a cohort date that count.")
    ] = None,
    cv: Annotated[int, typer.Option("--cv", help="Folds of the out-of-fold calibration.")] = 5,
    challenger: Annotated[
        bool, typer.Option("--challenger/--no-challenger", help="Also train the challenger.")
    ] = True,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Train champion + challenger on labelled cohorts and save the next model version."""
    from flowbureau.config import get_settings
    from flowbureau.errors import InputError
    from flowbureau.scoring.evaluation import external_dirs, models_dir
    from flowbureau.scoring.external import load_external
    from flowbureau.scoring.training import load_outcomes, synthetic_outcomes, train_and_save
    from flowbureau.storage.warehouse import Warehouse

    settings = get_settings()
    if (outcomes is None) == (synthetic is None):
        raise InputError("give exactly one of --outcomes and --synthetic", field="outcomes")
    if outcomes is not None:
        until = _day(observed_until, "observed_until")
        if until is None:
            raise InputError("--outcomes needs --observed-until", field="observed_until")
        observed = load_outcomes(outcomes, observed_until=until)
    else:
        assert synthetic is not None
        observed = synthetic_outcomes(synthetic)
    cohorts = [d for d in (_day(v, "as_of") for v in as_of or []) if d is not None]
    with spinner(not as_json) as bar:
        task = bar.add_task("training")
        trained = train_and_save(
            warehouse=Warehouse.default(),
            outcomes=observed,
            external=load_external(*external_dirs(settings)),
            models_root=models_dir(settings),
            name=settings.scoring.model_name,
            cohorts=cohorts or None,
            horizon_months=horizon or settings.scoring.horizon_months,
            timezone=settings.timezone,
            currency=settings.scoring.currency,
            cv=cv,
            challenger=challenger,
            seed=seed,
            on_step=lambda message: bar.update(task, description=message),
        )
    model = trained.artefact.model
    metrics = trained.metrics
    result: dict[str, Any] = {
        "model": trained.model,
        "path": str(trained.artefact.path),
        "cohorts": [d.isoformat() for d in trained.cohorts],
        "rows": trained.rows,
        "bads": trained.bads,
        "metrics": metrics,
        "selected_features": list(model.scorecard_.weights_.index),
        "sources": trained.sources,
        "outcomes": "synthetic ground truth" if synthetic is not None else str(outcomes),
    }
    if as_json:
        echo_json(result)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"trained {result['model']}", show_header=False)
    table.add_row("cohorts", ", ".join(result["cohorts"]))
    table.add_row("rows / bads", f"{result['rows']:,} / {result['bads']:,}")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if "auc" in key else f"{value:g}")
    table.add_row("scorecard items", ", ".join(result["selected_features"]))
    table.add_row("sources", ", ".join(result["sources"]))
    table.add_row("artefact", result["path"])
    Console().print(table)


def run(
    *,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Evaluate as of this day (default: today).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Re-evaluate everyone, even with unchanged data.")
    ] = False,
    enterprise: Annotated[
        list[str] | None,
        typer.Option("--enterprise", help="Only this enterprise (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate enterprises whose data changed (or all), store the scores, raise alerts."""
    from flowbureau.config import get_settings
    from flowbureau.scoring.evaluation import CreditEvaluator
    from flowbureau.storage.database import make_engine, session_factory
    from flowbureau.storage.warehouse import Warehouse

    settings = get_settings()
    _check_database(settings)
    day = _day(as_of, "as_of") or _today(settings)
    evaluator = CreditEvaluator.load(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        with spinner(not as_json) as bar:
            task = bar.add_task("scoring")
            report = evaluator.run(
                warehouse=Warehouse.default(),
                sessions=session_factory(engine),
                as_of=day,
                pd_jump=settings.scoring.pd_jump_alert,
                full=full,
                enterprises=enterprise or None,
                on_step=lambda message: bar.update(task, description=message),
            )
    finally:
        engine.dispose()
    data = report.to_json()
    if as_json:
        echo_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = Table(title=f"score run as of {data['as_of']} ({data['model']})", show_header=False)
    for key in ("population", "evaluated", "unchanged"):
        summary.add_row(key, f"{data[key]:,}")
    summary.add_row("grades", ", ".join(f"{g} {n}" for g, n in data["grades"].items()) or "-")
    summary.add_row("alerts", f"{len(data['alerts']):,}")
    console.print(summary)
    if data["missing_features"]:
        console.print(
            f"[yellow]warning:[/] {len(data['missing_features'])} model input(s) have no source "
            f"now and were scored as missing: {', '.join(data['missing_features'])} "
            "(import the external data the model was trained with: `flowbureau score "
            "import-external`)"
        )
    if data["alerts"]:
        alerts = Table(title="alerts")
        for column in ("enterprise", "kind", "grade", "PD"):
            alerts.add_column(column)
        for alert in data["alerts"][:50]:
            alerts.add_row(
                alert["enterprise_id"],
                alert["kind"],
                f"{alert['previous_grade']} -> {alert['grade']}",
                f"{alert['previous_pd']:.2%} -> {alert['pd']:.2%}",
            )
        console.print(alerts)


def show(
    enterprise: Annotated[str, typer.Argument(help="Unified social credit code.")],
    *,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The latest evaluation as of this day.")
    ] = None,
    history: Annotated[int, typer.Option("--history", help="Past evaluations listed.")] = 12,
    as_json: JsonOption = False,
) -> None:
    """Show an enterprise's latest evaluation, its history and its alerts."""
    from flowbureau.config import get_settings
    from flowbureau.errors import NotFoundError
    from flowbureau.scoring.evaluation import Evaluation
    from flowbureau.scoring.features import check_enterprises
    from flowbureau.scoring.history import evaluation_history, latest_evaluation, list_alerts
    from flowbureau.storage.database import make_engine, session_factory, session_scope

    settings = get_settings()
    _check_database(settings)
    (code,) = check_enterprises([enterprise.strip().upper()])
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(session_factory(engine)) as db:
            record = latest_evaluation(db, code, as_of=_day(as_of, "as_of"))
            if record is None:
                raise NotFoundError(f"no evaluation of {code} yet: run `flowbureau score run`")
            latest = Evaluation.from_record(record)
            past = [Evaluation.from_record(r) for r in evaluation_history(db, code, limit=history)]
            alerts = list_alerts(db, enterprise_id=code, limit=history)
            alert_rows = [
                {
                    "kind": a.kind,
                    "created_at": a.created_at.isoformat(),
                    "previous_grade": a.previous_grade,
                    "grade": a.grade,
                    "previous_pd": a.previous_pd,
                    "pd": a.pd,
                    "acknowledged": a.acknowledged_at is not None,
                }
                for a in alerts
            ]
    finally:
        engine.dispose()
    if as_json:
        echo_json(
            {
                "evaluation": latest.to_json(),
                "history": [
                    {
                        "as_of": e.as_of.isoformat(),
                        "score": e.score,
                        "pd": e.pd,
                        "grade": e.grade,
                        "model": e.model,
                        "computed_at": e.computed_at.isoformat(),
                    }
                    for e in past
                ],
                "alerts": alert_rows,
            }
        )
        return
    _print_evaluation(latest, past, alert_rows)


def _print_evaluation(latest: Any, past: list[Any], alerts: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    head = Table(title=f"{latest.enterprise_id} as of {latest.as_of}", show_header=False)
    head.add_row("score / PD / grade", f"{latest.score} / {latest.pd:.2%} / {latest.grade}")
    if latest.challenger:
        shadow = latest.challenger
        head.add_row(
            "challenger (shadow)", f"{shadow['score']} / {shadow['pd']:.2%} / {shadow['grade']}"
        )
    if latest.case_pd is not None:
        head.add_row("similar-case PD", f"{latest.case_pd:.2%}")
    data = latest.data
    head.add_row(
        "data",
        f"{data['entries']:,} entries from {data['banks']} bank(s), "
        f"{data['first_entry_day']} .. {data['latest_entry_day']}; "
        f"{data['corrected_entries']:,} with corrected amounts (used)",
    )
    head.add_row("sources", ", ".join(latest.sources))
    head.add_row("model", f"{latest.model}, computed {latest.computed_at:%Y-%m-%d %H:%M} UTC")
    console.print(head)
    if latest.reasons:
        reasons = Table(title="reasons (points lost)")
        for column in ("feature", "value", "bin", "points lost"):
            reasons.add_column(column)
        for reason in latest.reasons:
            value = reason["value"]
            reasons.add_row(
                reason["feature"],
                f"{value:,.4g}" if isinstance(value, float) else str(value),
                reason["bin"],
                f"{reason['points_lost']:g}",
            )
        console.print(reasons)
    if latest.cases:
        cases = Table(title="similar cases")
        for column in ("case", "similarity", "outcome"):
            cases.add_column(column)
        for case in latest.cases:
            outcome = {1: "defaulted", 0: "performed", None: "not known yet"}[case["outcome"]]
            cases.add_row(case["case_id"], f"{case['similarity']:.3f}", outcome)
        console.print(cases)
    timeline = Table(title="history")
    for column in ("as of", "score", "PD", "grade", "model"):
        timeline.add_column(column)
    for item in past:
        timeline.add_row(
            item.as_of.isoformat(), str(item.score), f"{item.pd:.2%}", item.grade, item.model
        )
    console.print(timeline)
    if alerts:
        console.print(
            f"alerts: {len(alerts)} (latest: {alerts[0]['kind']} "
            f"{alerts[0]['previous_grade']} -> {alerts[0]['grade']})"
        )


def export_sql(
    *,
    table: Annotated[
        str, typer.Option("--table", help="Relation holding one row of features per record.")
    ] = "features",
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Prefix the cash-flow feature query as of this day: one query from "
            "`transactions` to scores (only when every scorecard item is a cash-flow feature).",
        ),
    ] = None,
    version: Annotated[
        int | None, typer.Option("--version", help="Model version (default: newest).")
    ] = None,
) -> None:
    """Print the champion scorecard as one SQL query (DuckDB, SQLite, PostgreSQL)."""
    from flowbureau.config import get_settings
    from flowbureau.errors import InputError
    from flowbureau.scoring.artefacts import load_model
    from flowbureau.scoring.evaluation import models_dir
    from flowbureau.scoring.features import FEATURE_NAMES, cashflow_sql
    from flowbureau.scoring.training import CreditModel

    settings = get_settings()
    artefact = load_model(models_dir(settings), settings.scoring.model_name, version)
    model = artefact.model
    if not isinstance(model, CreditModel):
        raise InputError(f"{artefact.path} is not a credit model", field="version")
    card = model.scorecard_
    day = _day(as_of, "as_of")
    if day is None:
        typer.echo(card.to_sql(table))
        return
    outside = sorted(set(card.weights_.index) - set(FEATURE_NAMES))
    if outside:
        raise InputError(
            f"scorecard items {', '.join(outside)} are not cash-flow features; export without "
            "--as-of and join them yourself",
            field="as_of",
        )
    features = cashflow_sql(day, timezone=settings.timezone, currency=settings.scoring.currency)
    typer.echo(f'WITH "{table}" AS (\n{features}\n)\n{card.to_sql(table)}')


def import_external(
    directories: Annotated[
        list[Path],
        typer.Argument(help="Directories holding penalties.csv, enterprises.csv, macro.csv, ..."),
    ],
    *,
    as_json: JsonOption = False,
) -> None:
    """Check external data files and copy them into the external-data directory."""
    from flowbureau.config import get_settings
    from flowbureau.scoring.external import import_external as copy_files

    settings = get_settings()
    target = settings.scoring.external_dir or settings.data_dir / "external"
    copied = copy_files(directories, target)
    if as_json:
        echo_json({"directory": str(target), "files": copied})
        return
    for kind, path in copied.items():
        typer.echo(f"{kind:<15} {path}")


app.command("train")(train)
app.command("run")(run)
app.command("show")(show)
app.command("export-sql")(export_sql)
app.command("import-external")(import_external)
