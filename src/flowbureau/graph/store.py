"""What ``flowbureau graph build`` keeps: the registry and public records the graph reads.

Rules:
- Under ``data_dir/graph/``: ``registry/<kind>.parquet`` (:mod:`flowbureau.graph.registry`)
  and ``records/<kind>.parquet`` (public records as loaded by
  :func:`flowbureau.scoring.external.load_external`), plus ``build.json`` (when, from where,
  the resolution counts).
- Written into a hidden sibling directory and renamed over the old one only when complete, so
  a failed build leaves the previous one in place (nothing half-written).
- :func:`build_graph` is the whole build: validate the inputs, resolve counterparties (the
  ``counterparties`` annotation of the warehouse), then store the inputs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flowbureau.config import get_settings
from flowbureau.errors import NotFoundError
from flowbureau.graph.registry import Registry, load_registry
from flowbureau.graph.resolution import ResolutionReport, resolve_counterparties
from flowbureau.storage.warehouse import Warehouse

__all__ = ["GraphStore", "build_graph"]


@dataclass(frozen=True)
class GraphStore:
    """The graph inputs kept under one directory (default ``data_dir/graph``)."""

    root: Path

    @classmethod
    def default(cls) -> GraphStore:
        """The store of the current settings."""
        return cls(get_settings().data_dir / "graph")

    def exists(self) -> bool:
        """True once a build has completed."""
        return (self.root / "build.json").is_file()

    def save(self, registry: Registry, records: dict[str, pa.Table], info: dict[str, Any]) -> None:
        """Replace the stored inputs atomically."""
        parent = self.root.parent
        parent.mkdir(parents=True, exist_ok=True)
        staging = parent / f".{self.root.name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "registry").mkdir(parents=True)
        (staging / "records").mkdir()
        for kind, frame in registry.tables().items():
            frame.to_parquet(staging / "registry" / f"{kind}.parquet", index=False)
        for kind, table in records.items():
            pq.write_table(table, staging / "records" / f"{kind}.parquet")
        (staging / "build.json").write_text(json.dumps(info, indent=2, sort_keys=True), "utf-8")
        old = parent / f".{self.root.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.root.exists():
            self.root.rename(old)
        staging.rename(self.root)
        shutil.rmtree(old, ignore_errors=True)

    def registry(self) -> Registry:
        """The stored registry (NotFoundError before the first build)."""
        if not self.exists():
            raise NotFoundError("no graph built yet: run `flowbureau graph build`")
        tables = {
            kind: pd.read_parquet(self.root / "registry" / f"{kind}.parquet")
            for kind in ("enterprises", "shareholders", "executives", "guarantees")
        }
        for kind, columns in {
            "shareholders": ("since",),
            "guarantees": ("start_date", "end_date"),
        }.items():
            for column in columns:
                tables[kind][column] = _dates(tables[kind][column])
        return Registry(**tables)

    def records(self) -> dict[str, pa.Table]:
        """The stored public records by kind (empty when none were given)."""
        if not self.exists():
            raise NotFoundError("no graph built yet: run `flowbureau graph build`")
        folder = self.root / "records"
        return {p.stem: pq.read_table(p) for p in sorted(folder.glob("*.parquet"))}

    def info(self) -> dict[str, Any]:
        """``build.json``."""
        if not self.exists():
            raise NotFoundError("no graph built yet: run `flowbureau graph build`")
        data: dict[str, Any] = json.loads((self.root / "build.json").read_text("utf-8"))
        return data


def _dates(column: pd.Series) -> pd.Series:
    return column.map(lambda v: None if v is None or pd.isna(v) else pd.Timestamp(v).date())


def build_graph(
    registry_dir: str | Path,
    public_records_dir: str | Path | None = None,
    *,
    warehouse: Warehouse | None = None,
    store: GraphStore | None = None,
    threshold: float = 0.9,
    seed: int = 0,
) -> ResolutionReport:
    """Validate the inputs, resolve the counterparties, keep the inputs for the graph."""
    from flowbureau.scoring.external import load_external

    registry = load_registry(registry_dir)
    records: dict[str, pa.Table] = {}
    if public_records_dir is not None:
        external = load_external(public_records_dir, default_macro_series=False)
        records = {k: v for k, v in external.records.items() if k != "registry"}
    report = resolve_counterparties(
        warehouse, registry=registry.enterprises, threshold=threshold, seed=seed
    )
    info = {
        "built_at": datetime.now(UTC).isoformat(),
        "registry_dir": str(Path(registry_dir).resolve()),
        "public_records_dir": None
        if public_records_dir is None
        else str(Path(public_records_dir).resolve()),
        "resolution": report.as_dict(),
        "threshold": threshold,
    }
    (store or GraphStore.default()).save(registry, records, info)
    return report
