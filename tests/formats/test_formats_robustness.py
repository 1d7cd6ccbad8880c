"""No input makes a reader crash with a raw exception or hang: truncated and mangled files."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from export_samples import render, running
from hypothesis import given, settings
from hypothesis import strategies as st
from test_formats_camt import document, entry
from test_formats_swift import GOOD

from flowbureau.errors import InputError
from flowbureau.formats import load_profiles, read_file

DATA = Path(__file__).parent / "data"
ROWS = running([(datetime(2024, 1, 2, 9, 0), 100), (datetime(2024, 1, 3, 9, 0), -50)], 1000)
SAMPLES: dict[str, tuple[str, bytes]] = {
    "mt940": ("s.sta", GOOD.encode()),
    "camt": ("c.xml", document(entry(1, "128.50")).encode()),
    "bai2": ("b.bai", (DATA / "sample.bai").read_bytes()),
    "ofx": ("o.ofx", (DATA / "sample-2x.ofx").read_bytes()),
    "csv": ("t.csv", render(load_profiles()["ccb"], ROWS).encode("gb18030")),
}


def _read(name: str, data: bytes, fmt: str) -> None:
    """Reading ``data`` either works or raises an ``InputError`` naming the file."""
    error: InputError | None = None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            read_file(path, format=fmt)
        except InputError as exc:
            error = exc
    assert error is None or error.file == str(path)


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(sorted(SAMPLES)), cut=st.floats(min_value=0, max_value=1))
def test_truncated_files_parse_or_fail_typed(fmt: str, cut: float) -> None:
    name, data = SAMPLES[fmt]
    _read(name, data[: int(len(data) * cut)], fmt)


@settings(max_examples=60, deadline=None)
@given(
    fmt=st.sampled_from(sorted(SAMPLES)),
    at=st.floats(min_value=0, max_value=1),
    junk=st.binary(min_size=1, max_size=8),
)
def test_mangled_files_parse_or_fail_typed(fmt: str, at: float, junk: bytes) -> None:
    name, data = SAMPLES[fmt]
    index = int(len(data) * at)
    _read(name, data[:index] + junk + data[index + len(junk) :], fmt)


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=300), fmt=st.sampled_from(["auto", *sorted(SAMPLES), "register"]))
def test_random_bytes_fail_typed(data: bytes, fmt: str) -> None:
    _read("r.dat", data, fmt)
