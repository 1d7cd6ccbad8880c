"""The outcome of reading every shared fixture statement, as the table in docs/formats.md.

Run ``python tests/formats/fixture_table.py [FIXTURES_DIR]`` to print the table;
``test_formats_fixtures.py`` checks that the documented table is the current outcome.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from flowbureau.errors import InputError
from flowbureau.formats import read_file, reconcile

START = "<!-- fixture-table:start -->"
END = "<!-- fixture-table:end -->"


@dataclass(frozen=True)
class Outcome:
    """What reading one fixture file gave."""

    file: str
    format: str
    statements: int
    entries: int
    pending: int
    invalid: int
    result: str


def fixture_files(root: Path) -> list[Path]:
    """Every statement file under ``root`` (licences and READMEs excluded), sorted."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name not in {"LICENSE", "README.md"} and not p.name.startswith(".")
    )


def outcome(path: Path, root: Path) -> Outcome:
    """Read ``path`` and summarise the result (an error becomes its located message)."""
    name = path.relative_to(root).as_posix()
    try:
        result = read_file(path)
    except InputError as exc:
        where = exc.location
        place = f"line {where.line}" if where.line else (where.path or "file")
        field = f", {where.field}" if where.field else ""
        message = exc.message if len(exc.message) <= 110 else exc.message[:107] + "..."
        return Outcome(name, "-", 0, 0, 0, 0, f"{type(exc).__name__} at {place}{field}: {message}")
    diffs = [reconcile(s) for s in result.statements]
    if not diffs:
        summary = "no statements"
    elif all(d == 0 for d in diffs):
        summary = "reconciled"
    elif all(d is None for d in diffs):
        summary = "no balances to reconcile"
    else:
        parts = []
        for index, diff in enumerate(diffs, start=1):
            if diff:
                parts.append(f"#{index} off by {diff}")
            elif diff is None:
                parts.append(f"#{index} n/a")
        summary = "reconciled except " + ", ".join(parts)
    entries = [s.entries for s in result.statements]
    invalid = sum(
        sum(1 for status in e.column("status").to_pylist() if status.startswith("INVALID:"))
        for e in entries
    )
    return Outcome(
        name,
        result.format,
        len(result.statements),
        sum(e.num_rows for e in entries),
        sum(s.pending.num_rows for s in result.statements),
        invalid,
        summary,
    )


def markdown(root: Path) -> str:
    """The fixture table in Markdown."""
    lines = [
        "| file | format | statements | entries | pending | invalid | outcome |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for path in fixture_files(root):
        o = outcome(path, root)
        result = o.result.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| `{o.file}` | {o.format} | {o.statements} | {o.entries} | {o.pending} | "
            f"{o.invalid} | {result} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    fixtures = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/fixtures/statements")
    print(markdown(fixtures))
