"""Shared test fixtures and marker handling.

- Every test runs with ``FLOWBUREAU_ENV=test`` and its own ``FLOWBUREAU_DATA_DIR`` (tmp_path),
  so nothing leaks between tests or into the working tree.
- ``postgres`` tests get a fresh schema on the server at 127.0.0.1:5432 (database ``test``);
  they skip, saying why, only when no server answers.
- ``spark`` / ``browser`` / ``gpu`` tests skip with a reason when their engine is absent.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowbureau.config import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get(
    "FLOWBUREAU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _find_statement_fixtures() -> Path | None:
    candidates = [
        os.environ.get("FLOWBUREAU_STATEMENT_FIXTURES"),
        REPO_ROOT.parent / "shared" / "fixtures" / "statements",
        Path("/work/shared/fixtures/statements"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate, "mt940").is_dir():
            return Path(candidate)
    return None


STATEMENT_FIXTURES = _find_statement_fixtures()


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("FLOWBUREAU_ENV", "test")
    monkeypatch.setenv("FLOWBUREAU_DATA_DIR", str(tmp_path / "flowbureau-data"))
    for name in list(os.environ):
        if name.startswith("FLOWBUREAU_") and name not in {
            "FLOWBUREAU_ENV",
            "FLOWBUREAU_DATA_DIR",
            "FLOWBUREAU_STATEMENT_FIXTURES",
            "FLOWBUREAU_TEST_POSTGRES_URL",
        }:
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def statement_fixtures() -> Path:
    """The shared real-world statement samples (``../shared/fixtures/statements``)."""
    if STATEMENT_FIXTURES is None:
        pytest.skip(
            "shared statement fixtures not found: set FLOWBUREAU_STATEMENT_FIXTURES or place "
            "them at ../shared/fixtures/statements"
        )
    return STATEMENT_FIXTURES


def _postgres_error() -> str | None:
    try:
        import psycopg

        dsn = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means: no usable server here
        return f"{type(exc).__name__}: {exc}".strip()
    return None


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of the PostgreSQL test database; skips with the connection error if none answers."""
    error = _postgres_error()
    if error is not None:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_URL}: {error}")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test, dropped afterwards."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(postgres_server_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_server_url else "?"
    yield f"{postgres_server_url}{separator}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip marked tests whose engine is missing, saying exactly what is missing."""
    reasons = {
        "spark": None
        if importlib.util.find_spec("pyspark") and shutil.which("java")
        else "pyspark (the spark extra) or java is not installed",
        "browser": None
        if shutil.which("chromium") or Path("/usr/bin/chromium").exists()
        else "Debian chromium is not installed (apt-get install chromium)",
        "gpu": None if _cuda_available() else "no CUDA device",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
