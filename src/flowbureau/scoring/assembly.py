"""Feature assembly: cash-flow features plus every other source, joined as of one date.

Rules:
- A **feature source** (:class:`FeatureSource`) computes, as of ``D``, a frame indexed by
  ``enterprise_id`` with its own columns. The cash-flow source defines the population (every
  enterprise with entries before ``D``); every other source is left-joined onto it, so a
  source never adds or removes an enterprise.
- Every feature is a number: the assembled frame is float64 (money in minor units is exact in
  a double up to 2^53), so a model never mistakes a wide integer for a category.
- A source may declare ``zero_fill`` columns: counts over records that cover every enterprise
  (public records), where "no row" means 0, not "unknown". All other gaps stay NaN and land in
  the models' Missing bin.
- Sources are plug-ins. Built in: ``cashflow`` (:mod:`flowbureau.scoring.features`),
  ``public_records``, ``industry`` and ``macro`` (:mod:`flowbureau.scoring.external`), and
  ``graph`` when :mod:`flowbureau.graph` offers ``graph_features(as_of) -> DataFrame indexed by
  enterprise_id`` (its columns are prefixed ``graph_`` unless they already are). Anything else
  with ``graph_features``'s shape plugs in through :class:`FrameSource`.
- The assembly records, per enterprise, which sources contributed (:attr:`FeatureSet.coverage`):
  a source covers an enterprise when it returned a row for it, or when it has complete
  coverage (its records describe every enterprise).
- A built-in source says which columns it ``provides``, so that scoring computes only the
  sources (and cash-flow stages) the model uses; plug-ins are always computed.
- Relations a source needs (external record tables) are registered on the engine it is given
  and dropped afterwards; the SQL itself comes from the feature modules.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from flowbureau.errors import InputError, NotFoundError
from flowbureau.scoring.external import (
    EXTERNAL_FEATURES,
    INDUSTRY_FEATURES,
    RECORD_FILES,
    ZERO_IF_ABSENT_EXTERNAL,
    ExternalData,
    industry_sql,
    macro_features,
    public_records_sql,
)
from flowbureau.scoring.features import FEATURE_NAMES, FEATURES, SUMMARY_COLUMNS, cashflow_sql
from flowbureau.storage.engine import Engine

__all__ = [
    "CashflowSource",
    "FeatureSet",
    "FeatureSource",
    "FrameSource",
    "IndustrySource",
    "MacroSource",
    "PublicRecordsSource",
    "SourceFrame",
    "assemble_features",
    "default_sources",
    "graph_source",
]


@dataclass(frozen=True)
class SourceFrame:
    """What a source returns: its columns per enterprise, and how to read a missing row."""

    frame: pd.DataFrame
    zero_fill: frozenset[str] = frozenset()
    complete: bool = False
    """True when the source describes every enterprise (no row = nothing to report)."""


class FeatureSource(Protocol):
    """A plug-in computing features as of a date (see the module rules)."""

    name: str

    def compute(
        self, engine: Engine, as_of: date, enterprises: Sequence[str] | None
    ) -> SourceFrame:
        """Features as of ``as_of`` for ``enterprises`` (``None``: all it knows)."""
        ...


def _frame(table: pa.Table, columns: Sequence[str] | None = None) -> pd.DataFrame:
    frame: pd.DataFrame = table.to_pandas()
    frame = frame.set_index("enterprise_id")
    if columns is not None:
        frame = frame.reindex(columns=list(columns))
    return frame


@dataclass
class CashflowSource:
    """Cash-flow features and the data summary (:mod:`flowbureau.scoring.features`)."""

    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    features: tuple[str, ...] | None = None
    """Only these features (``None``: all); the query leaves out what they do not need."""
    name: str = "cashflow"

    def provides(self, column: str) -> bool:
        """Whether ``column`` is one of this source's features."""
        return column in FEATURE_NAMES

    def compute(
        self, engine: Engine, as_of: date, enterprises: Sequence[str] | None
    ) -> SourceFrame:
        """Run :func:`~flowbureau.scoring.features.cashflow_sql` on ``engine``."""
        sql = cashflow_sql(
            as_of,
            timezone=self.timezone,
            currency=self.currency,
            enterprises=enterprises,
            features=self.features,
        )
        frame = _frame(engine.query(sql))
        zero = frozenset(f.name for f in FEATURES if f.zero_if_absent)
        return SourceFrame(frame, zero)


@dataclass
class PublicRecordsSource:
    """Penalties, inspections, judgments and online loans (the kinds whose files exist)."""

    external: ExternalData
    name: str = "public_records"

    def provides(self, column: str) -> bool:
        """Whether ``column`` is a feature of a loaded record kind."""
        return any(f.name == column and f.kind in self.kinds for f in EXTERNAL_FEATURES)

    @property
    def kinds(self) -> list[str]:
        """Record kinds with both a loaded file and features."""
        with_features = {f.kind for f in EXTERNAL_FEATURES}
        return sorted(k for k in self.external.records if k in with_features)

    def compute(
        self, engine: Engine, as_of: date, enterprises: Sequence[str] | None
    ) -> SourceFrame:
        """Register the record tables, run the feature query, drop the tables."""
        kinds = self.kinds
        sql = public_records_sql(as_of, kinds, enterprises=enterprises)
        columns = [f.name for f in EXTERNAL_FEATURES if f.kind in kinds]
        if sql is None:
            return SourceFrame(
                pd.DataFrame(columns=columns, index=pd.Index([], name="enterprise_id"))
            )
        with _registered(
            engine, {RECORD_FILES[k].relation: self.external.records[k] for k in kinds}
        ):
            frame = _frame(engine.query(sql), columns)
        return SourceFrame(frame, ZERO_IF_ABSENT_EXTERNAL & set(columns), complete=True)


@dataclass
class IndustrySource:
    """The industry trend of each enterprise's division (needs the registry file)."""

    external: ExternalData
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    name: str = "industry"

    def provides(self, column: str) -> bool:
        """Whether ``column`` is an industry feature."""
        return column in INDUSTRY_FEATURES

    def compute(
        self, engine: Engine, as_of: date, enterprises: Sequence[str] | None
    ) -> SourceFrame:
        """Register the registry, run the industry query over all transactions, drop it."""
        registry = self.external.registry
        if registry is None:
            raise InputError("the industry source needs the registry (enterprises.csv)")
        sql = industry_sql(
            as_of, timezone=self.timezone, currency=self.currency, enterprises=enterprises
        )
        with _registered(engine, {RECORD_FILES["registry"].relation: registry}):
            frame = _frame(engine.query(sql), INDUSTRY_FEATURES)
        return SourceFrame(frame)


@dataclass
class MacroSource:
    """Macro series: the same values for every enterprise as of a date."""

    external: ExternalData
    name: str = "macro"

    def provides(self, column: str) -> bool:
        """Whether ``column`` is a macro feature (``macro_<series>[_chg_12m]``)."""
        return column.startswith("macro_")

    def compute(
        self, engine: Engine, as_of: date, enterprises: Sequence[str] | None
    ) -> SourceFrame:
        """One row of macro features; the assembly broadcasts it (complete coverage)."""
        if self.external.macro is None:
            raise InputError("the macro source has no series")
        values = macro_features(self.external.macro, as_of)
        frame = pd.DataFrame([values], index=pd.Index(["*"], name="enterprise_id"))
        return SourceFrame(frame.astype("float64"), complete=True)


@dataclass
class FrameSource:
    """Any ``function(as_of) -> DataFrame indexed by enterprise_id`` (e.g. graph features).

    Columns are prefixed with ``prefix`` unless they already start with it. A function that
    raises :class:`~flowbureau.errors.NotFoundError` (nothing built yet) contributes nothing.
    """

    name: str
    function: Callable[[date], pd.DataFrame]
    prefix: str = ""

    def compute(
        self, engine: Engine, as_of: date, enterprises: Sequence[str] | None
    ) -> SourceFrame:
        """Call the function and keep the numeric columns of the requested enterprises."""
        try:
            frame = self.function(as_of)
        except NotFoundError:
            return SourceFrame(pd.DataFrame(index=pd.Index([], name="enterprise_id")))
        if not isinstance(frame, pd.DataFrame):
            raise InputError(
                f"source {self.name!r} returned {type(frame).__name__}, not a DataFrame"
            )
        frame = frame.copy()
        frame.index = frame.index.astype(str).rename("enterprise_id")
        if frame.index.has_duplicates:
            raise InputError(f"source {self.name!r} returned an enterprise twice")
        frame = frame.rename(
            columns=lambda c: str(c) if str(c).startswith(self.prefix) else f"{self.prefix}{c}"
        )
        frame = frame.select_dtypes(include=["number", "bool"]).astype("float64")
        if enterprises is not None:
            frame = frame[frame.index.isin(list(enterprises))]
        return SourceFrame(frame)


def graph_source() -> FrameSource | None:
    """The graph plug-in when :mod:`flowbureau.graph` offers ``graph_features``, else None."""
    if importlib.util.find_spec("flowbureau.graph") is None:
        return None
    module = importlib.import_module("flowbureau.graph")
    function = getattr(module, "graph_features", None)
    if not callable(function):
        return None
    return FrameSource("graph", function, prefix="graph_")


def default_sources(
    external: ExternalData | None,
    *,
    timezone: str = "Asia/Shanghai",
    currency: str = "CNY",
    graph: bool = True,
) -> list[FeatureSource]:
    """Cash flow, then whatever ``external`` supports, then graph features when available."""
    sources: list[FeatureSource] = [CashflowSource(timezone, currency)]
    if external is not None:
        if PublicRecordsSource(external).kinds:
            sources.append(PublicRecordsSource(external))
        if external.registry is not None:
            sources.append(IndustrySource(external, timezone, currency))
        if external.macro is not None:
            sources.append(MacroSource(external))
    if graph:
        plugged = graph_source()
        if plugged is not None:
            sources.append(plugged)
    return sources


@dataclass
class FeatureSet:
    """Features of a population as of one date, with the data summary and source coverage."""

    as_of: date
    features: pd.DataFrame
    """One row per enterprise (index ``enterprise_id``), one column per feature."""
    summary: pd.DataFrame
    """The data used per enterprise (:data:`~flowbureau.scoring.features.SUMMARY_COLUMNS`)."""
    coverage: pd.DataFrame
    """Boolean per enterprise and source: did the source contribute?"""
    sources: list[str] = field(default_factory=list)

    def sources_of(self, enterprise_id: str) -> list[str]:
        """Names of the sources that contributed to ``enterprise_id``'s features."""
        row = self.coverage.loc[enterprise_id]
        return [name for name in self.coverage.columns if bool(row[name])]


def assemble_features(
    engine: Engine,
    as_of: date,
    sources: Sequence[FeatureSource],
    *,
    enterprises: Sequence[str] | None = None,
) -> FeatureSet:
    """Compute every source as of ``as_of`` and join them onto the cash-flow population.

    The first source must be the cash-flow source (it defines the population).
    """
    if not sources or not isinstance(sources[0], CashflowSource):
        raise InputError("the first feature source must be the cash-flow source", field="sources")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise InputError(f"feature sources repeat a name: {names}", field="sources")
    base = sources[0].compute(engine, as_of, enterprises)
    population = base.frame.index
    summary = base.frame.reindex(columns=list(SUMMARY_COLUMNS))
    parts = [base.frame.drop(columns=list(SUMMARY_COLUMNS))]
    coverage = pd.DataFrame({sources[0].name: True}, index=population)
    for source in sources[1:]:
        result = source.compute(engine, as_of, enterprises)
        frame = result.frame
        if list(frame.index) == ["*"]:
            joined = pd.DataFrame(
                np.repeat(frame.to_numpy(), len(population), axis=0),
                index=population,
                columns=frame.columns,
            )
        else:
            joined = frame.reindex(population)
        clash = set(joined.columns) & set().union(*(set(p.columns) for p in parts))
        if clash:
            raise InputError(
                f"source {source.name!r} repeats feature(s) {sorted(clash)}", field="sources"
            )
        for column in result.zero_fill & set(joined.columns):
            joined[column] = joined[column].fillna(0)
        parts.append(joined)
        coverage[source.name] = True if result.complete else population.isin(frame.index)
    features = pd.concat(parts, axis=1)
    for column in features.columns:
        if column in base.zero_fill:
            features[column] = features[column].fillna(0)
    try:
        features = features.astype("float64")
    except (TypeError, ValueError) as exc:
        raise InputError(f"a feature source returned a non-numeric column: {exc}") from exc
    return FeatureSet(as_of, features, summary, coverage, names)


@contextmanager
def _registered(engine: Engine, tables: Mapping[str, pa.Table]) -> Iterator[None]:
    """Register Arrow tables on ``engine`` for the block's duration."""
    for name, table in tables.items():
        engine.register(name, table)
    try:
        yield
    finally:
        for name in tables:
            engine.unregister(name)
