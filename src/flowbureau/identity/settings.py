"""Settings of identity resolution and freshness (``FLOWBUREAU_IDENTITY__*``).

Rules:
- A candidate record whose attribution probability is at least ``attach_threshold`` is attached
  to the enterprise; from ``candidate_threshold`` up to it, it is shown to the enterprise as a
  possible match to confirm or reject; below, it is dropped.
- ``policy_path`` replaces the shipped freshness policy (``flowbureau/identity/freshness.toml``).
- This module imports pydantic only: :mod:`flowbureau.config` imports it at start-up.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator

__all__ = ["IdentitySettings"]


class IdentitySettings(BaseModel):
    """Attribution thresholds, the freshness policy file and where the model is kept."""

    attach_threshold: float = Field(
        default=0.95,
        gt=0,
        lt=1,
        description="Attribution probability from which a record is attached to the enterprise.",
    )
    candidate_threshold: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Attribution probability from which a record is offered for confirmation.",
    )
    policy_path: Path | None = Field(
        default=None, description="Freshness policy TOML (default: the shipped policy)."
    )
    models_dir: Path | None = Field(
        default=None,
        description="Where trained identity models are kept (default data_dir/identity).",
    )
    max_candidates: int = Field(
        default=200, ge=1, le=5000, description="Most candidate records scored for one entry."
    )

    @model_validator(mode="after")
    def _ordered(self) -> IdentitySettings:
        if self.candidate_threshold > self.attach_threshold:
            raise ValueError("candidate_threshold must not exceed attach_threshold")
        return self
