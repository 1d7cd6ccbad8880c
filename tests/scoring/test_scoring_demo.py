"""The demo's scoring steps on a consortium laid out like ``flowbureau synth`` writes it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scoring_data import contribute, planted_consortium

from flowbureau.config import get_settings
from flowbureau.scoring.demo import train_and_score_synthetic
from flowbureau.scoring.history import latest_evaluation
from flowbureau.storage.database import (
    make_engine,
    session_factory,
    session_scope,
    upgrade_database,
)
from flowbureau.storage.warehouse import Warehouse


@pytest.mark.slow
def test_train_and_score_a_synthetic_consortium(tmp_path: Path) -> None:
    consortium = planted_consortium(50, seed=4)
    contribute(Warehouse.default(), consortium.rows)
    root = tmp_path / "consortium"
    (root / "ground_truth").mkdir(parents=True)
    (root / "public_records").mkdir()
    (root / "registry").mkdir()
    (root / "manifest.json").write_text(
        json.dumps({"parameters": {"start": "2023-01-01", "months": 24}}), encoding="utf-8"
    )
    pq.write_table(
        pa.table(
            {
                "enterprise_id": consortium.enterprises,
                "default_date": pa.array(
                    [consortium.defaults.get(c) for c in consortium.enterprises], pa.date32()
                ),
            }
        ),
        root / "ground_truth" / "enterprises.parquet",
    )
    (root / "registry" / "enterprises.csv").write_text(
        "credit_code,division\n" + "".join(f"{c},13\n" for c in consortium.enterprises),
        encoding="utf-8",
    )
    settings = get_settings()
    upgrade_database(settings.resolved_database_url)
    result = train_and_score_synthetic(root)
    assert result["training"]["cohorts"] == ["2024-01-01"]
    assert result["training"]["bads"] > 5
    assert result["run"]["as_of"] == "2025-01-01"
    assert result["run"]["evaluated"] == 50
    assert (settings.data_dir / "external" / "enterprises.csv").is_file()
    engine = make_engine(settings.resolved_database_url)
    with session_scope(session_factory(engine)) as db:
        stored = latest_evaluation(db, consortium.enterprises[0])
        assert stored is not None
        assert stored.as_of == date(2025, 1, 1)
    engine.dispose()
