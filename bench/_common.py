"""Helpers shared by the benchmark scripts: arguments, timing, machine facts, the report.

Every bench prints a readable table and, as its last line, one JSON object
``{"bench": NAME, "figures": {...}, "goals": {GOAL: {"value", "target", "met"}}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table


def parse_args(
    description: str, argv: Sequence[str] | None = None, **extra: Any
) -> argparse.Namespace:
    """Parse the common ``--quick`` and ``--seed`` options (plus ``extra``).

    ``extra`` maps option names (without dashes) to ``argparse.add_argument`` keyword dicts.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes; finishes in under a minute"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    for name, kwargs in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", **kwargs)
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    """Facts about the machine a result was measured on."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Stopwatch:
    """Accumulates wall-clock seconds of named steps."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        """Time the body of a ``with`` block under ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass
class Report:
    """Collects rows for the table, figures and goals, then prints them."""

    bench: str
    title: str
    columns: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    goals: dict[str, dict[str, Any]] = field(default_factory=dict)

    def row(self, *values: Any) -> None:
        """Add one table row."""
        self.rows.append(values)

    def goal(self, name: str, value: float, target: float, *, higher_is_better: bool) -> None:
        """Record a goal and whether ``value`` meets ``target``."""
        met = value >= target if higher_is_better else value <= target
        self.goals[name] = {"value": _round(value), "target": target, "met": bool(met)}

    def print(self) -> None:
        """Print the table, the goals, and the JSON line last."""
        console = Console(file=sys.stdout, width=120)
        table = Table(title=self.title)
        for column in self.columns:
            table.add_column(column)
        for values in self.rows:
            table.add_row(*(_fmt(v) for v in values))
        console.print(table)
        if self.goals:
            goals = Table(title="goals")
            for column in ("goal", "value", "target", "met"):
                goals.add_column(column)
            for name, g in self.goals.items():
                goals.add_row(
                    name, _fmt(g["value"]), _fmt(g["target"]), "yes" if g["met"] else "NO"
                )
            console.print(goals)
        console.print(f"machine: {machine()}")
        sys.stdout.flush()
        figures = {k: _round(v) for k, v in self.figures.items()}
        print(json.dumps({"bench": self.bench, "figures": figures, "goals": self.goals}))


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
