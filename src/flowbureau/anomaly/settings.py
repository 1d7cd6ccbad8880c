"""Settings of anomaly detection and correction (``FLOWBUREAU_ANOMALY__*``), a
:mod:`flowbureau.config` group.

Rules:
- ``confidence`` is the bar a proposed correction must reach to be applied (a rule's proof or
  the model's type probability); below it an entry is flagged, never corrected.
- ``threshold`` is the anomaly score from which the model flags an entry.
- This module imports pydantic only: :mod:`flowbureau.config` imports it at start-up.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

__all__ = ["AnomalySettings"]


class AnomalySettings(BaseModel):
    """Where anomaly models and records live and the two decision thresholds."""

    models_dir: Path | None = Field(
        default=None,
        description="Versioned anomaly model artefacts (default data_dir/models/anomaly).",
    )
    store_dir: Path | None = Field(
        default=None,
        description="Correction and label logs and run snapshots (default data_dir/anomaly).",
    )
    confidence: float = Field(
        default=0.99,
        gt=0.0,
        le=1.0,
        description="Minimum confidence for a proposed correction to be applied.",
    )
    threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="Anomaly score from which an entry is flagged."
    )
    duplicate_rate: float = Field(
        default=0.003,
        ge=0.0,
        le=0.05,
        description="Share of entries copied as planted duplicate postings when training on a "
        "synthetic ground truth (ingest removes exact copies, so none are stored).",
    )
