"""Data for the anomaly tests.

- ``consortium``: a tiny synthetic consortium (12 enterprises, 3 months, 5 banks in their
  native formats, planted problems at raised rates) generated and ingested once per session.
- ``prepared``: its transactions pre-processed, featurised and labelled from the ground truth
  (with planted duplicate postings), once per session.
- ``tiny_model``: a small bidirectional detector (hidden 16, 8 epochs) fitted on ``prepared``
  once; ``causal_model``: a small forward-only one (the default direction; 2 epochs).
- ``data_dir``: a private copy of the consortium's data directory, made the current
  ``FLOWBUREAU_DATA_DIR`` for one test (so tests that write corrections never interfere).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from flowbureau.config import get_settings

RATES = {
    "typo_rate": 0.01,
    "date_shift_rate": 0.005,
    "outlier_rate": 0.003,
    "circular_rate": 0.5,
    "burst_rate": 0.5,
    "missing_rate": 0.004,
}


@dataclass(frozen=True)
class Consortium:
    """Where the generated consortium, its truth and its ingested data directory are."""

    root: Path
    truth: Path
    data_dir: Path


@pytest.fixture(scope="session")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Consortium:
    from flowbureau.ingestion import ingest
    from flowbureau.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("anomaly")
    summary = generate(
        root / "consortium", enterprises=12, months=3, seed=5, config=SynthConfig(**RATES)
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWBUREAU_ENV", "test")
        patch.setenv("FLOWBUREAU_DATA_DIR", str(root / "data"))
        patch.setenv("FLOWBUREAU_INGEST__READ_WORKERS", "1")
        get_settings.cache_clear()
        ingest([summary.banks_dir])
    get_settings.cache_clear()
    return Consortium(root / "consortium", summary.ground_truth_dir, root / "data")


@dataclass(frozen=True)
class Prepared:
    """The consortium as the model sees it."""

    raw: pd.DataFrame
    """As loaded, with planted duplicate postings, before pre-processing."""
    frame: pd.DataFrame
    features: pd.DataFrame
    labels: list[str | None]


@pytest.fixture(scope="session")
def prepared(consortium: Consortium) -> Prepared:
    from flowbureau.anomaly.evaluation import attach_truth, load_truth, plant_duplicates
    from flowbureau.anomaly.features import build_features
    from flowbureau.anomaly.preprocessing import load_transactions, preprocess
    from flowbureau.storage.warehouse import Warehouse

    with Warehouse(consortium.data_dir / "warehouse").connect() as engine:
        frame = load_transactions(engine)
    frame = plant_duplicates(frame, rate=0.01, seed=1)
    pre = preprocess(frame)
    features = build_features(pre.frame)
    labels = list(attach_truth(pre.frame, load_truth(consortium.truth))["label"])
    return Prepared(frame, pre.frame, features, labels)


TINY = {"hidden_size": 16, "epochs": 8, "batch_size": 8, "device": "cpu"}
"""Parameters of the small model the tests train (8 epochs: the anomaly score comes from the
type head, which 4 epochs of a hidden-16 model leave undertrained)."""


@pytest.fixture(scope="session")
def tiny_model(prepared: Prepared):  # type: ignore[no-untyped-def]
    """The small bidirectional model."""
    from flowbureau.anomaly.model import SequenceAnomalyDetector

    return SequenceAnomalyDetector(**TINY, direction="both", seed=3).fit(
        prepared.features, prepared.labels
    )


@pytest.fixture(scope="session")
def causal_model(prepared: Prepared):  # type: ignore[no-untyped-def]
    """A small causal (forward-only) model; 2 epochs: the tests using it check what a later
    entry can change, not what the model learnt."""
    from flowbureau.anomaly.model import SequenceAnomalyDetector

    return SequenceAnomalyDetector(**{**TINY, "epochs": 2}, direction="causal", seed=3).fit(
        prepared.features, prepared.labels
    )


@pytest.fixture
def data_dir(consortium: Consortium, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "data"
    shutil.copytree(consortium.data_dir, target)
    monkeypatch.setenv("FLOWBUREAU_DATA_DIR", str(target))
    get_settings.cache_clear()
    return target
