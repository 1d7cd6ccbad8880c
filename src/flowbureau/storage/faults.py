"""Deterministic pause points for crash tests of the warehouse commit protocol.

Rules:
- :func:`pause_point` does nothing unless ``FLOWBUREAU_ENV=test`` *and*
  ``FLOWBUREAU_FAULT_PAUSE`` names the stage being passed; production can never pause.
- When both hold, the process writes a marker file (``FLOWBUREAU_FAULT_MARKER``, default
  ``<data_dir>/fault-<stage>``) and sleeps until it is killed, so a test can ``SIGKILL`` it at
  exactly that point and check what a crash there leaves behind.
- Stages are listed in :data:`STAGES`; the commit protocol in :mod:`.warehouse` documents where
  each sits.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flowbureau.config import get_settings

__all__ = ["STAGES", "pause_point"]

STAGES = (
    "batch_staged",  # a batch's Parquet files written under staging/, no journal yet
    "batch_journaled",  # journal written, files not yet moved into data/
    "batch_moved",  # files moved into data/, run not yet published
    "before_publish",  # every batch of the run moved, links/outliers staged, manifest untouched
    "published",  # manifest replaced, journals not yet cleared
)
"""The points of the commit protocol a crash test can stop at, in order."""


def pause_point(stage: str) -> None:
    """Stop here forever when a crash test asked for ``stage`` (test environment only)."""
    if os.environ.get("FLOWBUREAU_FAULT_PAUSE") != stage:
        return
    settings = get_settings()
    if settings.env != "test":
        return
    marker = Path(os.environ.get("FLOWBUREAU_FAULT_MARKER") or settings.data_dir / f"fault-{stage}")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()), "utf-8")
    while True:  # killed by the test
        time.sleep(1)
