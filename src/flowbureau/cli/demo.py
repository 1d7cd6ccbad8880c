"""``flowbureau demo``: the whole pipeline on a sample consortium, then the console.

A thin adapter over :func:`flowbureau.demo.run_demo`; prints each step as it starts, a table of
what the steps did and the demo accounts (generated passwords and API key, printed once), then
serves the API and console on ``--host``/``--port`` unless ``--no-serve``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    *,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the sample consortium is generated (or reused).")
    ] = Path("demo-consortium"),
    enterprises: Annotated[int, typer.Option(min=3, help="Enterprises in the sample.")] = 200,
    banks: Annotated[int, typer.Option(min=1, help="Consortium banks.")] = 5,
    months: Annotated[
        int,
        typer.Option(
            min=24, help="Simulated months (24 or more: a year of history and a year of outcomes)."
        ),
    ] = 24,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 1,
    host: Annotated[str, typer.Option(help="Interface to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the console when done.")
    ] = True,
) -> None:
    """Generate a sample consortium, run every pipeline step, print demo accounts, serve."""
    from rich.console import Console
    from rich.table import Table

    from flowbureau.cli.service import serve as serve_api
    from flowbureau.demo import DemoParameters, run_demo

    console = Console(stderr=True)
    parameters = DemoParameters(enterprises=enterprises, banks=banks, months=months, seed=seed)
    with console.status("starting") as status:

        def on_step(name: str) -> None:
            console.log(name)
            status.update(name + " ...")

        report = run_demo(directory, parameters=parameters, on_step=on_step)
    steps = Table(title=f"pipeline over {report.consortium}")
    steps.add_column("step")
    steps.add_column("seconds", justify="right")
    steps.add_column("result")
    for name, result in report.steps.items():
        shown = ", ".join(f"{k} {v}" for k, v in result.items() if not isinstance(v, dict | list))
        steps.add_row(name, f"{report.seconds[name]:.1f}", shown)
    out = Console()
    out.print(steps)
    # plain lines, not a table: credentials must never be cut to the terminal's width
    out.print("[bold]demo accounts[/bold] (shown once; passwords are random):")
    for account in report.accounts:
        parts = [f"{account.role:<11}", account.name]
        if account.phone:
            parts.append(f"phone {account.phone}")
        if account.password:
            parts.append(f"password {account.password}")
        if account.api_key:
            parts.append(f"API key {account.api_key}")
        if account.credit_code:
            parts.append(f"credit code {account.credit_code}")
        out.print("  " + "  ".join(parts), soft_wrap=True, markup=False, highlight=False)
    if serve:
        out.print(f"console: http://{host}:{port}/console  (API docs: http://{host}:{port}/docs)")
        serve_api(host=host, port=port, workers=1)
