"""Fixtures for warehouse tests: the warehouse and data directory of each test."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbureau.config import get_settings
from flowbureau.storage.warehouse import Warehouse


@pytest.fixture
def warehouse() -> Warehouse:
    """The (empty) warehouse of this test's data directory."""
    return Warehouse.default()


@pytest.fixture
def data_dir() -> Path:
    """This test's data directory."""
    return get_settings().data_dir
