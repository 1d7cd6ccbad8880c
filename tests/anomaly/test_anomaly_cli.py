"""``flowbureau anomaly train | run | show | label | revert``: JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_runner import run_cli
from conftest import Consortium


@pytest.mark.slow
def test_train_run_show_label_and_revert(
    data_dir: Path,
    consortium: Consortium,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run_cli(
        monkeypatch,
        capsys,
        "anomaly",
        "train",
        "--ground-truth",
        str(consortium.truth),
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--seed",
        "1",
        "--json",
    )
    assert status == 0
    trained = json.loads(out)
    assert trained["version"] == "v0001"
    assert trained["labelled"] == trained["rows"]
    assert (data_dir / "models" / "anomaly" / "v0001" / "manifest.json").is_file()

    status, out, _ = run_cli(
        monkeypatch, capsys, "anomaly", "run", "--confidence", "0.95", "--json"
    )
    assert status == 0
    report = json.loads(out)
    assert report["model_version"] == "v0001"
    assert report["corrections_applied"] > 0
    assert report["confidence"] == 0.95

    status, out, _ = run_cli(
        monkeypatch,
        capsys,
        "sql",
        "--json",
        "SELECT account_id, tx_id, correction_id FROM transactions "
        "WHERE correction_id IS NOT NULL ORDER BY tx_id LIMIT 1",
    )
    assert status == 0
    rows = json.loads(out)
    (first,) = rows if isinstance(rows, list) else rows["rows"]
    status, out, _ = run_cli(monkeypatch, capsys, "anomaly", "show", first["account_id"], "--json")
    assert status == 0
    shown = json.loads(out)
    entry = next(e for e in shown["entries"] if e["tx_id"] == first["tx_id"])
    assert entry["corrections"][0]["correction_id"] == first["correction_id"]
    assert entry["corrections"][0]["reason"]

    status, out, _ = run_cli(monkeypatch, capsys, "anomaly", "show", first["account_id"])
    assert status == 0
    assert first["tx_id"] in out
    assert f"correction {first['correction_id']} active" in out

    status, out, _ = run_cli(
        monkeypatch,
        capsys,
        "anomaly",
        "revert",
        first["correction_id"],
        "--analyst",
        "ana",
        "--note",
        "wrong",
        "--json",
    )
    assert status == 0
    assert json.loads(out)["status"] == "reverted"

    status, out, _ = run_cli(
        monkeypatch,
        capsys,
        "anomaly",
        "label",
        first["tx_id"],
        "--as",
        "normal",
        "--analyst",
        "ana",
    )
    assert status == 0
    assert "labelled" in out

    status, _, err = run_cli(
        monkeypatch, capsys, "anomaly", "label", first["tx_id"], "--as", "typo", "--analyst", "a"
    )
    assert status == 2
    assert "field 'label'" in err
    status, _, err = run_cli(
        monkeypatch, capsys, "anomaly", "revert", "corr-nope", "--analyst", "a"
    )
    assert status == 1
    assert "no correction" in err
    status, _, err = run_cli(monkeypatch, capsys, "anomaly", "train", "--device", "tpu")
    assert status == 2
    status, _, err = run_cli(monkeypatch, capsys, "anomaly", "train", "--direction", "sideways")
    assert status == 2
    assert "--direction" in err


def test_run_without_a_model_says_what_to_do(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(monkeypatch, capsys, "anomaly", "run")
    assert status == 1
    assert "flowbureau anomaly train" in err
