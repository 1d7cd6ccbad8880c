"""Benchmark: `flowbureau ingest` of an all-CSV consortium vs DuckDB's bare CSV copy and pandas.

Data: ``flowbureau.synth.generate(formats="csv-utf8")`` (every bank exports UTF-8 CSV through
its bank profile), cached under ``--work-dir`` (generation is not timed). Sizes: ``--quick``
about 100k entries; otherwise about 1M and 10M (``--sizes``).

Each system runs in its own subprocess (so its peak RSS is its own) on the same files:

- **duckdb floor**: ``read_csv`` of every statement file (layout sniffed once per bank and
  header position, columns as text) copied to Parquet, nothing else: the cost of just moving
  the bytes into the warehouse format.
- **flowbureau**: ``flowbureau.ingestion.ingest`` - parse through the bank profiles, validate,
  pseudonymise, standardise, deduplicate, categorise, quarantine, store, link payments, flag
  outliers, commit.
- **pandas**: a straightforward pandas implementation of the same cleaning (read_csv, map the
  profile's columns, parse dates and amounts, HMAC pseudonyms, content hash + dedupe, the same
  category rules, per-account median/MAD outliers, payment links by merge), capped at
  ``--pandas-cap`` seconds (reported as "> cap" when it runs out).

Goals (on the largest size run): flowbureau within 3x of the DuckDB floor, at least 10x faster
than pandas, and memory bounded (peak RSS under ``--rss-bound`` MiB; with two sizes, the peak
grows less than 1.5x from the smaller to the larger).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Report, parse_args

SIZES: dict[str, int] = {"100k": 14, "1m": 140, "10m": 1400}
"""Size label -> enterprises (12 months, activity 40: about 7,200 entries per enterprise)."""
MONTHS = 12
ACTIVITY = 40.0
SYSTEMS = ("duckdb", "flowbureau", "pandas")


# -- data ------------------------------------------------------------------------------------


def consortium(work: Path, size: str, seed: int) -> Path:
    """The generated consortium for ``size`` (generated once, then reused)."""
    out = work / f"consortium-{size}-seed{seed}"
    if not (out / "manifest.json").exists():
        from flowbureau.synth import SynthConfig, generate

        print(f"generating {size} consortium into {out} (not timed) ...", flush=True)
        generate(
            out,
            enterprises=SIZES[size],
            banks=5,
            months=MONTHS,
            seed=seed,
            formats="csv-utf8",
            config=SynthConfig(activity=ACTIVITY),
            progress=True,
        )
    return out


def statement_files(banks: Path) -> list[Path]:
    """Every statement CSV (account registers excluded)."""
    return sorted(banks.glob("*/statements/**/*.csv"))


def _header_line(path: Path) -> int:
    with path.open(encoding="utf-8-sig") as handle:
        for index, line in enumerate(handle):
            if "：" not in line and ":" not in line.split(",")[0]:
                return index
    raise ValueError(f"{path}: no header line")


# -- the three systems (run in child processes) ----------------------------------------------


def run_duckdb(banks: Path, out: Path) -> int:
    """Copy every statement file to Parquet with DuckDB's CSV reader; return rows.

    Files are grouped by bank and header line; each group's layout is sniffed once from its
    first file and read with that layout (sniffing every small file would cost DuckDB far more
    than reading it).
    """
    import duckdb

    groups: dict[tuple[str, int], list[str]] = {}
    for path in statement_files(banks):
        bank = path.relative_to(banks).parts[0]
        groups.setdefault((bank, _header_line(path)), []).append(str(path))
    con = duckdb.connect()
    rows = 0
    out.mkdir(parents=True, exist_ok=True)
    for index, ((_, skip), files) in enumerate(sorted(groups.items())):
        first = files[0].replace("'", "''")
        sniffed = con.execute(
            f"SELECT Columns FROM sniff_csv('{first}', skip={skip}, header=true)"
        ).fetchone()
        assert sniffed is not None
        columns = ", ".join(f"'{c['name']}': 'VARCHAR'" for c in sniffed[0])
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        target = out / f"part-{index}.parquet"
        con.execute(
            f"COPY (SELECT * FROM read_csv([{listed}], skip={skip}, header=true, "
            f"auto_detect=false, delim=',', quote='\"', columns={{{columns}}})) "
            f"TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
        )
        counted = con.execute(f"SELECT count(*) FROM '{target}'").fetchone()
        assert counted is not None
        rows += int(counted[0])
    return rows


def run_flowbureau(banks: Path, out: Path) -> int:
    """``flowbureau ingest`` into a fresh data directory; return stored records."""
    os.environ["FLOWBUREAU_DATA_DIR"] = str(out)
    from flowbureau.config import get_settings
    from flowbureau.ingestion import ingest

    get_settings.cache_clear()
    report = ingest([banks])
    return report.new_records


def run_pandas(banks: Path, out: Path) -> int:
    """The same cleaning written plainly in pandas; return stored records."""
    import hashlib
    import hmac
    import io

    import numpy as np
    import pandas as pd

    from flowbureau.cleaning.rules import load_rules
    from flowbureau.formats.profiles import builtin_profiles

    key = b"bench-pseudonym-key"
    profiles = builtin_profiles()
    rules = load_rules()
    frames: list[pd.DataFrame] = []
    owners: dict[str, str] = {}
    for bank_dir in sorted(p for p in banks.iterdir() if p.is_dir()):
        register = pd.read_csv(bank_dir / "account_register.csv", dtype=str, encoding="utf-8-sig")
        owners.update(zip(register["账号"], register["统一社会信用代码"], strict=True))
        for path in sorted((bank_dir / "statements").rglob("*.csv")):
            lines = path.read_text("utf-8-sig").splitlines()
            start = _header_line(path)
            preamble = dict(line.split("：", 1) for line in lines[:start] if "：" in line)
            df = pd.read_csv(
                io.StringIO("\n".join(lines[start:])), dtype=str, keep_default_na=False
            )
            header = list(df.columns)
            profile = next(
                (p for p in profiles.values() if p.match and all(m in header for m in p.match)),
                profiles["generic"],
            )

            def column(field: str, df: pd.DataFrame = df, profile: Any = profile) -> Any:
                names = [h for h in profile.headers(field) if h in df.columns]
                return df[names[0]] if names else None

            day, clock = column("date"), column("time")
            when = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
            for date_format in profile.date_formats:
                if clock is None or "%H" in date_format:
                    attempts = [(day, date_format)]
                else:
                    attempts = [
                        (day + " " + clock, f"{date_format} {t}") for t in profile.time_formats
                    ]
                for text, fmt in attempts:
                    when = when.fillna(pd.to_datetime(text, format=fmt, errors="coerce"))
            if column("amount") is not None:
                amount = pd.to_numeric(column("amount").str.replace(",", ""), errors="coerce")
                if column("direction") is not None:
                    debit = column("direction").isin(profile.direction_values.get("debit", ()))
                    amount = amount.where(~debit, -amount.abs())
            else:
                debit = pd.to_numeric(column("debit"), errors="coerce").fillna(0)
                credit = pd.to_numeric(column("credit"), errors="coerce").fillna(0)
                amount = credit - debit
            account = preamble.get("账号", "")
            frame = pd.DataFrame(
                {
                    "bank_id": bank_dir.name,
                    "account_number": account,
                    "booked_local": when,
                    "amount_minor": (amount * 100).round(),
                    "currency": "CNY",
                    "counterparty_name": column("counterparty_name"),
                    "counterparty_account": column("counterparty_account"),
                    "description": column("description"),
                    "reference": column("reference"),
                    "source_file": str(path),
                    "line": np.arange(len(df)) + start + 2,
                }
            )
            frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    bad = df["booked_local"].isna() | df["amount_minor"].isna()
    quarantine = df[bad]
    df = df[~bad].copy()
    df["amount_minor"] = df["amount_minor"].astype("int64")
    df["booked_at"] = df["booked_local"].dt.tz_localize("Asia/Shanghai").dt.tz_convert("UTC")

    def pseudonym(number: str) -> str | None:
        clean = str(number).replace(" ", "").upper()
        if not clean:
            return None
        return hmac.new(key, clean.encode(), hashlib.sha256).hexdigest()[:32]

    df["account_id"] = df["account_number"].map(pseudonym)
    df["counterparty_id"] = df["counterparty_account"].fillna("").map(pseudonym)
    df["enterprise_id"] = df["account_number"].map(owners)
    df["counterparty_name_norm"] = (
        df["counterparty_name"].fillna("").str.replace(r"\s+", "", regex=True).str.lower()
    )
    key_columns = [
        "bank_id",
        "account_id",
        "amount_minor",
        "reference",
        "counterparty_id",
        "counterparty_name_norm",
        "description",
    ]
    df["day"] = df["booked_local"].dt.strftime("%Y-%m-%d")
    df["occurrence"] = df.groupby(["source_file", "day", *key_columns], dropna=False).cumcount()
    text = df[["day", *key_columns, "occurrence"]].astype(str).fillna("").agg("|".join, axis=1)
    df["tx_id"] = text.map(lambda s: hashlib.sha256(s.encode()).hexdigest()[:32])
    df = df.drop_duplicates("tx_id")

    folded = df["description"].fillna("").str.lower()
    names = df["counterparty_name_norm"]
    conditions, choices = [], []
    for rule in rules.rules:
        texts = []
        if rule.description:
            texts.append(folded.str.contains("(?i)" + rule.description, regex=True))
        if rule.counterparty:
            texts.append(names.str.contains("(?i)" + rule.counterparty, regex=True))
        condition = pd.Series(True, index=df.index)
        if texts:
            hit = texts[0]
            for other in texts[1:]:
                hit = (hit & other) if rule.match_all else (hit | other)
            condition &= hit
        if rule.direction == "in":
            condition &= df["amount_minor"] > 0
        elif rule.direction == "out":
            condition &= df["amount_minor"] < 0
        if rule.own_account is not None:
            condition &= pd.Series(not rule.own_account, index=df.index)
        conditions.append(condition.to_numpy())
        choices.append(rule.tx_type.value)
    df["tx_type"] = np.select(conditions, choices, default="other")

    df["inflow"] = df["amount_minor"] > 0
    df["v"] = np.log(df["amount_minor"].abs().clip(lower=1))
    groups = df.groupby(["account_id", "inflow", "tx_type"])["v"]
    median = groups.transform("median")
    mad = groups.transform(lambda x: (x - x.median()).abs().median())
    size = groups.transform("size")
    z = 0.6745 * (df["v"] - median) / mad.replace(0, np.nan)
    df["outlier"] = (size >= 12) & (z > 3.5)

    debits = df[df["amount_minor"] < 0][
        ["tx_id", "account_id", "counterparty_id", "amount_minor", "booked_at"]
    ]
    credits = df[df["amount_minor"] > 0][["tx_id", "account_id", "amount_minor", "booked_at"]]
    debits = debits.assign(match=-debits["amount_minor"])
    pairs = debits.merge(
        credits,
        left_on=["counterparty_id", "match"],
        right_on=["account_id", "amount_minor"],
        suffixes=("_d", "_c"),
    )
    pairs["gap"] = (pairs["booked_at_c"] - pairs["booked_at_d"]).abs()
    pairs = pairs[pairs["gap"] <= pd.Timedelta(days=3)].sort_values("gap")
    pairs = pairs.drop_duplicates("tx_id_d").drop_duplicates("tx_id_c")
    link = dict(zip(pairs["tx_id_d"], pairs["tx_id_c"], strict=True))
    link.update(zip(pairs["tx_id_c"], pairs["tx_id_d"], strict=True))
    df["linked_tx_id"] = df["tx_id"].map(link)

    out.mkdir(parents=True, exist_ok=True)
    df.drop(columns=["account_number", "counterparty_account", "v"]).to_parquet(
        out / "transactions.parquet"
    )
    quarantine.to_parquet(out / "quarantine.parquet")
    return len(df)


RUNNERS = {"duckdb": run_duckdb, "flowbureau": run_flowbureau, "pandas": run_pandas}


def child(system: str, banks: Path, out: Path) -> None:
    """Run one system and print ``{"seconds", "rows", "rss_mb"}`` as the last line."""
    start = time.perf_counter()
    rows = RUNNERS[system](banks, out)
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "rss_mb": own + workers}))


# -- the parent ------------------------------------------------------------------------------


def measure(system: str, banks: Path, out: Path, cap: float | None) -> dict[str, Any]:
    """Run ``system`` in a subprocess; ``{"seconds", "rows", "rss_mb"}`` or a timeout note."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable,
        __file__,
        "--child",
        system,
        "--input",
        str(banks),
        "--output",
        str(out),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cap, check=False)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "rows": None, "rss_mb": None, "capped": cap}
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"{system} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (see the module docstring)."""
    args = parse_args(
        __doc__.splitlines()[0],
        argv,
        work_dir={"type": Path, "default": Path("bench-out/ingest"), "help": "data cache"},
        sizes={"default": None, "help": "comma-separated sizes: 100k, 1m, 10m"},
        pandas_cap={"type": float, "default": 900.0, "help": "pandas time limit (s)"},
        rss_bound={"type": float, "default": 4096.0, "help": "peak RSS goal (MiB)"},
        child={"default": None, "help": argparse_hidden()},
        input={"type": Path, "default": None, "help": argparse_hidden()},
        output={"type": Path, "default": None, "help": argparse_hidden()},
    )
    if args.child:
        child(args.child, args.input, args.output)
        return
    sizes = (args.sizes or ("100k" if args.quick else "1m,10m")).split(",")
    work: Path = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    report = Report(
        "ingest",
        "ingest of an all-CSV (UTF-8) synthetic consortium",
        ["size", "system", "seconds", "rows", "rows/s", "peak RSS MiB", "x duckdb floor"],
    )
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for size in sizes:
        banks = consortium(work, size, args.seed) / "banks"
        files = len(statement_files(banks))
        results[size] = {}
        for system in SYSTEMS:
            cap = args.pandas_cap if system == "pandas" else None
            print(f"{size}: running {system} on {files} files ...", flush=True)
            results[size][system] = measure(system, banks, work / f"run-{system}", cap)
        floor = results[size]["duckdb"]["seconds"]
        for system in SYSTEMS:
            r = results[size][system]
            if r["seconds"] is None:
                report.row(size, system, f"> {r['capped']:.0f}", "-", "-", "-", "-")
                continue
            report.row(
                size,
                system,
                r["seconds"],
                r["rows"],
                r["rows"] / r["seconds"],
                r["rss_mb"],
                r["seconds"] / floor,
            )
            report.figures[f"{size}_{system}_seconds"] = r["seconds"]
            report.figures[f"{size}_{system}_rss_mb"] = r["rss_mb"]
            report.figures[f"{size}_{system}_rows"] = r["rows"]
        report.figures[f"{size}_files"] = files
    largest = results[sizes[-1]]
    ours = largest["flowbureau"]
    report.goal(
        "flowbureau_vs_duckdb_floor",
        ours["seconds"] / largest["duckdb"]["seconds"],
        3.0,
        higher_is_better=False,
    )
    pandas_seconds = largest["pandas"]["seconds"] or largest["pandas"]["capped"]
    report.goal(
        "pandas_over_flowbureau" + ("_at_least" if largest["pandas"]["seconds"] is None else ""),
        pandas_seconds / ours["seconds"],
        10.0,
        higher_is_better=True,
    )
    report.goal("flowbureau_peak_rss_mb", ours["rss_mb"], args.rss_bound, higher_is_better=False)
    if len(sizes) > 1:
        smallest = results[sizes[0]]["flowbureau"]
        report.goal(
            "flowbureau_rss_growth",
            ours["rss_mb"] / smallest["rss_mb"],
            1.5,
            higher_is_better=False,
        )
    report.print()


def argparse_hidden() -> str:
    """Help text of the internal options (``argparse.SUPPRESS``)."""
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
