"""``flowbureau synth``: generate a synthetic consortium (a thin adapter over
:func:`flowbureau.synth.generate`)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from flowbureau.errors import InputError


def _start(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise InputError(f"expected YYYY-MM, got {value!r}", field="--start") from None


def synth(
    *,
    out: Annotated[
        Path,
        typer.Option("--out", help="New (or empty) directory to write the consortium into."),
    ],
    enterprises: Annotated[int, typer.Option(help="Number of enterprises.")] = 200,
    banks: Annotated[int, typer.Option(help="Number of consortium banks.")] = 5,
    months: Annotated[int, typer.Option(help="Number of simulated months.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    start: Annotated[str, typer.Option(help="First simulated month, YYYY-MM.")] = "2024-01",
    formats: Annotated[
        str | None,
        typer.Option(
            help="Bank formats, comma-separated and cycled over the banks: mt940, camt053, "
            "camt053.001.02, camt053.001.08, csv, csv:PROFILE, csv:PROFILE@ENCODING, csv-utf8 "
            "(default: a mix of all).",
            show_default=False,
        ),
    ] = None,
    anomalies: Annotated[
        bool, typer.Option(help="Plant data problems and anomalous flows (with ground truth).")
    ] = True,
    activity: Annotated[
        float, typer.Option(help="Multiplier on the number of transactions per enterprise.")
    ] = 1.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate bank statement files, registry, public records and ground truth."""
    from rich.console import Console
    from rich.table import Table

    from flowbureau.synth import SynthConfig, generate

    summary = generate(
        out,
        enterprises=enterprises,
        banks=banks,
        months=months,
        seed=seed,
        start=_start(start),
        formats=formats,
        anomalies=anomalies,
        progress=progress,
        config=SynthConfig(activity=activity),
    )
    console = Console()
    table = Table(title=f"synthetic consortium in {summary.out}")
    table.add_column("bank")
    table.add_column("format")
    table.add_column("profile / encoding")
    for bank in summary.banks:
        detail = f"{bank.profile} / {bank.encoding}" if bank.format == "csv" else ""
        table.add_row(f"{bank.bank_id} {bank.name}", bank.format, detail)
    console.print(table)
    counts = Table(title="counts")
    counts.add_column("what")
    counts.add_column("how many", justify="right")
    for label, value in (
        ("enterprises", summary.enterprises),
        ("accounts", summary.accounts),
        ("entries", summary.entries),
        ("two-sided payments", summary.payments),
        ("statement files", summary.statement_files),
        ("defaults", summary.defaults),
        *((f"planted {k}", v) for k, v in summary.planted.items()),
    ):
        counts.add_row(label, f"{value:,}")
    console.print(counts)
