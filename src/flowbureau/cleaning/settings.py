"""Settings of the ingest pipeline and its cleaning steps (``FLOWBUREAU_INGEST__*``).

Rules:
- Defaults are the documented behaviour of docs/pipeline.md; changing one changes results only
  for records ingested afterwards (stored records are immutable).
- This module imports pydantic only: :mod:`flowbureau.config` imports it at start-up.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["IngestSettings"]


class IngestSettings(BaseModel):
    """Chunking, payment-link window and outlier thresholds of ``flowbureau ingest``."""

    chunk_rows: int = Field(
        default=1_000_000,
        ge=1,
        description="A batch is committed once it holds at least this many entries; memory is "
        "bounded by one batch plus the largest single file.",
    )
    read_workers: int | None = Field(
        default=None,
        ge=1,
        description="Processes parsing statement files in parallel (default: one per core but "
        "one, which cleans and stores; 1 reads in the ingesting process).",
    )
    link_window_days: int = Field(
        default=3,
        ge=0,
        description="Largest gap in calendar days (in ``timezone``) between a payer's debit and "
        "the payee's credit of one payment.",
    )
    outlier_min_history: int = Field(
        default=12,
        ge=3,
        description="Entries an account needs in one direction and category before its "
        "outliers are flagged.",
    )
    outlier_threshold: float = Field(
        default=3.5,
        gt=0,
        description="Robust z-score (0.6745 * deviation / MAD of log-amounts) above which an "
        "entry is an outlier (Iglewicz & Hoaglin).",
    )
