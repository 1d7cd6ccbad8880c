"""CLI adapters of the anomaly stage: ``flowbureau anomaly train | run | show | label | confirm
| reject | revert``.

Thin adapters over :mod:`flowbureau.anomaly.pipeline`, :mod:`~flowbureau.anomaly.feedback`
and :mod:`~flowbureau.anomaly.correction`. ``--json`` prints exactly one JSON document on
stdout (progress goes to stderr). Heavy imports (torch, pandas) stay inside the commands so
``flowbureau --help`` stays fast.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flowbureau.cli.output import echo_json, progress_bar

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.progress import Progress

app = typer.Typer(
    name="anomaly",
    help="Detect anomalous transactions, correct them (audited, reversible), take feedback.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
AnalystOption = Annotated[
    str | None,
    typer.Option("--analyst", help="Who decides (default: the current user name)."),
]
NoteOption = Annotated[str | None, typer.Option("--note", help="Why, in a few words.")]


def _analyst(value: str | None) -> str:
    return value or getpass.getuser()


def _reporter(progress: Progress, title: str) -> Callable[[str, float], None]:
    task = progress.add_task(title, total=1.0)

    def report(message: str, fraction: float) -> None:
        progress.update(task, description=message, completed=fraction)

    return report


@app.command("train")
def train(
    *,
    ground_truth: Annotated[
        Path | None,
        typer.Option(
            "--ground-truth",
            help="A synthetic consortium's ground_truth/ directory to learn the planted types "
            "from (analyst labels are always used).",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs.")] = 25,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed (training is deterministic).")
    ] = 0,
    device: Annotated[
        str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda.")
    ] = "auto",
    direction: Annotated[
        str,
        typer.Option(
            "--direction",
            help="causal: read each entry with its account's entries before it (the "
            "default); both: with the entries before and after it (bidirectional GRU, "
            "about 2.3x the training time).",
        ),
    ] = "causal",
    as_json: JsonOption = False,
) -> None:
    """Train the sequence model on the stored transactions and save a new version."""
    from flowbureau.anomaly.model import DIRECTIONS
    from flowbureau.anomaly.pipeline import train_model
    from flowbureau.errors import InputError

    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"must be auto, cpu or cuda, got {device!r}", field="--device")
    if direction not in DIRECTIONS:
        raise InputError(
            f"must be {' or '.join(DIRECTIONS)}, got {direction!r}", field="--direction"
        )
    with progress_bar(not as_json) as progress:
        report = train_model(
            ground_truth=ground_truth,
            epochs=epochs,
            seed=seed,
            device=device,
            params={"direction": direction},
            progress=_reporter(progress, "training"),
        )
    if as_json:
        echo_json(report.to_dict())
        return
    typer.echo(
        f"trained anomaly model {report.version} on {report.rows:,} transactions "
        f"({report.labelled:,} labelled, {report.analyst_labels:,} by analysts) in "
        f"{report.fit_seconds:.1f} s on {report.device}; final loss {report.final_loss:.4f}"
    )
    typer.echo("labels: " + ", ".join(f"{k} {v:,}" for k, v in report.labels.items()))
    typer.echo(f"saved to {report.path}")


@app.command("run")
def run(
    confidence: Annotated[
        float | None,
        typer.Option(
            "--confidence",
            min=0.0,
            max=1.0,
            help="Apply corrections whose confidence reaches this (default "
            "settings.anomaly.confidence, 0.99).",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model version (vNNNN; default the latest).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Score every transaction, store the run and apply confident corrections.

    Every run re-scores every stored entry (a later entry can change an earlier entry's score);
    corrections in effect, reverts and analyst labels are never undone by a run.
    """
    from flowbureau.anomaly.pipeline import run_detection

    with progress_bar(not as_json) as progress:
        report = run_detection(
            confidence=confidence, version=model, progress=_reporter(progress, "detecting")
        )
    if as_json:
        echo_json(report.to_dict())
        return
    typer.echo(
        f"run {report.run_id} with model {report.model_version}: {report.transactions:,} "
        f"transactions, {report.flagged:,} flagged by the model"
    )
    for name, count in sorted(report.by_type.items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {name:<20} {count:>8,}")
    typer.echo(
        "rule flags: " + (", ".join(f"{k} {v:,}" for k, v in report.rule_flags.items()) or "none")
    )
    typer.echo("fills: " + (", ".join(f"{k} {v:,}" for k, v in report.fills.items()) or "none"))
    typer.echo(
        f"corrections: {report.corrections_applied:,} applied of {report.proposals:,} proposed "
        f"(confidence >= {report.confidence:g})"
    )
    if report.corrections_unsupported:
        typer.echo(
            f"{report.corrections_unsupported:,} corrections in effect are no longer proposed "
            "by this run (kept; review them with `flowbureau anomaly show ACCOUNT`)"
        )


@app.command("show")
def show(
    account: Annotated[str, typer.Argument(help="The account id (pseudonym).")],
    as_json: JsonOption = False,
) -> None:
    """Show an account's flagged entries: scores, types, rule evidence, corrections, labels."""
    from flowbureau.anomaly.pipeline import account_report

    report = account_report(account)
    if as_json:
        echo_json(report.to_dict())
        return
    typer.echo(
        f"account {report.account_id}: {report.transactions:,} transactions, "
        f"{len(report.entries):,} with findings (run {report.run_id or 'none yet'}, "
        f"model {report.model_version or '-'})"
    )
    for e in report.entries:
        score = e.get("anomaly_score")
        verdict = (
            f"model: {e['anomaly_type']} (p={e['type_probability']:.2f})"
            if e.get("flagged")
            else "model: normal"
        )
        typer.echo(
            f"\n{e['booked_at'][:16]}  {e['tx_id']}  {e['amount_minor']:,} {e['currency']}  "
            f"score {'-' if score is None else f'{score:.3f}'}  {verdict}"
        )
        for r in e["rules"]:
            typer.echo(f"  rule {r['rule']} ({r['anomaly_type']}): {r['evidence']}")
        for f in e["fills"]:
            typer.echo(f"  filled {f['field']} = {f['value']}: {f['evidence']}")
        for c in e["corrections"]:
            typer.echo(
                f"  correction {c['correction_id']} {c['status']}: {c['original_minor']} -> "
                f"{c['corrected_minor']} ({c['source']}, confidence {c['confidence']:.2f}): "
                f"{c['reason']}"
                + (
                    " [no longer proposed by the latest run]"
                    if c["unsupported_by_latest_run"]
                    else ""
                )
            )
        for lab in e["labels"]:
            typer.echo(f"  label {lab['label']} ({lab['verdict']} by {lab['analyst']})")


@app.command("label")
def label(
    tx_id: Annotated[str, typer.Argument(help="The transaction id.")],
    as_label: Annotated[
        str, typer.Option("--as", help="An anomaly type (e.g. typo_x10) or 'normal'.")
    ],
    analyst: AnalystOption = None,
    note: NoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Label a transaction for the next training."""
    from flowbureau.anomaly.feedback import label_transaction

    record = label_transaction(tx_id=tx_id, label=as_label, analyst=_analyst(analyst), note=note)
    if as_json:
        echo_json(record.to_dict())
        return
    typer.echo(f"labelled {record.tx_id} as {record.label} ({record.label_id})")


@app.command("confirm")
def confirm(
    tx_id: Annotated[str, typer.Argument(help="The flagged transaction id.")],
    analyst: AnalystOption = None,
    note: NoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Confirm a flag: label it with the flagged type and accept its correction."""
    from flowbureau.anomaly.feedback import confirm_flag

    record = confirm_flag(tx_id=tx_id, analyst=_analyst(analyst), note=note)
    if as_json:
        echo_json(record.to_dict())
        return
    typer.echo(f"confirmed {record.tx_id} as {record.label}")


@app.command("reject")
def reject(
    tx_id: Annotated[str, typer.Argument(help="The flagged transaction id.")],
    analyst: AnalystOption = None,
    note: NoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject a flag: label the entry normal and revert its correction."""
    from flowbureau.anomaly.feedback import reject_flag

    record = reject_flag(tx_id=tx_id, analyst=_analyst(analyst), note=note)
    if as_json:
        echo_json(record.to_dict())
        return
    typer.echo(f"rejected the flag on {record.tx_id}: labelled normal")


@app.command("revert")
def revert(
    correction_id: Annotated[str, typer.Argument(help="The correction id (corr-...).")],
    analyst: AnalystOption = None,
    note: NoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revert a correction: the transactions view shows the original amount again."""
    from flowbureau.anomaly.correction import revert_correction

    record = revert_correction(correction_id, actor=_analyst(analyst), note=note)
    if as_json:
        echo_json(record.to_dict())
        return
    typer.echo(
        f"reverted {record.correction_id} on {record.tx_id}: amount back to "
        f"{record.original_minor} (was corrected to {record.corrected_minor})"
    )
