"""The sequence model's contract: learns, deterministic, saves and reloads, refuses bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import TINY, Prepared
from flowbureau.anomaly import ANOMALY_TYPES
from flowbureau.anomaly.baselines import MadRule, PyodBaseline
from flowbureau.anomaly.evaluation import detection_metrics
from flowbureau.anomaly.features import FEATURE_NAMES
from flowbureau.anomaly.model import (
    FORMAT_VERSION,
    MODEL_FILE,
    SequenceAnomalyDetector,
    list_versions,
    load_version,
    save_version,
)
from flowbureau.errors import IntegrityError, ModelError, ModelInputError


def test_the_small_model_learns_the_planted_anomalies(prepared: Prepared, tiny_model) -> None:
    analysis = tiny_model.analyse(prepared.features)
    ours = detection_metrics(prepared.labels, analysis.score)["overall"]["auprc"]
    mad = MadRule().fit(prepared.features).decision_function(prepared.features)
    baseline = detection_metrics(prepared.labels, mad)["overall"]["auprc"]
    share = np.mean([v not in (None, "normal") for v in prepared.labels])
    print(f"in-sample AUPRC {ours:.3f}, MAD rule {baseline:.3f}, prevalence {share:.3f}")
    assert ours > 3 * share
    assert ours > baseline
    assert set(analysis.type) <= set(ANOMALY_TYPES[1:])
    assert analysis.probabilities.shape == (len(prepared.features), len(ANOMALY_TYPES))
    np.testing.assert_allclose(analysis.probabilities.sum(axis=1), 1.0, rtol=1e-6)


def test_training_is_deterministic_for_a_seed(prepared: Prepared, tiny_model) -> None:
    again = SequenceAnomalyDetector(**TINY, direction="both", seed=3).fit(
        prepared.features, prepared.labels
    )
    for name, tensor in tiny_model.network_.state_dict().items():
        assert torch.equal(tensor, again.network_.state_dict()[name]), name
    assert again.training_fingerprint_ == tiny_model.training_fingerprint_
    other = SequenceAnomalyDetector(**{**TINY, "epochs": 1}, seed=4).fit(
        prepared.features, prepared.labels
    )
    assert not np.array_equal(
        other.decision_function(prepared.features), again.decision_function(prepared.features)
    )


def test_a_saved_model_reloads_to_identical_outputs(
    prepared: Prepared, tiny_model, tmp_path: Path
) -> None:
    name = save_version(tiny_model, tmp_path, metrics={"auprc": 0.5})
    assert name == "v0001"
    assert save_version(tiny_model, tmp_path) == "v0002"
    assert list_versions(tmp_path) == [1, 2]
    loaded_name, loaded = load_version(tmp_path, "v0001")
    assert loaded_name == "v0001"
    before, after = tiny_model.analyse(prepared.features), loaded.analyse(prepared.features)
    assert np.array_equal(before.score, after.score)
    assert np.array_equal(before.probabilities, after.probabilities)
    assert np.array_equal(before.normal_amount_minor, after.normal_amount_minor)
    assert loaded.training_fingerprint_ == tiny_model.training_fingerprint_
    assert loaded.get_params() == tiny_model.get_params()
    with pytest.raises(ModelError, match="never overwritten"):
        tiny_model.save(tmp_path / "v0001")


def test_a_tampered_or_foreign_artefact_is_refused(tiny_model, tmp_path: Path) -> None:
    path = tiny_model.save(tmp_path / "m")
    data = bytearray((path / MODEL_FILE).read_bytes())
    data[-10] ^= 0xFF
    (path / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        SequenceAnomalyDetector.load(path)
    other = tiny_model.save(tmp_path / "n")
    manifest = (other / "manifest.json").read_text("utf-8")
    (other / "manifest.json").write_text(
        manifest.replace('"feature_version": 1', '"feature_version": 99'), "utf-8"
    )
    with pytest.raises(ModelError, match="feature version 99"):
        SequenceAnomalyDetector.load(other)


def test_an_artefact_of_the_earlier_format_is_refused(tiny_model, tmp_path: Path) -> None:
    """A format-1 artefact (the causal GRU trained on windows, with a ``window`` parameter)
    is refused with an error saying to retrain, before its parameters are used."""
    path = tiny_model.save(tmp_path / "old")
    manifest = json.loads((path / "manifest.json").read_text("utf-8"))
    assert manifest["format_version"] == FORMAT_VERSION == 2
    assert manifest["params"]["direction"] == "both"
    params = {k: v for k, v in manifest["params"].items() if k != "direction"}
    manifest.update(format_version=1, params={**params, "window": 128})
    (path / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    with pytest.raises(ModelError, match=r"format 1.*retrain"):
        SequenceAnomalyDetector.load(path)


def test_the_causal_variant_saves_and_reloads(
    prepared: Prepared, causal_model, tmp_path: Path
) -> None:
    """``direction="causal"`` is a forward GRU (half the recurrent weights of the bidirectional
    one) and round-trips like it."""
    state = causal_model.network_.state_dict()
    assert not any(name.endswith("_reverse") for name in state)
    both = SequenceAnomalyDetector(**TINY, direction="both")._network(
        len(FEATURE_NAMES), len(ANOMALY_TYPES)
    )
    assert any(name.endswith("_reverse") for name in both.state_dict())
    _, loaded = load_version(tmp_path, save_version(causal_model, tmp_path))
    assert loaded.direction == "causal"
    assert np.array_equal(
        loaded.decision_function(prepared.features),
        causal_model.decision_function(prepared.features),
    )


def test_the_estimator_contract(prepared: Prepared) -> None:
    detector = SequenceAnomalyDetector(hidden_size=8, epochs=1)
    assert clone(detector).get_params() == detector.get_params()
    with pytest.raises(NotFittedError):
        detector.decision_function(prepared.features)
    with pytest.raises(ModelInputError, match="unknown anomaly type"):
        detector.fit(prepared.features, ["typo_x1000"] * len(prepared.features))
    with pytest.raises(ModelInputError, match="labels for"):
        detector.fit(prepared.features, prepared.labels[:-1])
    with pytest.raises(ModelInputError, match="no labelled rows"):
        detector.fit(prepared.features, [None] * len(prepared.features))
    with pytest.raises(ModelInputError) as error:
        SequenceAnomalyDetector(batch_size=0).fit(prepared.features, prepared.labels)
    assert error.value.field == "batch_size"
    with pytest.raises(ModelInputError) as error:
        SequenceAnomalyDetector(direction="backward").fit(prepared.features, prepared.labels)
    assert error.value.field == "direction"
    assert SequenceAnomalyDetector().direction == "causal"
    missing = prepared.features.drop(columns=["gap_days"])
    with pytest.raises(ModelInputError) as error:
        detector.fit(missing, prepared.labels)
    assert error.value.field == "gap_days"


def test_unlabelled_rows_are_context_not_targets(prepared: Prepared) -> None:
    labels = list(prepared.labels)
    half = [v if i % 2 else None for i, v in enumerate(labels)]
    detector = SequenceAnomalyDetector(**{**TINY, "epochs": 1}, seed=3)
    detector.fit(prepared.features, half)
    full = SequenceAnomalyDetector(**{**TINY, "epochs": 1}, seed=3)
    full.fit(prepared.features, labels)
    assert detector.training_fingerprint_ != full.training_fingerprint_
    assert np.isfinite(detector.decision_function(prepared.features)).all()


def test_the_normal_value_is_the_written_amount_or_an_exact_decimal_shift(tiny_model) -> None:
    amount = np.array([-123_400, -123_400, 5_000_000, 123_456, 77])
    delta = np.array([-1.05, -1.9, -2.2, -0.9, -2.0])  # the value head's log10 ratio
    probabilities = np.zeros((5, len(ANOMALY_TYPES)))
    probabilities[:, ANOMALY_TYPES.index("typo_x10")] = 0.7
    probabilities[:, ANOMALY_TYPES.index("typo_x100")] = 0.2
    probabilities[:, 0] = 0.1
    normal, confidence = tiny_model._normal_amounts(amount, delta, probabilities)
    # 123 400 / 100 is exact, 123 456 / 10 is not: that entry keeps its amount
    assert list(normal) == [-12_340, -1_234, 50_000, 123_456, 77]
    assert list(confidence) == [0.7, 0.2, 0.2, 0.0, 0.0]
    # told that the entry is a slip, the model picks ÷10 or ÷100 by its type head
    probabilities[1, ANOMALY_TYPES.index("typo_x100")] = 0.75
    assert list(tiny_model._slip_amounts(amount, probabilities)) == [
        -12_340,
        -1_234,
        50_000 * 10,
        123_456,
        77,
    ]


def test_the_pyod_baselines_score_every_row(prepared: Prepared) -> None:
    for method in ("iforest", "ecod"):
        baseline = PyodBaseline(method=method, seed=0).fit(prepared.features)
        scores = baseline.decision_function(prepared.features)
        assert scores.shape == (len(prepared.features),)
        assert np.isfinite(scores).all()
        assert 0 < baseline.predict(prepared.features).mean() < 0.2
    with pytest.raises(ModelInputError):
        PyodBaseline(method="lof").fit(prepared.features)


def test_the_mad_rule_scores_the_robust_z() -> None:
    amounts = [-100, -110, -90, -105, -95, -100_000]
    frame = pd.DataFrame(
        {"sequence_id": "A", "position": range(6), "amount_minor": amounts, "tx_id": list("abcdef")}
    )
    scores = MadRule().fit(frame).decision_function(frame)
    x = np.log(np.abs(np.array(amounts, dtype=float)) + 1)
    median = np.median(x)
    expected = 0.6745 * np.abs(x - median) / np.median(np.abs(x - median))
    np.testing.assert_allclose(scores, expected)
    assert list(MadRule().fit(frame).predict(frame)) == [0, 0, 0, 0, 0, 1]
    assert FEATURE_NAMES[0] == "log_amount"
