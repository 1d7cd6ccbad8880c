"""Output shared by the CLI commands: one JSON document on stdout, progress on stderr.

Progress goes to stderr and disappears when done, so ``--json`` output stays one clean
document on stdout; rich is imported only when a command draws progress.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["echo_json", "progress_bar", "spinner"]


def echo_json(data: Any) -> None:
    """Print ``data`` as one line of JSON (non-ASCII kept, dates and paths as strings)."""
    typer.echo(json.dumps(data, ensure_ascii=False, default=str))


def spinner(enabled: bool) -> Progress:
    """A spinner with the step's description and elapsed time, for work of unknown length."""
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    return _progress(
        enabled, SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()
    )


def progress_bar(enabled: bool) -> Progress:
    """A bar with the step's description and elapsed time, for work reported as a fraction."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    return _progress(enabled, TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())


def _progress(enabled: bool, *columns: Any) -> Progress:
    from rich.console import Console
    from rich.progress import Progress

    return Progress(*columns, console=Console(stderr=True), disable=not enabled, transient=True)
