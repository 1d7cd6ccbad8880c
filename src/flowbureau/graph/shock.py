"""What-if: "if these enterprises fail, who is hurt, how badly, along which paths?"

Rules:
- The network is the member exposure network of :func:`flowbureau.graph.features.
  member_exposures` as of ``as_of`` (trade in the window before it, guarantees in force on
  it), the same one the DebtRank features use.
- ``as_of`` defaults to the day after the latest entry booked in the warehouse (in the
  consortium's time zone): "now" for the data at hand.
- The shocked enterprises start at ``distress`` (default 1: failure); DebtRank
  (:mod:`flowbureau.graph.debtrank`) gives every member's final distress, the relative value
  lost beyond the shock, and the main propagation paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flowbureau.errors import InputError, NotFoundError
from flowbureau.graph.debtrank import DebtRankResult, debtrank
from flowbureau.graph.store import GraphStore
from flowbureau.graph.supply import SupplyGraph, build_supply_graph
from flowbureau.schema import is_valid_credit_code
from flowbureau.storage.engine import Engine
from flowbureau.storage.warehouse import Warehouse

__all__ = ["ShockReport", "default_as_of", "load_supply", "shock"]


def default_as_of(engine: Engine, timezone: str) -> date:
    """The day after the latest booked entry (local), NotFoundError on an empty warehouse."""
    latest = engine.query("SELECT max(booked_at) FROM transactions").column(0)[0].as_py()
    if latest is None:
        raise NotFoundError("the warehouse holds no transactions: run `flowbureau ingest` first")
    day: date = latest.astimezone(ZoneInfo(timezone)).date()
    return day + timedelta(days=1)


def load_supply(
    as_of: date | None,
    *,
    window_months: int = 12,
    warehouse: Warehouse | None = None,
    store: GraphStore | None = None,
) -> tuple[SupplyGraph, GraphStore]:
    """The supply graph as of ``as_of`` (default: :func:`default_as_of`) and the graph store."""
    from flowbureau.config import get_settings

    kept = store or GraphStore.default()
    if not kept.exists():
        raise NotFoundError("no graph built yet: run `flowbureau graph build`")
    zone = get_settings().timezone
    members = list(kept.registry().enterprises["credit_code"])
    with (warehouse or Warehouse.default()).connect() as engine:
        day = as_of or default_as_of(engine, zone)
        supply = build_supply_graph(
            engine, day, window_months=window_months, timezone=zone, members=members
        )
    return supply, kept


@dataclass(frozen=True)
class ShockReport:
    """A what-if run: the date, the shocked enterprises, the DebtRank result, node names."""

    as_of: date
    shocked: tuple[str, ...]
    result: DebtRankResult
    names: dict[str, str]

    def as_dict(self, *, top: int = 20) -> dict[str, Any]:
        """JSON-safe form (names added to the distressed nodes and paths)."""
        data = self.result.as_dict(top=top)
        for row in data["distress"]:
            row["name"] = self.names.get(row["node"])
        for path in data["paths"]:
            path["names"] = [self.names.get(n) for n in path["nodes"]]
        return {"as_of": self.as_of.isoformat(), "shocked": list(self.shocked), **data}


def shock(
    credit_codes: Sequence[str],
    *,
    as_of: date | None = None,
    distress: float = 1.0,
    window_months: int = 12,
    paths: int = 10,
    warehouse: Warehouse | None = None,
    store: GraphStore | None = None,
) -> ShockReport:
    """Shock ``credit_codes`` with ``distress`` and propagate (see the module rules)."""
    from flowbureau.graph.features import member_exposures

    if not credit_codes:
        raise InputError("name at least one enterprise to shock", field="credit_code")
    for i, code in enumerate(credit_codes):
        if not is_valid_credit_code(code):
            raise InputError(
                f"not a unified social credit code: {code!r}", line=i + 1, field="credit_code"
            )
    if not 0.0 < distress <= 1.0:
        raise InputError(f"distress must lie in (0, 1], got {distress}", field="distress")
    supply, kept = load_supply(as_of, window_months=window_months, warehouse=warehouse, store=store)
    registry = kept.registry()
    registered = registry.enterprises.set_index("credit_code")["registered_capital_minor"]
    exposures, capital = member_exposures(supply, registry.guarantees, registered)
    unknown = [c for c in credit_codes if c not in capital.index]
    if unknown:
        raise NotFoundError(f"{unknown[0]} is not in the graph as of {supply.as_of}")
    result = debtrank(exposures, capital, dict.fromkeys(credit_codes, distress), paths=paths)
    names = dict(
        zip(registry.enterprises["credit_code"], registry.enterprises["name"], strict=True)
    )
    return ShockReport(supply.as_of, tuple(credit_codes), result, names)
