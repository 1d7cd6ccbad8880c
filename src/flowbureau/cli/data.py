"""CLI adapters of the data pipeline: ``ingest``, ``sql`` and ``inspect``.

Thin adapters over :func:`flowbureau.ingestion.ingest`, :func:`flowbureau.storage.query.sql`
and :func:`flowbureau.storage.summary.summarise`. ``--json`` prints exactly one JSON document
on stdout (progress bars and messages go to stderr). Bad input raises
:class:`~flowbureau.errors.InputError`, which the entry point turns into exit code 2 with a
message naming file, line (or XML path) and field. Heavy imports stay inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowbureau.cli.output import echo_json

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Statement files, account registers or directories (recursive)."),
    ],
    *,
    bank: Annotated[
        str | None,
        typer.Option(
            "--bank",
            help="Bank id of every file; default: the <id> of a banks/<id>/ path component.",
        ),
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format", help="auto, mt940, camt, bai2, ofx, csv or register (default: detect)."
        ),
    ] = "auto",
    profile: Annotated[
        str | None, typer.Option("--profile", help="Bank CSV profile name (implies csv).")
    ] = None,
    profile_dir: Annotated[
        list[Path] | None,
        typer.Option("--profile-dir", help="Directory of extra bank profiles (repeatable)."),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help="Categorisation rules (TOML) evaluated before the others."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Read, clean and store bank files; print what was stored, found and skipped."""
    from flowbureau.ingestion import ingest as run_ingest

    report = run_ingest(
        paths,
        bank_id=bank,
        format=format,
        profile=profile,
        profile_dirs=tuple(profile_dir or ()),
        rules=rules,
        progress=not as_json,
    )
    data = report.to_json()
    if as_json:
        echo_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    from flowbureau.schema import format_minor

    console = Console()
    summary = Table(title=f"ingest {report.ingest_id}", show_header=False)
    for key in ("files", "records", "new_records", "duplicates", "quarantined", "payment_links"):
        summary.add_row(key.replace("_", " "), f"{data[key]:,}")
    for currency, totals in data["totals"].items():
        summary.add_row(
            f"{currency} in / out",
            f"{format_minor(totals['inflow_minor'], currency)} / "
            f"{format_minor(totals['outflow_minor'], currency)}",
        )
    console.print(summary)
    if report.problems:
        problems = Table(title=f"{len(report.problems)} problems")
        for column in ("file", "kind", "location", "message"):
            problems.add_column(column)
        for problem in report.problems[:50]:
            problems.add_row(problem.file, problem.kind, problem.location or "", problem.message)
        console.print(problems)
        if len(report.problems) > 50:
            console.print(f"... {len(report.problems) - 50} more (use --json for all)")


def sql(
    query: Annotated[str, typer.Argument(help="One read-only query (SELECT, WITH, DESCRIBE...).")],
    *,
    as_json: JsonOption = False,
    max_rows: Annotated[
        int, typer.Option("--max-rows", help="Rows shown in the table (JSON: all).")
    ] = 200,
) -> None:
    """Query the warehouse views (transactions, statements, quarantine, accounts, ...)."""
    from flowbureau.storage.query import sql as run_sql

    table = run_sql(query)
    rows = table.to_pylist()
    if as_json:
        echo_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    out = Table()
    for name in table.column_names:
        out.add_column(name)
    for row in rows[:max_rows]:
        out.add_row(*("" if v is None else str(v) for v in row.values()))
    console = Console()
    console.print(out)
    if len(rows) > max_rows:
        console.print(f"... {len(rows) - max_rows} more rows (use --json or LIMIT)")


def inspect(as_json: JsonOption = False) -> None:
    """Show what is stored: banks, accounts, months, quarantine, duplicates, links, ..."""
    from flowbureau.storage.summary import summarise

    data = summarise()
    if as_json:
        echo_json(data)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    head = Table(title=f"warehouse version {data['version']}", show_header=False)
    head.add_row("committed", str(data["committed_at"]))
    head.add_row("records", f"{data['records']:,}")
    head.add_row("period", f"{data['period']['first']} .. {data['period']['last']}")
    head.add_row("accounts / enterprises", f"{data['accounts']:,} / {data['enterprises']:,}")
    head.add_row("payment links", f"{data['payment_links']:,}")
    head.add_row("outliers", f"{data['outliers']:,}")
    duplicates = data["duplicates"]
    head.add_row(
        "duplicates",
        f"{duplicates['duplicate_files']:,} files ({duplicates['in_duplicate_files']:,} records), "
        f"{duplicates['overlapping_entries']:,} overlapping entries, "
        f"{duplicates['repeated_in_batch']:,} repeated in a batch",
    )
    failures = data["reconciliation_failures"]
    head.add_row("unreconciled statements", f"{failures['statements']:,}")
    console.print(head)
    for title, key in (
        ("banks", "banks"),
        ("records per bank and month", "records_per_month"),
        ("totals (minor units)", "totals"),
        ("quarantine reasons", "quarantine"),
        ("categories", "categories"),
        ("quality flags", "quality_flags"),
        ("first unreconciled statements", None),
    ):
        rows = data[key] if key else failures["first"]
        if not rows:
            continue
        table = Table(title=title)
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        console.print(table)
