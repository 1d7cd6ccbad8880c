"""``flowbureau synth``: a thin adapter with a summary table and typed exit codes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from flowbureau.cli import main


def _run(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run the console entry point; its exit status (0 when it returns normally)."""
    monkeypatch.setattr(sys, "argv", ["flowbureau", *args])
    try:
        main()
    except SystemExit as exited:
        return int(exited.code or 0)
    return 0


def test_synth_writes_a_consortium_and_prints_a_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    code = _run(
        monkeypatch,
        "synth",
        "--out",
        str(out),
        "--enterprises",
        "8",
        "--banks",
        "2",
        "--months",
        "2",
        "--seed",
        "3",
        "--formats",
        "mt940,csv:cmb",
        "--no-progress",
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "statement files" in printed
    assert "cmb" in printed
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["parameters"]["seed"] == 3
    assert [b["format"] for b in manifest["banks"]] == ["mt940", "csv"]


def test_synth_bad_input_exits_2_and_names_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run(monkeypatch, "synth", "--out", str(tmp_path / "x"), "--start", "2024/01")
    assert code == 2
    assert "--start" in capsys.readouterr().err
    code = _run(monkeypatch, "synth", "--out", str(tmp_path / "y"), "--formats", "pdf")
    assert code == 2
    assert "formats" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "y").exists()
