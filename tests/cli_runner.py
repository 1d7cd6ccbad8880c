"""Run the ``flowbureau`` console entry point in-process, the way a shell would."""

from __future__ import annotations

import sys

import pytest

from flowbureau.cli import main


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """``flowbureau ARGS...``: its exit status (0 when it returns normally), stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["flowbureau", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
