"""Reason codes: why a record scored as it did, in points, most costly first.

Rules:
- A reason names one feature, the record's value, the bin (or ``""`` when the model has no
  bins), the points the item earned and the points it cost (``points_lost`` > 0).
- Scorecard: ``points_lost`` = the item's best attainable points (over the bins that held
  training records) minus the points earned.
- Challenger: ``points_lost`` = the feature's SHAP contribution towards *bad*, in score
  points (log-odds times the scaling factor); ``points`` is its negative.
- Only items that cost points are reasons; at most ``k`` per record, largest loss first, ties
  broken by feature order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason code: a feature, its value, its bin and the points it cost."""

    feature: str
    value: Any
    bin: str
    points: float
    points_lost: float
    description: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (missing values become ``None``)."""
        return {
            "feature": self.feature,
            "value": json_safe(self.value),
            "bin": self.bin,
            "points": self.points,
            "points_lost": self.points_lost,
            "description": self.description,
        }


def json_safe(value: Any) -> Any:
    """A scalar as a JSON-safe Python value (NaN/NA -> None, numpy -> builtin)."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, bool | int | float | str):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)
