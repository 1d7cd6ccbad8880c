"""Fixtures for the statement-reader tests.

Every test here runs under a time limit: the readers must never hang, whatever the input,
and the inputs are small, so a test that takes long has found a bug.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the sample writers next to the tests

TIME_LIMIT_S = 60


@pytest.fixture(autouse=True)
def _time_limit() -> Iterator[None]:
    """Fail a test that runs longer than :data:`TIME_LIMIT_S` (a hang is a bug)."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"test ran longer than {TIME_LIMIT_S} s: a reader hangs")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TIME_LIMIT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
