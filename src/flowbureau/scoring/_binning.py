"""Monotonic WoE binning of one feature (optbinning) compiled into plain arrays.

Rules:
- Numerical features: regular bins are ``(-inf, e0), [e0, e1), ..., [ek, inf)`` (left-closed,
  as optbinning's ``np.digitize(right=False)``); a value on an edge belongs to the bin on its
  right. Values listed in ``special_codes`` go to the *special* bin, NaN/None to *missing*.
- Categorical features are compared as text (``str(value)``); each regular bin is a set of
  categories seen in training. A category never seen in training goes to *unknown*.
- Every feature therefore has ``n_regular + 3`` slots: the regular bins, then special,
  missing and unknown. WoE per slot is optbinning's ``ln(%non-event / %event)`` (higher =
  safer); a slot with no events or no non-events, and *unknown*, gets WoE 0 (the population
  average), again as optbinning does.
- ``trend`` is +1 when the event (bad) rate rises with the value, -1 when it falls, 0 when the
  feature has a single regular bin or is categorical.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from flowbureau.errors import ModelError

Kind = Literal["numerical", "categorical"]

SPECIAL, MISSING, UNKNOWN = "Special", "Missing", "Unknown"


class _HighsImportNoise(logging.Filter):
    """Drops CVXPY's one warning that its optional HiGHS binding fails to import.

    optbinning imports CVXPY, which logs that warning when the installed ``highspy`` wheel does
    not match CVXPY's expectations; optbinning's own solvers (OR-Tools) do not use HiGHS.
    Every other CVXPY message still gets through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith("Encountered unexpected exception importing solver HIGHS")


def import_optbinning() -> ModuleType:
    """Import optbinning with the CVXPY HiGHS-import warning filtered (nothing else)."""
    cvxpy_logger = logging.getLogger("__cvxpy__")
    if not any(isinstance(f, _HighsImportNoise) for f in cvxpy_logger.filters):
        cvxpy_logger.addFilter(_HighsImportNoise())
    import optbinning

    module: ModuleType = optbinning
    return module


@dataclass(frozen=True, slots=True)
class ItemBins:
    """One feature's bins: edges or category groups, labels, counts and WoE per slot."""

    feature: str
    kind: Kind
    edges: tuple[float, ...]
    groups: tuple[tuple[str, ...], ...]
    labels: tuple[str, ...]
    count: tuple[int, ...]
    event: tuple[int, ...]
    woe: tuple[float, ...]
    iv: float
    special_codes: tuple[float, ...]

    @property
    def n_regular(self) -> int:
        """Number of regular (non special/missing/unknown) bins."""
        return len(self.labels) - 3

    @property
    def special_slot(self) -> int:
        """Slot index of the special bin."""
        return self.n_regular

    @property
    def missing_slot(self) -> int:
        """Slot index of the missing bin."""
        return self.n_regular + 1

    @property
    def unknown_slot(self) -> int:
        """Slot index of the unknown-category bin."""
        return self.n_regular + 2

    @property
    def trend(self) -> int:
        """+1 if the bad rate rises with the value, -1 if it falls, 0 otherwise."""
        if self.kind != "numerical" or self.n_regular < 2:
            return 0
        rates = [e / c for e, c in zip(self.event, self.count, strict=True) if c > 0]
        rates = rates[: self.n_regular]
        if len(rates) < 2 or rates[0] == rates[-1]:
            return 0
        return 1 if rates[-1] > rates[0] else -1

    def category_slots(self) -> dict[str, int]:
        """Category -> regular slot (categorical features)."""
        return {cat: i for i, group in enumerate(self.groups) for cat in group}

    def slots(self, values: pd.Series) -> npt.NDArray[np.intp]:
        """Slot index of every value (vectorised)."""
        missing = values.isna().to_numpy()
        if self.kind == "numerical":
            x = values.to_numpy(dtype=np.float64, na_value=np.nan)
            out = np.searchsorted(np.asarray(self.edges), x, side="right").astype(np.intp)
            if self.special_codes:
                out[np.isin(x, np.asarray(self.special_codes))] = self.special_slot
        else:
            lookup = self.category_slots()
            unknown = self.unknown_slot
            out = np.fromiter(
                (lookup.get(str(v), unknown) for v in values.astype(object)),
                dtype=np.intp,
                count=len(values),
            )
        out[missing] = self.missing_slot
        return out


def fit_item(
    feature: str,
    values: pd.Series,
    y: npt.NDArray[np.int_],
    *,
    kind: Kind,
    monotonic_trend: str,
    max_n_bins: int | None,
    min_bin_size: float,
    special_codes: Sequence[float],
) -> ItemBins:
    """Fit optbinning's OptimalBinning on one feature and compile the result."""
    optbinning = import_optbinning()
    specials = list(special_codes) if kind == "numerical" and special_codes else None
    if kind == "numerical":
        x = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        x = np.asarray(
            [None if pd.isna(v) else str(v) for v in values.astype(object)], dtype=object
        )
    binning = optbinning.OptimalBinning(
        name=feature,
        dtype=kind,
        monotonic_trend=monotonic_trend,
        max_n_bins=max_n_bins,
        min_bin_size=min_bin_size,
        special_codes=specials,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        # optbinning's trend detection divides by zero on degenerate (constant) features
        binning.fit(x, y)
    table = binning.binning_table.build(add_totals=False)
    n_regular = len(table) - 2  # optbinning appends Special and Missing rows
    count = [int(c) for c in table["Count"]]
    event = [int(c) for c in table["Event"]]
    woe = [float(w) for w in table["WoE"]]
    if kind == "numerical":
        edges = tuple(float(e) for e in binning.splits)
        groups: tuple[tuple[str, ...], ...] = ()
        bounds = [-np.inf, *edges, np.inf]
        labels = [_interval_label(bounds[i], bounds[i + 1]) for i in range(n_regular)]
    else:
        edges = ()
        groups = tuple(tuple(str(c) for c in group) for group in binning.splits)
        labels = [", ".join(group) for group in groups]
    if len(labels) != n_regular:
        raise ModelError(f"optbinning's binning table of {feature!r} has unexpected rows")
    return ItemBins(
        feature=feature,
        kind=kind,
        edges=edges,
        groups=groups,
        labels=(*labels, SPECIAL, MISSING, UNKNOWN),
        count=(*count, 0),
        event=(*event, 0),
        woe=(*woe, 0.0),
        iv=float(binning.binning_table.iv),
        special_codes=tuple(float(c) for c in specials or ()),
    )


def _interval_label(low: float, high: float) -> str:
    def fmt(v: float) -> str:
        return "-inf" if v == -np.inf else "inf" if v == np.inf else f"{v:g}"

    return f"[{fmt(low)}, {fmt(high)})" if low != -np.inf else f"(-inf, {fmt(high)})"
