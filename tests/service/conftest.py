"""Fixtures for the service tests (helpers in ``service_helpers``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from service_helpers import CODE_A, CODE_B, Api, build_api


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """The service with the database-only provider (no scores)."""
    yield from build_api(tmp_path)


@pytest.fixture
def scored_api(tmp_path: Path) -> Iterator[Api]:
    """The service with stub scores for CODE_A and CODE_B."""
    yield from build_api(tmp_path, scored={CODE_A, CODE_B})


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Build the service with other service settings (``make_api(otp_max_attempts=2)``)."""
    with ExitStack() as stack:

        def make(**service: Any) -> Api:
            built = build_api(tmp_path, **service)
            stack.callback(built.close)
            return next(built)

        yield make
