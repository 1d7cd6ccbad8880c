"""Settings of credit evaluation (``FLOWBUREAU_SCORING__*``), a :mod:`flowbureau.config` group.

Rules:
- Defaults suit the synthetic consortium and a laptop; an operator sets them per deployment,
  e.g. ``FLOWBUREAU_SCORING__PD_JUMP_ALERT=0.03``.
- This module imports pydantic only: :mod:`flowbureau.config` imports it at start-up.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

__all__ = ["ScoringSettings"]


class ScoringSettings(BaseModel):
    """Where models and external data live, the label horizon and the alert thresholds."""

    model_name: str = Field(
        default="credit", description="Name of the credit model in the artefact store."
    )
    models_dir: Path | None = Field(
        default=None, description="Artefact store of trained models (default data_dir/models)."
    )
    external_dir: Path | None = Field(
        default=None,
        description="Directory of external data files (public records, macro series, registry; "
        "default data_dir/external). See docs/scoring.md for the formats.",
    )
    horizon_months: int = Field(
        default=12, ge=1, le=60, description="A default within this many months is 'bad'."
    )
    currency: str = Field(
        default="CNY",
        min_length=3,
        max_length=3,
        description="Currency of the cash-flow features; entries in other currencies are only "
        "counted (no FX conversion is invented).",
    )
    pd_jump_alert: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="An alert is raised when a re-score raises the PD by at least this much "
        "(absolute), or lowers the grade.",
    )
    similar_cases: int = Field(
        default=5, ge=0, le=50, description="Similar historical cases shown per evaluation."
    )
