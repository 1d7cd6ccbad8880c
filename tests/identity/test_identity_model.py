"""The Fellegi-Sunter attribution model on synthetic identity data with known truth."""

from __future__ import annotations

from pathlib import Path

import pytest
from identity_data import make_truth

from flowbureau.errors import InputError, ModelError
from flowbureau.identity.model import MatchInput, latest_model, model_versions, train_model
from flowbureau.identity.settings import IdentitySettings


def _rates(
    pairs: list[tuple[str, str, float]], owner: dict[str, str], threshold: float
) -> tuple[float, float]:
    chosen = {(record, entry) for record, entry, p in pairs if p >= threshold}
    truth = set(owner.items())
    hits = len(chosen & truth)
    return hits / max(len(chosen), 1), hits / len(truth)


def test_attribution_precision_and_recall_against_a_floor() -> None:
    training = make_truth(300, seed=1)
    model = train_model(training.records + training.entries, seed=0)
    held_out = make_truth(200, seed=2)  # other enterprises, other noise: not trained on
    pairs = model.link(held_out.entries, held_out.records)
    settings = IdentitySettings()
    precision, recall = _rates(pairs, held_out.owner, settings.attach_threshold)
    offered_precision, offered_recall = _rates(pairs, held_out.owner, settings.candidate_threshold)
    print(
        f"attach >= {settings.attach_threshold}: precision {precision:.3f} recall {recall:.3f}; "
        f"offered >= {settings.candidate_threshold}: precision {offered_precision:.3f} "
        f"recall {offered_recall:.3f} ({len(held_out.owner)} true record links)"
    )
    assert precision >= 0.98
    assert recall >= 0.85
    assert offered_recall >= 0.95
    assert offered_precision >= 0.9


def test_strong_identifiers_outweigh_the_prior() -> None:
    model = train_model(make_truth(120, seed=3).records, seed=0)
    entry = MatchInput(uid="e", credit_code="91350100M000100Y43", name_norm="测试科技有限公司")
    by_code = MatchInput(uid="code", credit_code="91350100M000100Y43")
    by_name = MatchInput(uid="name", name_norm="测试科技有限公司")
    neither = MatchInput(uid="other", credit_code="91110108MA01A0A319", name_norm="别的公司")
    scores = model.score(entry, [by_code, by_name, neither])
    assert scores["code"] > 0.99  # a unique registration number is near-certain evidence
    assert scores["other"] < 0.01
    assert scores["code"] > scores["name"] > scores["other"]


def test_versions_are_kept_and_reloaded(tmp_path: Path) -> None:
    records = make_truth(40, seed=4).records
    first = train_model(records, seed=0)
    assert first.save(tmp_path).name == "v0001.json"
    second = train_model(records, seed=1)
    second.save(tmp_path)
    assert model_versions(tmp_path) == [1, 2]
    loaded = latest_model(tmp_path)
    assert loaded.version == "identity-v0002"
    probe = records[0]
    assert loaded.score(probe, records[:5]) == pytest.approx(second.score(probe, records[:5]))
    (tmp_path / "v0003.json").write_text('{"format": 99}', "utf-8")
    with pytest.raises(ModelError, match="unknown identity model format"):
        latest_model(tmp_path)


def test_training_needs_enough_records_with_codes() -> None:
    with pytest.raises(InputError, match="too few"):
        train_model(make_truth(2, seed=5).records[:5])
    nameless = [MatchInput(uid=str(k), name_norm=f"公司{k}") for k in range(30)]
    with pytest.raises(InputError, match="distinct credit codes"):
        train_model(nameless)
