"""Case-based reasoning: retrieval, as-of rules, outcomes arriving, weights, risk, persistence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowbureau.errors import ConflictError, InputError, ModelError, NotFoundError
from flowbureau.scoring import CaseLibrary

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def small_library() -> CaseLibrary:
    library = CaseLibrary(["liquidity", "leverage"], prior_strength=1.0)
    library.add("a", {"liquidity": 1.0, "leverage": 0.2}, T0, 0, T0 + timedelta(days=30))
    library.add("b", {"liquidity": 1.1, "leverage": 0.3}, T0 + timedelta(days=1))
    library.add(
        "c", {"liquidity": 5.0, "leverage": 0.9}, T0 + timedelta(days=2), 1, T0 + timedelta(days=60)
    )
    library.add(
        "d",
        {"liquidity": None, "leverage": 0.25},
        T0 + timedelta(days=3),
        0,
        T0 + timedelta(days=90),
    )
    return library


def test_query_orders_by_weighted_standardised_distance() -> None:
    library = small_library()
    found = library.query({"liquidity": 1.0, "leverage": 0.2}, k=4)
    assert found[0].case_id == "a"
    assert found[0].similarity == 1.0
    assert found[0].distance == 0.0
    assert [c.similarity for c in found] == sorted((c.similarity for c in found), reverse=True)
    assert found[-1].case_id == "c"
    # d's missing liquidity is ignored, its leverage distance rescaled to both features
    matrix = np.array([[1.0, 0.2], [1.1, 0.3], [5.0, 0.9], [np.nan, 0.25]])
    mean, std = np.nanmean(matrix, axis=0), np.nanstd(matrix, axis=0)
    z_d = (0.25 - mean[1]) / std[1]
    z_q = (0.2 - mean[1]) / std[1]
    d = next(c for c in found if c.case_id == "d")
    assert d.distance == pytest.approx(np.sqrt(2 * (z_d - z_q) ** 2))
    assert d.features == {"liquidity": None, "leverage": 0.25}


def test_as_of_hides_later_cases_and_later_outcomes() -> None:
    library = small_library()
    early = library.query({"liquidity": 1.0, "leverage": 0.2}, k=10, as_of=T0 + timedelta(days=2))
    assert {c.case_id for c in early} == {"a", "b"}  # c was evaluated at day 2: not before
    a = next(c for c in early if c.case_id == "a")
    assert a.outcome is None  # observed at day 30, after the as-of date
    later = library.query({"liquidity": 1.0, "leverage": 0.2}, k=10, as_of=T0 + timedelta(days=31))
    assert next(c for c in later if c.case_id == "a").outcome == 0
    labelled = library.query({"liquidity": 1.0}, k=10, labelled_only=True)
    assert {c.case_id for c in labelled} == {"a", "c", "d"}


def test_outcomes_arrive_later_and_never_change_silently() -> None:
    library = small_library()
    with pytest.raises(NotFoundError):
        library.record_outcome("zz", 1, T0)
    library.record_outcome("b", 1, T0 + timedelta(days=40))
    library.record_outcome("b", 1, T0 + timedelta(days=41))  # same outcome: no-op
    with pytest.raises(ConflictError):
        library.record_outcome("b", 0, T0 + timedelta(days=42))
    with pytest.raises(InputError, match="before the evaluation"):
        library.add("e", {"liquidity": 1.0}, T0, 1, T0 - timedelta(days=1))
    found = library.query({"liquidity": 1.1, "leverage": 0.3}, k=1)
    assert found[0].case_id == "b"
    assert found[0].outcome == 1


def test_predict_risk_is_the_smoothed_similarity_weighted_rate() -> None:
    library = small_library()
    query = {"liquidity": 1.0, "leverage": 0.2}
    risk = library.predict_risk(query, k=3)
    cases = library.query(query, k=3, labelled_only=True)
    prior = 1 / 3  # one default among the three labelled cases
    weights = np.array([c.similarity for c in cases])
    outcomes = np.array([c.outcome for c in cases])
    expected = (weights @ outcomes + 1.0 * prior) / (weights.sum() + 1.0)
    assert risk.pd == pytest.approx(expected)
    assert risk.prior_pd == pytest.approx(prior)
    assert [c.case_id for c in risk.cases] == [c.case_id for c in cases]
    near_default = library.predict_risk({"liquidity": 5.0, "leverage": 0.9}, k=3)
    assert near_default.pd > risk.pd
    empty = CaseLibrary(["x"])
    with pytest.raises(ModelError, match="prior_pd"):
        empty.predict_risk({"x": 1.0})
    assert CaseLibrary(["x"], prior_pd=0.1).predict_risk({"x": 1.0}).pd == 0.1


def test_learned_weights_favour_the_informative_feature() -> None:
    rng = np.random.default_rng(0)
    n = 400
    informative = rng.normal(size=n)
    noise = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-3 * informative))).astype(int)
    frame = pd.DataFrame(
        {
            "case_id": [f"c{i}" for i in range(n)],
            "evaluated_at": pd.Timestamp("2024-01-01", tz="UTC"),
            "signal": informative,
            "noise": noise,
            "outcome": y,
            "outcome_at": pd.Timestamp("2025-01-01", tz="UTC"),
        }
    )
    library = CaseLibrary(["signal", "noise"])
    assert library.add_frame(frame, outcome_column="outcome", outcome_date_column="outcome_at") == n
    weights = library.learn_weights()
    assert weights["signal"] > 5 * weights["noise"]
    assert sum(weights.values()) == pytest.approx(2.0)
    # with learned weights the neighbours of a risky query are mostly defaults
    risky = library.query({"signal": 2.0, "noise": 0.0}, k=20)
    assert np.mean([c.outcome for c in risky]) > 0.8


def test_configured_weights_and_validation() -> None:
    library = CaseLibrary(["a", "b"], weights={"a": 1.0})
    assert library.weights == {"a": 1.0, "b": 0.0}
    with pytest.raises(InputError):
        CaseLibrary(["a"], weights={"z": 1.0})
    with pytest.raises(InputError):
        CaseLibrary(["a"], weights={"a": -1.0})
    with pytest.raises(InputError, match="time-zone"):
        library.add("x", {"a": 1.0}, datetime(2025, 1, 1))
    with pytest.raises(InputError, match="not a number"):
        library.add("x", {"a": "high"}, T0)
    with pytest.raises(InputError, match="unknown features"):
        library.add("x", {"zz": 1.0}, T0)
    library.add("x", {"a": 1.0}, T0)
    with pytest.raises(ConflictError):
        library.add("x", {"a": 2.0}, T0)


def test_add_frame_is_all_or_nothing() -> None:
    library = small_library()
    frame = pd.DataFrame(
        {
            "case_id": ["n1", "n2"],
            "evaluated_at": [pd.Timestamp("2025-02-01", tz="UTC"), pd.Timestamp("2025-02-02")],
            "liquidity": [1.0, 2.0],
            "leverage": [0.1, 0.2],
        }
    )
    with pytest.raises(InputError) as err:
        library.add_frame(frame)
    assert err.value.line == 2
    assert len(library) == 4
    with pytest.raises(InputError, match="lacks"):
        library.add_frame(frame.drop(columns=["leverage"]))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    library = small_library()
    library.set_weights({"liquidity": 2.0, "leverage": 0.5})
    path = library.save(tmp_path / "cases.parquet")
    loaded = CaseLibrary.load(path)
    assert loaded.weights == library.weights
    assert len(loaded) == len(library)
    query = {"liquidity": 1.2, "leverage": 0.4}
    assert loaded.query(query, k=4) == library.query(query, k=4)
    assert loaded.predict_risk(query).pd == library.predict_risk(query).pd
    evidence = loaded.query(query, k=1)[0].as_evidence()
    assert evidence["evaluated_at"].endswith("+00:00")
    assert [p.name for p in tmp_path.iterdir()] == ["cases.parquet"]
    (tmp_path / "other.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError):
        CaseLibrary.load(tmp_path / "other.parquet")
