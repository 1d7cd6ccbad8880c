"""``flowbureau score import-external | train | run | show | export-sql``: JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scoring_data import code, contribute, planted_consortium

from cli_runner import run_cli
from flowbureau.config import get_settings
from flowbureau.storage.warehouse import Warehouse


@pytest.mark.slow
def test_train_run_show_and_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    consortium = planted_consortium(40, seed=2)
    contribute(Warehouse.default(), consortium.rows)
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text(
        "credit_code,default_date\n"
        + "".join(f"{c},{d.isoformat()}\n" for c, d in consortium.defaults.items()),
        encoding="utf-8",
    )
    external = tmp_path / "records"
    external.mkdir()
    first = consortium.enterprises[0]
    (external / "penalties.csv").write_text(
        f"record_id,credit_code,date,authority,severity\nP1,{first},2024-02-01,x,fine\n",
        encoding="utf-8",
    )
    status, out, _ = run_cli(
        monkeypatch, capsys, "score", "import-external", str(external), "--json"
    )
    assert status == 0
    assert list(json.loads(out)["files"]) == ["penalties"]

    status, out, err = run_cli(
        monkeypatch,
        capsys,
        "score",
        "train",
        "--outcomes",
        str(outcomes),
        "--observed-until",
        "2024-12-31",
        "--as-of",
        "2023-10-01",
        "--as-of",
        "2024-01-01",
        "--cv",
        "2",
        "--no-challenger",
        "--json",
    )
    assert status == 0, err
    trained: dict[str, Any] = json.loads(out)
    assert trained["model"] == "credit/v0001"
    assert trained["cohorts"] == ["2023-10-01", "2024-01-01"]
    assert trained["bads"] > 0
    assert "public_records" in trained["sources"]

    status, _, err = run_cli(monkeypatch, capsys, "score", "run", "--as-of", "2024-06-01")
    assert status == 1
    assert "flowbureau db upgrade" in err
    assert run_cli(monkeypatch, capsys, "db", "upgrade")[0] == 0
    status, out, _ = run_cli(monkeypatch, capsys, "score", "run", "--as-of", "2024-06-01", "--json")
    assert status == 0
    report = json.loads(out)
    assert report["evaluated"] == report["population"] == 40
    assert report["missing_features"] == []
    assert sum(report["grades"].values()) == 40
    status, out, _ = run_cli(monkeypatch, capsys, "score", "run", "--as-of", "2024-06-01", "--json")
    assert json.loads(out)["evaluated"] == 0

    status, out, _ = run_cli(monkeypatch, capsys, "score", "show", first, "--json")
    assert status == 0
    shown = json.loads(out)
    assert shown["evaluation"]["enterprise_id"] == first
    assert shown["evaluation"]["data"]["uses_corrected_values"] is True
    assert "cashflow" in shown["evaluation"]["sources"]
    assert set(shown["evaluation"]["sources"]) <= set(trained["sources"])
    assert [h["as_of"] for h in shown["history"]] == ["2024-06-01"]
    status, out, _ = run_cli(monkeypatch, capsys, "score", "show", first)
    assert status == 0
    assert "reasons" in out
    assert "history" in out

    status, out, _ = run_cli(monkeypatch, capsys, "score", "export-sql", "--table", "f")
    assert status == 0
    assert out.startswith("SELECT")
    assert '"f"' in out


def test_errors_exit_with_their_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "outcomes.csv"
    bad.write_text("credit_code,default_date\nnope,2024-01-01\n", encoding="utf-8")
    status, _, err = run_cli(
        monkeypatch,
        capsys,
        "score",
        "train",
        "--outcomes",
        str(bad),
        "--observed-until",
        "2024-12-31",
    )
    assert status == 2
    assert f"{bad}, line 2, field 'credit_code'" in err
    status, _, err = run_cli(monkeypatch, capsys, "score", "train", "--outcomes", str(bad))
    assert status == 2
    assert "--observed-until" in err
    status, _, err = run_cli(monkeypatch, capsys, "score", "export-sql")
    assert status == 1
    assert "no saved model" in err
    assert run_cli(monkeypatch, capsys, "db", "upgrade")[0] == 0
    status, _, err = run_cli(monkeypatch, capsys, "score", "show", code(5))
    assert status == 1
    assert "no evaluation" in err
    status, _, err = run_cli(monkeypatch, capsys, "score", "show", "12345")
    assert status == 2
    assert get_settings().data_dir.is_dir()
