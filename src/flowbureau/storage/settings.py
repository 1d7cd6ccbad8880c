"""Settings of the warehouse (``FLOWBUREAU_WAREHOUSE__*``), a :mod:`flowbureau.config` group.

Rules:
- Defaults suit a laptop; operators tune them per deployment, e.g.
  ``FLOWBUREAU_WAREHOUSE__MEMORY_LIMIT=8GB``.
- This module imports pydantic only: :mod:`flowbureau.config` imports it at start-up.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["WarehouseSettings"]


class WarehouseSettings(BaseModel):
    """Resources and timeouts of the Parquet + DuckDB warehouse."""

    memory_limit: str = Field(
        default="3GB",
        description="DuckDB memory limit per connection; larger work spills to warehouse/tmp.",
    )
    threads: int | None = Field(
        default=None, ge=1, description="DuckDB threads per connection (default: all cores)."
    )
    lock_timeout_seconds: float = Field(
        default=600.0,
        ge=0,
        description="How long a writer waits for another writer (ingest, annotation) to finish.",
    )
    retire_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="Files replaced by a newer commit are deleted only after this long, so that "
        "readers holding an older snapshot can finish their queries.",
    )
