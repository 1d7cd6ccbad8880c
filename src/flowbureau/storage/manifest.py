"""The warehouse manifest: the one file that says which Parquet files are committed.

Rules:
- ``<warehouse>/manifest.json`` lists every committed data file, per table and per annotation
  scope. A Parquet file that the manifest does not list does not exist for readers, whatever
  lies on disk: that is what makes commits atomic and lets readers query while a writer works.
- The manifest is replaced, never edited: a writer writes ``manifest.json.tmp``, fsyncs it and
  renames it over ``manifest.json`` (atomic on POSIX), then fsyncs the directory. A reader
  therefore sees either the old or the new version, never a mix.
- ``version`` grows by one per commit; paths are relative to the warehouse root, POSIX style.
- Files that a commit replaces (annotation scopes) move to ``retired`` with the time they were
  retired, and are deleted only after a grace period, so a reader still holding the previous
  snapshot can finish.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flowbureau.errors import StorageError

__all__ = [
    "MANIFEST_FORMAT",
    "DataFile",
    "Manifest",
    "RetiredFile",
    "fsync_directory",
    "read_manifest",
    "write_manifest",
]

MANIFEST_FORMAT = 1
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True, slots=True)
class DataFile:
    """One committed Parquet file: where it is, how many rows, which batch wrote it."""

    path: str
    rows: int
    batch_id: str
    bank_id: str | None = None
    month: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in the manifest."""
        data: dict[str, Any] = {"path": self.path, "rows": self.rows, "batch_id": self.batch_id}
        if self.bank_id is not None:
            data["bank_id"] = self.bank_id
        if self.month is not None:
            data["month"] = self.month
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DataFile:
        """Inverse of :meth:`to_json`."""
        return cls(
            path=str(data["path"]),
            rows=int(data["rows"]),
            batch_id=str(data["batch_id"]),
            bank_id=data.get("bank_id"),
            month=data.get("month"),
        )


@dataclass(frozen=True, slots=True)
class RetiredFile:
    """A file no longer referenced, kept until ``retired_at`` + the grace period."""

    path: str
    retired_at: float


@dataclass(frozen=True, slots=True)
class Manifest:
    """An immutable snapshot of the warehouse's committed files."""

    version: int = 0
    committed_at: str | None = None
    tables: Mapping[str, tuple[DataFile, ...]] = field(default_factory=dict)
    annotations: Mapping[str, Mapping[str, tuple[DataFile, ...]]] = field(default_factory=dict)
    retired: tuple[RetiredFile, ...] = ()

    def files(self, table: str) -> tuple[DataFile, ...]:
        """Committed files of ``table`` (empty when it has none)."""
        return self.tables.get(table, ())

    def annotation_files(self, name: str) -> tuple[DataFile, ...]:
        """Committed files of annotation ``name``, all scopes together."""
        scopes = self.annotations.get(name, {})
        return tuple(f for scope in sorted(scopes) for f in scopes[scope])

    def referenced_paths(self) -> set[str]:
        """Every path the manifest lists (tables, annotations) or still keeps (retired)."""
        paths = {f.path for files in self.tables.values() for f in files}
        for scopes in self.annotations.values():
            paths |= {f.path for files in scopes.values() for f in files}
        paths |= {r.path for r in self.retired}
        return paths

    def with_files(self, table: str, files: Iterable[DataFile]) -> Manifest:
        """A copy with ``files`` appended to ``table``."""
        tables = dict(self.tables)
        tables[table] = (*self.files(table), *files)
        return replace(self, tables=tables)

    def with_annotation(
        self, name: str, scope: str, files: Iterable[DataFile], *, now: float
    ) -> Manifest:
        """A copy where ``name``/``scope`` holds exactly ``files``; replaced files are retired."""
        annotations = {k: dict(v) for k, v in self.annotations.items()}
        scopes = annotations.setdefault(name, {})
        old = scopes.get(scope, ())
        new = tuple(files)
        if new:
            scopes[scope] = new
        else:
            scopes.pop(scope, None)
        retired = (*self.retired, *(RetiredFile(f.path, now) for f in old))
        return replace(self, annotations=annotations, retired=retired)

    def to_json(self) -> dict[str, Any]:
        """The JSON document written to ``manifest.json``."""
        return {
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "committed_at": self.committed_at,
            "tables": {t: [f.to_json() for f in fs] for t, fs in sorted(self.tables.items())},
            "annotations": {
                name: {scope: [f.to_json() for f in fs] for scope, fs in sorted(scopes.items())}
                for name, scopes in sorted(self.annotations.items())
            },
            "retired": [{"path": r.path, "retired_at": r.retired_at} for r in self.retired],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Inverse of :meth:`to_json`; refuses an unknown format version."""
        if data.get("format") != MANIFEST_FORMAT:
            raise StorageError(
                f"warehouse manifest has format {data.get('format')!r}; this flowbureau reads "
                f"format {MANIFEST_FORMAT}"
            )
        return cls(
            version=int(data["version"]),
            committed_at=data.get("committed_at"),
            tables={
                t: tuple(DataFile.from_json(f) for f in fs) for t, fs in data["tables"].items()
            },
            annotations={
                name: {scope: tuple(DataFile.from_json(f) for f in fs) for scope, fs in s.items()}
                for name, s in data["annotations"].items()
            },
            retired=tuple(
                RetiredFile(str(r["path"]), float(r["retired_at"])) for r in data["retired"]
            ),
        )


def read_manifest(root: Path) -> Manifest:
    """The committed manifest of the warehouse at ``root`` (an empty one if none yet)."""
    path = root / MANIFEST_NAME
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return Manifest()
    try:
        return Manifest.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{path}: unreadable warehouse manifest: {exc}") from None


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Atomically replace ``root/manifest.json`` with ``manifest`` (durable once this returns)."""
    target = root / MANIFEST_NAME
    temporary = root / (MANIFEST_NAME + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(manifest.to_json(), handle, ensure_ascii=False, separators=(",", ":"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    fsync_directory(root)


def fsync_directory(directory: Path) -> None:
    """Make renames and creations inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
