"""Benchmark: generating a synthetic consortium vs writing the same rows as one CSV file.

``flowbureau.synth.generate`` is timed end to end (world, health, monthly flows, every native
statement file, registers, registry, public records, ground truth). The baseline, measured in
the same run on the same rows, is the floor of merely writing them: ``pyarrow.csv`` writing
the ground-truth transactions (read back in batches) into one file.

Sizes are approximate entry counts (``--quick``: 100k; default 1M; ``--sizes 1m,10m``), reached
with 12 months and about 33 entries per enterprise-month at activity 1. Goals: 1M entries in at
most 60 s; 10M (measured, or projected from the largest size run) within 5 minutes; peak memory
under 4 GiB.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Report, Stopwatch, parse_args, peak_rss_mb

SIZES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
ENTRIES_PER_ENTERPRISE_MONTH = 33
MONTHS = 12


def main() -> None:
    """Run the benchmark and print the report."""
    args = parse_args(
        __doc__ or "",
        sizes={"default": "1m", "help": "comma-separated sizes among 100k, 1m, 10m"},
        formats={"default": "mixed", "help": "bank formats (as flowbureau synth --formats)"},
        work_dir={"default": None, "help": "where to write the consortia (default: a temp dir)"},
    )
    sizes = ["100k"] if args.quick else [s.strip() for s in args.sizes.split(",")]
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench-synth-"))
    report = Report(
        bench="synth",
        title=f"flowbureau synth ({args.formats} formats) vs one-file CSV floor",
        columns=(
            "size",
            "enterprises",
            "entries",
            "files",
            "synth s",
            "entries/s",
            "floor s",
            "x floor",
        ),
    )
    rates: dict[str, float] = {}
    for size in sizes:
        rate = _run(size, args.formats, args.seed, work, report)
        rates[size] = rate
    largest = sizes[-1]
    report.figures["peak_rss_mb"] = peak_rss_mb()
    if "1m" in report.figures.get("seconds", {}):
        report.goal("seconds_1m", report.figures["seconds"]["1m"], 60.0, higher_is_better=False)
    projected = report.figures["seconds"].get("10m", SIZES["10m"] / rates[largest])
    report.figures["seconds_10m_projected" if "10m" not in rates else "seconds_10m"] = projected
    report.goal("seconds_10m", projected, 300.0, higher_is_better=False)
    report.goal("peak_rss_mb", report.figures["peak_rss_mb"], 4096.0, higher_is_better=False)
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    report.print()


def _run(size: str, formats: str, seed: int, work: Path, report: Report) -> float:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from flowbureau.synth import generate

    enterprises = max(3, round(SIZES[size] / (MONTHS * ENTRIES_PER_ENTERPRISE_MONTH)))
    out = work / f"consortium-{size}-{formats}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    watch = Stopwatch()
    with watch.time("synth"):
        summary = generate(
            out,
            enterprises=enterprises,
            months=MONTHS,
            seed=seed,
            formats=None if formats == "mixed" else formats,
            progress=True,
        )
    source = pq.ParquetFile(out / "ground_truth" / "transactions.parquet")
    with (
        watch.time("floor"),
        pacsv.CSVWriter(work / f"floor-{size}.csv", source.schema_arrow) as sink,
    ):
        for batch in source.iter_batches(batch_size=1 << 18):
            sink.write_batch(batch)
    seconds, floor = watch.seconds["synth"], watch.seconds["floor"]
    rate = summary.entries / seconds
    report.row(
        size,
        enterprises,
        summary.entries,
        summary.statement_files,
        seconds,
        rate,
        floor,
        seconds / floor,
    )
    report.figures.setdefault("seconds", {})[size] = seconds
    report.figures.setdefault("entries", {})[size] = summary.entries
    report.figures.setdefault("entries_per_second", {})[size] = rate
    report.figures.setdefault("floor_seconds", {})[size] = floor
    (work / f"floor-{size}.csv").unlink()
    shutil.rmtree(out, ignore_errors=True)
    return rate


if __name__ == "__main__":
    main()
