"""`flowbureau demo`: every pipeline step on a small consortium, reuse, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowbureau.config import get_settings
from flowbureau.demo import DemoParameters, run_demo
from flowbureau.errors import ConfigurationError, InputError
from flowbureau.storage.query import sql

SMALL = DemoParameters(enterprises=120, banks=2, months=24, seed=3, anomaly_epochs=1)


@pytest.mark.slow
def test_the_demo_runs_every_step_and_a_second_run_adds_nothing(tmp_path: Path) -> None:
    root = tmp_path / "consortium"
    report = run_demo(root, parameters=SMALL)
    assert list(report.steps) == [
        "generate the consortium",
        "migrate the service database",
        "ingest through the consortium log",
        "detect anomalies",
        "resolve the counterparty graph",
        "train the credit model and score",
        "create the demo accounts",
    ]
    assert report.steps["generate the consortium"]["reused"] is False
    stored = report.steps["ingest through the consortium log"]["new_records"]
    assert stored > 1000
    count = sql("SELECT count(*) AS n FROM transactions").to_pylist()[0]["n"]
    assert count == stored
    assert report.steps["train the credit model and score"]["evaluated"] == SMALL.enterprises
    assert {"analyst", "operator", "auditor", "enterprise"} <= {
        str(a.role) for a in report.accounts
    }
    assert any(a.api_key for a in report.accounts)

    again = run_demo(root, parameters=SMALL)
    assert again.steps["generate the consortium"]["reused"] is True
    assert again.steps["ingest through the consortium log"]["new_records"] == 0
    assert again.steps["detect anomalies"]["model"]["reused"] is True
    assert sql("SELECT count(*) AS n FROM transactions").to_pylist()[0]["n"] == count


def test_a_consortium_made_with_other_parameters_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "consortium"
    root.mkdir()
    (root / "manifest.json").write_text(
        json.dumps({"parameters": {"enterprises": 7, "banks": 2, "months": 24, "seed": 3}}),
        encoding="utf-8",
    )
    with pytest.raises(InputError, match="pass another --dir"):
        run_demo(root, parameters=SMALL)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(InputError, match="not a synthetic consortium"):
        run_demo(other, parameters=SMALL)
    assert (other / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_the_demo_is_refused_in_production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBUREAU_ENV", "production")
    get_settings.cache_clear()
    try:
        # production settings may already refuse to load (default secrets): also a refusal
        with pytest.raises(ConfigurationError):
            run_demo(tmp_path / "c", parameters=SMALL, settings=get_settings())
    finally:
        get_settings.cache_clear()
    assert not (tmp_path / "c").exists()


def test_the_cli_command_is_documented() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "flowbureau"), "demo", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--dir", "--enterprises", "--no-serve", "--port"):
        assert option in done.stdout
