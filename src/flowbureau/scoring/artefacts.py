"""Versioned model artefacts: the fitted estimator plus a JSON manifest, saved atomically.

Layout: ``ROOT/NAME/vNNNN/`` holding ``model.joblib`` (the estimator), ``manifest.json`` and,
optionally, ``cases.parquet`` (the case library evaluated beside the model).

Rules:
- Versions are 1, 2, 3, ... per name; a saved version is never overwritten. The directory is
  written under a temporary name and renamed into place, so a crash leaves no half artefact
  and two concurrent savers get different versions.
- The manifest records: format version, name, version, creation time (UTC), the model class
  and its parameters, the training data fingerprint (SHA-256 of the training frame and labels,
  taken by ``fit``), the features, caller-supplied metrics, the versions of Python and of the
  libraries the pickle depends on, and the SHA-256 of every file.
- Loading refuses (typed errors): an unknown format version (ModelError), a file whose hash is
  not the manifest's or a model whose fingerprint is not the manifest's (IntegrityError), and -
  unless ``allow_version_drift`` - a different version of scikit-learn, optbinning or LightGBM
  (ModelError): the same artefact must give the same scores, and a pickle from another library
  version does not promise that.
- joblib files execute code when loaded: load only artefacts from a store you control. The
  hashes detect corruption and accidental edits, not a forger who rewrites the manifest too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from flowbureau.errors import (
    ConflictError,
    InputError,
    IntegrityError,
    ModelError,
    NotFoundError,
)
from flowbureau.scoring.cases import CaseLibrary
from flowbureau.scoring.scale import MasterScale

FORMAT_VERSION = 1
MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
CASES_FILE = "cases.parquet"
TRACKED_LIBRARIES = ("scikit-learn", "optbinning", "lightgbm", "numpy", "pandas", "joblib")
"""Libraries whose versions the manifest records."""
STRICT_LIBRARIES = ("scikit-learn", "optbinning", "lightgbm")
"""Libraries whose version must match on load (the pickled objects are theirs)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_VERSION_DIR = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True, slots=True)
class ArtefactManifest:
    """What a saved model is, what it was trained on, and how well it did."""

    format_version: int
    name: str
    version: int
    created_at: str
    model_class: str
    params: dict[str, Any]
    training_fingerprint: str
    features: list[str]
    metrics: dict[str, float]
    library_versions: dict[str, str | None]
    python: str
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Artefact:
    """A loaded (or just saved) artefact: the model, its manifest, its cases, its directory."""

    model: Any
    manifest: ArtefactManifest
    cases: CaseLibrary | None
    path: Path


def model_label(name: str, version: int) -> str:
    """``name/vNNNN``: how a saved model version is shown to people and in evaluations."""
    return f"{name}/v{version:04d}"


def list_versions(root: str | Path, name: str) -> list[int]:
    """Saved versions of ``name`` under ``root``, ascending."""
    base = Path(root) / _checked_name(name)
    if not base.is_dir():
        return []
    versions = []
    for entry in base.iterdir():
        match = _VERSION_DIR.match(entry.name)
        if match and entry.is_dir():
            versions.append(int(match.group(1)))
    return sorted(versions)


def save_model(
    model: Any,
    root: str | Path,
    name: str,
    *,
    metrics: Mapping[str, float] | None = None,
    cases: CaseLibrary | None = None,
) -> Artefact:
    """Save a fitted model (and optionally its case library) as the next version of ``name``."""
    import joblib

    fingerprint = getattr(model, "training_fingerprint_", None)
    if not isinstance(fingerprint, str):
        raise ModelError(f"{type(model).__name__} is not fitted (no training_fingerprint_)")
    clean_metrics = _metrics(metrics or {})
    base = Path(root) / _checked_name(name)
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        joblib.dump(model, staging / MODEL_FILE)
        files = {MODEL_FILE: _sha256(staging / MODEL_FILE)}
        if cases is not None:
            cases.save(staging / CASES_FILE)
            files[CASES_FILE] = _sha256(staging / CASES_FILE)
        for _attempt in range(10):
            version = (list_versions(root, name) or [0])[-1] + 1
            manifest = ArtefactManifest(
                format_version=FORMAT_VERSION,
                name=name,
                version=version,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                model_class=_class_path(model),
                params=_json_params(model),
                training_fingerprint=fingerprint,
                features=[str(f) for f in getattr(model, "feature_names_in_", [])],
                metrics=clean_metrics,
                library_versions=_library_versions(),
                python=platform.python_version(),
                files=files,
            )
            (staging / MANIFEST_FILE).write_text(
                json.dumps(manifest.to_dict(), indent=2, sort_keys=True), encoding="utf-8"
            )
            target = base / f"v{version:04d}"
            _fsync_files(staging)
            try:
                staging.rename(target)
            except OSError:
                if target.exists():
                    continue  # another saver took this version; take the next one
                raise
            _fsync(base)
            return Artefact(model=model, manifest=manifest, cases=cases, path=target)
        raise ConflictError(f"could not claim a new version of {name!r}: too many savers")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def load_model(
    root: str | Path,
    name: str,
    version: int | None = None,
    *,
    allow_version_drift: bool = False,
) -> Artefact:
    """Load ``name`` (the latest version unless ``version`` is given), checking it first."""
    import joblib

    versions = list_versions(root, name)
    if not versions:
        raise NotFoundError(f"no saved model {name!r} under {root}")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise NotFoundError(f"model {name!r} has no version {chosen} (saved: {versions})")
    path = Path(root) / name / f"v{chosen:04d}"
    manifest = read_manifest(path)
    for file_name, digest in manifest.files.items():
        actual = _sha256(path / file_name)
        if actual != digest:
            raise IntegrityError(
                f"{path / file_name}: SHA-256 {actual} differs from the manifest's {digest}"
            )
    if not allow_version_drift:
        current = _library_versions()
        for library in STRICT_LIBRARIES:
            saved = manifest.library_versions.get(library)
            if saved != current.get(library):
                raise ModelError(
                    f"{path}: saved with {library} {saved}, running {current.get(library)}; "
                    "scores may differ (retrain, or load with allow_version_drift=True)"
                )
    model = joblib.load(path / MODEL_FILE)
    if _class_path(model) != manifest.model_class:
        raise IntegrityError(
            f"{path}: model is a {_class_path(model)}, manifest says {manifest.model_class}"
        )
    if getattr(model, "training_fingerprint_", None) != manifest.training_fingerprint:
        raise IntegrityError(f"{path}: model's training fingerprint differs from the manifest's")
    cases = CaseLibrary.load(path / CASES_FILE) if CASES_FILE in manifest.files else None
    return Artefact(model=model, manifest=manifest, cases=cases, path=path)


def read_manifest(path: str | Path) -> ArtefactManifest:
    """Read and check the manifest of an artefact directory."""
    file = Path(path) / MANIFEST_FILE
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NotFoundError(f"{file}: cannot read manifest: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"manifest is not JSON: {exc.msg}", file=file, line=exc.lineno) from exc
    if not isinstance(raw, dict):
        raise InputError("manifest must be a JSON object", file=file)
    if raw.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{file}: artefact format {raw.get('format_version')!r} is not supported "
            f"(this flowbureau reads format {FORMAT_VERSION})"
        )
    try:
        return ArtefactManifest(**raw)
    except TypeError as exc:
        raise InputError(f"manifest fields are wrong: {exc}", file=file) from exc


def _checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(
            f"model name {name!r} must be 1-100 letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)",
            field="name",
        )
    return name


def _metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        number = float(value)
        if not math.isfinite(number):
            raise InputError(f"metric {key!r} is not finite: {value!r}", field=f"metrics.{key}")
        out[str(key)] = number
    return out


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _json_params(model: Any) -> dict[str, Any]:
    get_params = getattr(model, "get_params", None)
    params = get_params(deep=False) if callable(get_params) else {}
    return {str(k): _json_value(v) for k, v in params.items()}


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, MasterScale):
        return value.to_dict()
    if hasattr(value, "get_params"):
        return {"class": _class_path(value), "params": _json_params(value)}
    return repr(value)


def _library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for library in TRACKED_LIBRARIES:
        try:
            out[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            out[library] = None
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_files(directory: Path) -> None:
    for entry in directory.iterdir():
        _fsync(entry)
    _fsync(directory)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
