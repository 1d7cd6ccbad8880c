"""``generate``: write a whole synthetic consortium (bank files, registry, records, truth).

Rules:
- Deterministic: the same parameters and seed give byte-identical files (every draw comes
  from seeded PCG64 streams; nothing depends on time, set order or the machine's locale).
- Nothing half-written: files go to a hidden sibling directory that is renamed to ``out``
  only when everything succeeded; ``out`` must not exist or be empty.
- Bank formats: by default banks cycle through CSV (named GBK/GB18030 profiles first), MT940,
  camt.053.001.08, CSV, camt.053.001.02; ``formats`` forces them (see :func:`resolve_formats`).
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flowbureau.errors import InputError
from flowbureau.formats.profiles import Profile, builtin_profiles
from flowbureau.formats.text import is_utf8
from flowbureau.synth.calendar import Calendar
from flowbureau.synth.config import BankFormat, SynthConfig, SynthSummary
from flowbureau.synth.flows import FlowSimulator
from flowbureau.synth.health import simulate_health
from flowbureau.synth.output import MonthWriter
from flowbureau.synth.records import public_record_tables, registry_tables, truth_tables
from flowbureau.synth.reference import BANK_CATALOG, PREFECTURES
from flowbureau.synth.world import World, build_world, stream
from flowbureau.synth.writers import PREAMBLE_STYLES, write_register

DEFAULT_CYCLE = ("csv", "mt940", "camt053.001.08", "csv", "camt053.001.02")
"""Formats of banks 1..5 by default; further banks continue with :data:`LATER_CYCLE`."""
LATER_CYCLE = ("csv", "mt940", "csv", "camt053.001.08", "csv", "camt053.001.02")
FORMAT_NAMES = ("mt940", "camt053", "camt053.001.02", "camt053.001.08", "csv", "csv-utf8", "mixed")
_GB_ENCODINGS = ("gbk", "gb18030", "gb2312")


def _named_profiles(profiles: dict[str, Profile]) -> list[str]:
    """Named (non-generic) profiles: bank-catalogue order first, then by name; those whose
    canonical encoding is GBK/GB18030 before the others."""
    order = [b.bank_id for b in BANK_CATALOG]
    named = [p for p in profiles if p != "generic"]
    named.sort(key=lambda p: (order.index(p) if p in order else len(order), p))
    gb = [p for p in named if profiles[p].encodings[0].lower() in _GB_ENCODINGS]
    return gb + [p for p in named if p not in gb] or ["generic"]


def resolve_formats(formats: str | None, banks: int, seed: int) -> list[BankFormat]:
    """Decide each bank's id and export format.

    ``formats``: ``None`` / ``mixed`` (the default cycle) or a comma-separated list cycled over
    the banks, each item one of ``mt940``, ``camt053`` (= ``camt053.001.08``),
    ``camt053.001.02``, ``camt053.001.08``, ``csv`` (the next named profile, in its own
    encoding), ``csv:PROFILE`` or ``csv:PROFILE@ENCODING`` (an encoding the profile lists), or
    ``csv-utf8`` (a profile that lists a UTF-8 encoding, written in UTF-8, no summary rows).
    """
    profiles = builtin_profiles()
    named = _named_profiles(profiles)
    utf8_profiles = [
        p for p in [*named, "generic"] if any(is_utf8(e) for e in profiles[p].encodings)
    ]
    utf8_profiles.sort(key=lambda p: (not is_utf8(profiles[p].encodings[0]), p == "generic"))
    if formats is None or formats.strip() in ("", "mixed"):
        specs = [
            DEFAULT_CYCLE[i]
            if i < len(DEFAULT_CYCLE)
            else LATER_CYCLE[(i - len(DEFAULT_CYCLE)) % len(LATER_CYCLE)]
            for i in range(banks)
        ]
    else:
        items = [s.strip() for s in formats.split(",") if s.strip()]
        specs = [items[i % len(items)] for i in range(banks)]
    rng = stream(seed, "banks", 7)
    chosen: list[tuple[str, str | None, str | None, bool, str | None]] = []
    csv_turn = 0
    utf_turn = 0
    for spec in specs:
        if spec in ("mt940", "camt053.001.02", "camt053.001.08"):
            chosen.append((spec, None, None, False, None))
        elif spec == "camt053":
            chosen.append(("camt053.001.08", None, None, False, None))
        elif spec == "csv":
            name = named[csv_turn % len(named)]
            csv_turn += 1
            chosen.append(("csv", name, profiles[name].encodings[0], *_csv_style(rng)))
        elif spec == "csv-utf8":
            if not utf8_profiles:
                raise InputError("no bank profile lists a UTF-8 encoding", field="formats")
            name = utf8_profiles[utf_turn % len(utf8_profiles)]
            utf_turn += 1
            encoding = next(e for e in profiles[name].encodings if is_utf8(e))
            chosen.append(("csv", name, encoding, False, "colon"))
        elif spec.startswith("csv:"):
            name, _, encoding = spec[4:].partition("@")
            if name not in profiles:
                raise InputError(
                    f"unknown bank profile {name!r}; known: {', '.join(sorted(profiles))}",
                    field="formats",
                )
            if encoding and encoding not in profiles[name].encodings:
                raise InputError(
                    f"profile {name!r} does not list encoding {encoding!r} "
                    f"({', '.join(profiles[name].encodings)})",
                    field="formats",
                )
            chosen.append(("csv", name, encoding or profiles[name].encodings[0], *_csv_style(rng)))
        else:
            raise InputError(
                f"unknown format {spec!r}; use {', '.join(FORMAT_NAMES)}, csv:PROFILE or "
                "csv:PROFILE@ENCODING",
                field="formats",
            )
    catalog = {b.bank_id: b for b in BANK_CATALOG}
    ids: list[str | None] = [None] * banks
    used: set[str] = set()
    for i, (fmt, profile, _, _, _) in enumerate(chosen):
        if fmt == "csv" and profile in catalog and profile not in used:
            ids[i] = profile
            used.add(profile)
    reserved = set(named) - used
    free = [b.bank_id for b in BANK_CATALOG if b.bank_id not in used and b.bank_id not in reserved]
    free += [b for b in sorted(reserved) if b in catalog]
    out: list[BankFormat] = []
    for i, (fmt, profile, text_encoding, summary, style) in enumerate(chosen):
        bank_id = ids[i]
        if bank_id is None:
            bank_id = free.pop(0) if free else f"rcb{i + 1:02d}"
            used.add(bank_id)
        if bank_id in catalog:
            bank_name = catalog[bank_id].name_zh
        else:
            bank_name = f"{PREFECTURES[i % len(PREFECTURES)].city}农村商业银行"
        out.append(BankFormat(bank_id, bank_name, fmt, profile, text_encoding, summary, style))
    return out


def _csv_style(rng: np.random.Generator) -> tuple[bool, str]:
    """A CSV bank's summary-row habit and preamble style."""
    summary = bool(rng.random() < 0.5)
    return summary, PREAMBLE_STYLES[int(rng.integers(0, len(PREAMBLE_STYLES)))]


def _check(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"must be an integer in {low}..{high}, got {value!r}", field=name)


def generate(
    out: Path,
    *,
    enterprises: int = 200,
    banks: int = 5,
    months: int = 24,
    seed: int = 0,
    start: date = date(2024, 1, 1),
    formats: str | None = None,
    anomalies: bool = True,
    progress: bool = False,
    config: SynthConfig | None = None,
) -> SynthSummary:
    """Generate a consortium into the new directory ``out`` and describe what was written.

    See ``docs/synth.md`` for the layout and every column. Raises
    :class:`~flowbureau.errors.InputError` naming the bad parameter before writing anything.
    """
    _check("enterprises", enterprises, 3, 2_000_000)
    _check("banks", banks, 1, 60)
    _check("months", months, 1, 240)
    _check("seed", seed, 0, 2**63 - 1)
    config = config or SynthConfig()
    config.validate()
    calendar = Calendar(start, months)
    bank_formats = resolve_formats(formats, banks, seed)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("the output directory exists and is not empty", file=out, field="out")
    staging = out.parent / f".{out.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        summary = _generate(
            staging,
            out=out,
            enterprises=enterprises,
            months=months,
            seed=seed,
            calendar=calendar,
            bank_formats=bank_formats,
            formats=formats,
            anomalies=anomalies,
            progress=progress,
            config=config,
        )
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _generate(
    root: Path,
    *,
    out: Path,
    enterprises: int,
    months: int,
    seed: int,
    calendar: Calendar,
    bank_formats: list[BankFormat],
    formats: str | None,
    anomalies: bool,
    progress: bool,
    config: SynthConfig,
) -> SynthSummary:
    with _Progress(progress, months) as step:
        step("building enterprises, accounts and links")
        world = build_world(
            seed=seed,
            start=calendar.start,
            months=months,
            enterprises=enterprises,
            banks=bank_formats,
            config=config,
        )
        step("simulating health, shocks and defaults")
        health = simulate_health(world, calendar)
        flows = FlowSimulator(world, health, calendar, anomalies=anomalies)
        writer = MonthWriter(root, world, health, calendar, anomalies=anomalies)
        entries = 0
        for t in range(months):
            step(f"month {calendar.month_first[t]:%Y-%m}")
            month = flows.month(t)
            entries += len(month.events)
            writer.write(month)
            step(advance=True)
        writer.close()
        step("registry, public records and ground truth")
        _registers(root, world)
        for name, table in registry_tables(world).items():
            _write_csv(root / "registry" / f"{name}.csv", table)
        for name, table in public_record_tables(world, health, flows, calendar).items():
            _write_csv(root / "public_records" / f"{name}.csv", table)
        truth = root / "ground_truth"
        for name, table in truth_tables(world, health, flows, calendar).items():
            pq.write_table(table, truth / f"{name}.parquet", compression="zstd")
        for name, rows in (
            ("problems", writer.truth.problems),
            ("file_pairs", writer.truth.file_pairs),
            ("statements", writer.truth.statements),
        ):
            pq.write_table(_table(rows), truth / f"{name}.parquet", compression="zstd")
        planted = {**flows.planted, **writer.planted} if anomalies else {}
        defaults = int((health.default_month >= 0).sum())
        summary = SynthSummary(
            out=out,
            seed=seed,
            enterprises=enterprises,
            months=months,
            banks=tuple(bank_formats),
            accounts=world.accounts.n,
            entries=entries,
            payments=writer.links,
            statement_files=writer.files,
            defaults=defaults,
            planted=planted,
        )
        _manifest(
            root,
            summary,
            calendar=calendar,
            formats=formats,
            anomalies=anomalies,
            config=config,
            quarters=(health.macro[0].quarter, health.macro[-1].quarter),
        )
    return summary


def _registers(root: Path, world: World) -> None:
    """Each bank's account register (开户清单)."""
    acc = world.accounts
    ent = world.enterprises
    epoch = date(1970, 1, 1)
    for bank in world.banks:
        rows = [
            (
                acc.number[a],
                ent.name[int(acc.owner[a])],
                ent.credit_code[int(acc.owner[a])],
                "USD" if acc.usd[a] else "CNY",
                epoch + timedelta(days=int(acc.opened[a])),
            )
            for a in np.flatnonzero(acc.bank == bank.index).tolist()
        ]
        directory = root / "banks" / bank.export.bank_id
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "account_register.csv").write_bytes(write_register(rows))


def _table(rows: dict[str, list[object]]) -> pa.Table:
    return pa.table({k: pa.array(v) if v else pa.array([], pa.string()) for k, v in rows.items()})


def _write_csv(path: Path, table: pa.Table) -> None:
    """UTF-8 CSV with a header; empty cells for nulls; dates ISO; booleans true/false."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [table.column(name).to_pylist() for name in table.column_names]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in zip(*columns, strict=True):
            writer.writerow(
                [
                    "" if v is None else ("true" if v is True else "false" if v is False else v)
                    for v in row
                ]
            )


def _manifest(
    root: Path,
    summary: SynthSummary,
    *,
    calendar: Calendar,
    formats: str | None,
    anomalies: bool,
    config: SynthConfig,
    quarters: tuple[str, str],
) -> None:
    manifest = {
        "generator": "flowbureau.synth",
        "layout_version": 1,
        "parameters": {
            "enterprises": summary.enterprises,
            "banks": len(summary.banks),
            "months": summary.months,
            "seed": summary.seed,
            "start": calendar.start.isoformat(),
            "formats": formats,
            "anomalies": anomalies,
        },
        "config": asdict(config),
        "timezone": "+08:00",
        "banks": [
            {
                "bank_id": b.bank_id,
                "name": b.name,
                "format": b.format,
                "profile": b.profile,
                "encoding": b.encoding,
                "summary_row": b.summary_row,
                "preamble_style": b.preamble_style,
                "statements": f"banks/{b.bank_id}/statements",
                "register": f"banks/{b.bank_id}/account_register.csv",
            }
            for b in summary.banks
        ],
        "counts": {
            "enterprises": summary.enterprises,
            "accounts": summary.accounts,
            "entries": summary.entries,
            "payment_links": summary.payments,
            "statement_files": summary.statement_files,
            "defaults": summary.defaults,
        },
        "planted": summary.planted,
        "macro": {
            "source": "statsmodels.datasets.macrodata (US quarterly, 1959Q1-2009Q3)",
            "first_quarter": quarters[0],
            "last_quarter": quarters[1],
            "rule": "simulated month m uses quarter row L - ceil(months/3) + m // 3 "
            "of the L = 202 growth quarters",
        },
    }
    (root / "manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


class _Progress:
    """A rich progress bar over the months (or nothing)."""

    def __init__(self, enabled: bool, months: int) -> None:
        self.enabled = enabled
        self.months = months
        self._progress: object | None = None
        self._task: object | None = None

    def __enter__(self) -> Callable[..., None]:
        if not self.enabled:
            return lambda *_args, **_kwargs: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        progress = Progress(
            TextColumn("{task.description:<44}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        progress.start()
        task = progress.add_task("synth", total=self.months)
        self._progress = progress

        def step(description: str | None = None, *, advance: bool = False) -> None:
            progress.update(task, description=description, advance=1 if advance else 0)

        return step

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            from rich.progress import Progress

            assert isinstance(self._progress, Progress)
            self._progress.stop()
