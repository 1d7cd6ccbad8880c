"""The ``flowbureau`` command line: thin adapters over the domain services.

Each command group lives in its own module and imports heavy domain code inside the command
functions, so ``flowbureau --help`` stays fast. Errors derived from
:class:`~flowbureau.errors.FlowbureauError` are printed as one clear line and exit non-zero.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from flowbureau.config import get_settings
from flowbureau.errors import FlowbureauError, InputError

app = typer.Typer(
    name="flowbureau",
    help="Consortium credit bureau for SMEs built on enterprise bank transaction flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where flowbureau stores everything (env FLOWBUREAU_DATA_DIR; "
            "default ./flowbureau-data).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Consortium credit bureau for SMEs built on enterprise bank transaction flows."""
    if data_dir is not None:
        os.environ["FLOWBUREAU_DATA_DIR"] = str(data_dir)
        get_settings.cache_clear()


def main() -> None:
    """Console entry point: run the app, turning flowbureau errors into a message + exit code."""
    try:
        app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except FlowbureauError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


from flowbureau.cli import service as _service  # noqa: E402

app.command("serve")(_service.serve)
app.add_typer(_service.admin_app, name="admin")
app.add_typer(_service.audit_app, name="audit")
app.add_typer(_service.db_app, name="db")

from flowbureau.cli import data as _data  # noqa: E402

app.command("ingest")(_data.ingest)
app.command("sql")(_data.sql)
app.command("inspect")(_data.inspect)

from flowbureau.cli import synth as _synth  # noqa: E402

app.command("synth")(_synth.synth)

from flowbureau.cli import score as _score  # noqa: E402

app.add_typer(_score.app, name="score")

from flowbureau.cli import graph as _graph  # noqa: E402

app.add_typer(_graph.app, name="graph")

from flowbureau.cli import anomaly as _anomaly  # noqa: E402

app.add_typer(_anomaly.app, name="anomaly")

from flowbureau.cli import ledger as _ledger  # noqa: E402

app.command("init")(_ledger.init)
app.add_typer(_ledger.app, name="ledger")
app.add_typer(_ledger.node_app, name="node")
app.add_typer(_ledger.platform_app, name="platform")
_service.audit_app.command("anchor")(_ledger.audit_anchor)

from flowbureau.cli import demo as _demo  # noqa: E402

app.command("demo")(_demo.demo)
