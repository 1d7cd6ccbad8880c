"""Identity tests reuse the service test helpers (an app on a fresh database, a clock)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from collections.abc import Iterator

import pytest
from service_helpers import CODE_A, CODE_B, Api, build_api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """The service with its default providers (no credit model)."""
    yield from build_api(tmp_path)


@pytest.fixture
def scored_api(tmp_path: Path) -> Iterator[Api]:
    """The service with stub scores for CODE_A and CODE_B (evaluations succeed)."""
    yield from build_api(tmp_path, scored={CODE_A, CODE_B})
