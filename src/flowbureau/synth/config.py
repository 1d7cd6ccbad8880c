"""Parameters of a synthetic consortium and the summary a run returns.

Rules:
- :class:`SynthConfig` holds the finer rates; every field has a documented default and is
  validated once (:meth:`SynthConfig.validate`), so a bad value fails before anything is
  written, naming the field.
- Rates of planted data problems are per eligible entry (or per statement file); with
  ``anomalies`` on, every kind is planted at least ``min_planted`` times so that even a tiny
  consortium carries each problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from flowbureau.errors import InputError


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """Finer generator settings (defaults give a realistic SME consortium)."""

    activity: float = 1.0
    """Multiplies the number of transactions per enterprise (not their amounts)."""
    usd_share: float = 0.3
    """Share of manufacturers and wholesalers (exporters) that also hold a USD account."""
    group_share: float = 0.25
    """Share of enterprises that belong to a related group (common controller)."""
    loan_share: float = 0.4
    """Share of enterprises with a working-capital loan facility at their main bank."""
    shock_rate: float = 0.003
    """Planted idiosyncratic shocks per enterprise-month."""
    default_intercept: float = -6.7
    """Logit of the monthly default probability at health 0."""
    default_slope: float = 2.1
    """Decrease of that logit per unit of health."""
    typo_rate: float = 0.0004
    """Amount typos (x10 / x100) per entry."""
    date_shift_rate: float = 0.0004
    """Booking dates written a few days off, per entry."""
    missing_rate: float = 0.0004
    """Blank counterparty / balance / date, each per eligible entry."""
    duplicate_file_rate: float = 0.01
    """Statement files exported twice under another name."""
    overlap_rate: float = 0.01
    """Monthly statements re-exported to cover the second half of the previous month too."""
    outlier_rate: float = 0.0002
    """Rare huge real amounts, per entry."""
    circular_rate: float = 0.004
    """Circular fund flows A->B->C->A started per enterprise-year."""
    burst_rate: float = 0.004
    """Round-amount bursts per enterprise-year."""
    min_planted: int = 2
    """Lower bound on the count of each planted problem kind (when anomalies are on)."""

    def validate(self) -> None:
        """Raise :class:`~flowbureau.errors.InputError` naming the first out-of-range field."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "min_planted":
                ok = isinstance(value, int) and 0 <= value <= 1000
            elif f.name == "default_intercept":
                ok = -20.0 <= value <= 0.0
            elif f.name in ("activity", "default_slope"):
                ok = 0.0 < value <= 50.0
            else:
                ok = 0.0 <= value <= 1.0
            if not ok:
                raise InputError(f"value {value!r} is out of range", field=f.name)


@dataclass(frozen=True, slots=True)
class BankFormat:
    """How one bank of the consortium exports statements."""

    bank_id: str
    name: str
    format: str
    """``mt940``, ``camt053.001.02``, ``camt053.001.08`` or ``csv``."""
    profile: str | None = None
    """The CSV profile name (CSV banks only)."""
    encoding: str | None = None
    """The encoding the CSV files are written in (CSV banks only)."""
    summary_row: bool = False
    """Whether CSV exports end with a 合计 summary row."""
    preamble_style: str | None = None
    """How CSV exports print the account facts above the header: ``colon`` (``账号:...``),
    ``fullwidth`` (``账号：...``) or ``cells`` (``账号`` and the value in adjacent cells)."""

    @property
    def spec(self) -> str:
        """The ``formats`` spelling that reproduces this assignment."""
        if self.format != "csv":
            return self.format
        return f"csv:{self.profile}" + (f"@{self.encoding}" if self.encoding else "")


@dataclass(frozen=True, slots=True)
class SynthSummary:
    """What :func:`flowbureau.synth.generate` wrote."""

    out: Path
    seed: int
    enterprises: int
    months: int
    banks: tuple[BankFormat, ...]
    accounts: int
    entries: int
    payments: int
    statement_files: int
    defaults: int
    planted: dict[str, int] = field(default_factory=dict)

    @property
    def manifest(self) -> Path:
        """``manifest.json``."""
        return self.out / "manifest.json"

    @property
    def banks_dir(self) -> Path:
        """``banks/``: the only inputs of the ingest pipeline."""
        return self.out / "banks"

    @property
    def registry_dir(self) -> Path:
        """``registry/``: the public business registry."""
        return self.out / "registry"

    @property
    def public_records_dir(self) -> Path:
        """``public_records/``: penalties, inspections, online lending, judgments, macro."""
        return self.out / "public_records"

    @property
    def ground_truth_dir(self) -> Path:
        """``ground_truth/``: never read by the pipeline."""
        return self.out / "ground_truth"
