"""The supply-chain graph: who pays whom for goods and services, as of a date, over a window.

Rules:
- **Nodes** are enterprises: consortium members (by unified social credit code) and the
  external counterparties resolved by :mod:`flowbureau.graph.resolution` (``ext:`` ids).
  Entries whose counterparty is unresolved are left out (run the resolution first).
- **Edges** point the way the money goes: ``source`` (the payer, the customer) -> ``target``
  (the payee, the supplier). So a node's *customers* are its in-neighbours and its
  *suppliers* its out-neighbours.
- **Which entries**: trade only, in the graph currency (CNY): debits of type
  ``supplier_payment`` or ``sales_receipt`` (the payer's side) and credits of type
  ``sales_receipt`` (the payee's side) that are *not* linked to a stored debit (a payment both
  sides of which are in the consortium counts once, from the payer's statement). Returned or
  reversed payments (flag ``returned_payment``) and payments to oneself are left out. Amounts
  are the effective amount (an accepted correction replaces the booked one).
- **Window**: entries booked in ``[D - window months, D)`` in the consortium's time zone, the
  same calendar as the cash-flow features (:func:`flowbureau.scoring.features.cutoff_instant`).
- **Edge attributes**: ``amount_minor`` (int, minor units), ``count``, ``first_day`` /
  ``last_day`` (local booking days), ``source_outflow_share`` (of the payer's trade outflow in
  the graph) and ``target_inflow_share`` (of the payee's trade inflow). For a member these are
  shares of all its trade; for an external node only its flows with members are seen.
- The graph is a rustworkx ``PyDiGraph`` (Apache-2.0) whose node payload is the node id and
  edge payload the row of :attr:`SupplyGraph.edges`; tables stay in pandas/Arrow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd
import rustworkx as rx

from flowbureau.errors import InputError
from flowbureau.scoring.features import cutoff_instant, month_start
from flowbureau.storage.engine import Engine

__all__ = [
    "EDGE_COLUMNS",
    "TRADE_TYPES",
    "SupplyGraph",
    "build_supply_graph",
    "graph_from_edges",
    "supply_edges_sql",
]

TRADE_TYPES: tuple[str, ...] = ("supplier_payment", "sales_receipt")
"""Transaction types that count as trade on the payer's side."""
EDGE_COLUMNS: tuple[str, ...] = (
    "source",
    "target",
    "amount_minor",
    "count",
    "first_day",
    "last_day",
    "source_outflow_share",
    "target_inflow_share",
)


def _timestamp(value: datetime) -> str:
    return f"TIMESTAMPTZ '{value.strftime('%Y-%m-%d %H:%M:%S')}+00:00'"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def supply_edges_sql(
    as_of: date, *, window_months: int = 12, timezone: str = "Asia/Shanghai", currency: str = "CNY"
) -> str:
    """The query of the edge table (columns :data:`EDGE_COLUMNS`) over ``transactions``."""
    if not isinstance(as_of, date) or isinstance(as_of, datetime):
        raise InputError(f"as_of must be a date, got {as_of!r}", field="as_of")
    if not 1 <= window_months <= 120:
        raise InputError(f"window must be 1-120 months, got {window_months}", field="window")
    start = cutoff_instant(month_start(as_of, window_months), timezone)
    end = cutoff_instant(as_of, timezone)
    types = ", ".join(_text(t) for t in TRADE_TYPES)
    local_day = f"CAST(t.booked_at AT TIME ZONE {_text(timezone)} AS DATE)"
    return f"""
WITH tx AS (
  SELECT t.enterprise_id AS owner, t.counterparty_id AS cp, t.tx_type, t.payment_link_id,
    CAST(coalesce(t.corrected_amount_minor, t.amount_minor) AS BIGINT) AS amount,
    {local_day} AS day
  FROM transactions t
  WHERE t.enterprise_id IS NOT NULL AND t.counterparty_id IS NOT NULL
    AND t.counterparty_id <> t.enterprise_id AND t.currency = {_text(currency)}
    AND NOT array_contains(t.quality_flags, 'returned_payment')
    AND t.booked_at >= {_timestamp(start)} AND t.booked_at < {_timestamp(end)}
),
flows AS (
  SELECT owner AS source, cp AS target, -amount AS amount, day FROM tx
  WHERE amount < 0 AND tx_type IN ({types})
  UNION ALL
  SELECT cp AS source, owner AS target, amount, day FROM tx
  WHERE amount > 0 AND tx_type = 'sales_receipt' AND payment_link_id IS NULL
),
edges AS (
  SELECT source, target, CAST(sum(amount) AS BIGINT) AS amount_minor,
    count(*) AS count, min(day) AS first_day, max(day) AS last_day
  FROM flows GROUP BY source, target
)
SELECT source, target, amount_minor, count, first_day, last_day,
  CAST(amount_minor AS DOUBLE) / sum(amount_minor) OVER (PARTITION BY source)
    AS source_outflow_share,
  CAST(amount_minor AS DOUBLE) / sum(amount_minor) OVER (PARTITION BY target)
    AS target_inflow_share
FROM edges
WHERE amount_minor > 0
ORDER BY source, target"""


@dataclass
class SupplyGraph:
    """Nodes, edges and the rustworkx graph of one as-of date and window."""

    as_of: date
    window_months: int
    nodes: pd.DataFrame
    """Index ``node`` (id); columns ``member`` (bool), ``label`` (a name seen),
    ``inflow_minor`` / ``outflow_minor`` (trade in the graph, int)."""
    edges: pd.DataFrame
    """One row per (source, target): :data:`EDGE_COLUMNS`."""
    graph: rx.PyDiGraph = field(repr=False)
    """Node payload = node id; edge payload = row number in :attr:`edges`."""

    def index_of(self, node: str) -> int:
        """The graph index of ``node`` (InputError when it is not in the graph)."""
        try:
            position = self.nodes.index.get_loc(node)
        except KeyError:
            position = None
        if not isinstance(position, int):
            raise InputError(
                f"{node} has no trade in the {self.window_months} months before {self.as_of}",
                field="enterprise_id",
            )
        return position

    def customers(self, node: str) -> pd.DataFrame:
        """Edges paying ``node`` (its customers), largest first."""
        rows = self.edges[self.edges["target"] == node]
        return rows.sort_values("amount_minor", ascending=False)

    def suppliers(self, node: str) -> pd.DataFrame:
        """Edges paid by ``node`` (its suppliers), largest first."""
        rows = self.edges[self.edges["source"] == node]
        return rows.sort_values("amount_minor", ascending=False)

    def neighbourhood(self, node: str, hops: int = 1) -> SupplyGraph:
        """The subgraph of nodes within ``hops`` of ``node`` (either direction)."""
        start = self.index_of(node)
        undirected = self.graph.to_undirected(multigraph=False)
        distances = rx.dijkstra_shortest_path_lengths(undirected, start, lambda _: 1.0)
        keep = {start} | {i for i, d in distances.items() if d <= hops}
        ids = set(self.nodes.index[sorted(keep)])
        edges = self.edges[self.edges["source"].isin(ids) & self.edges["target"].isin(ids)]
        return graph_from_edges(
            edges.reset_index(drop=True),
            self.nodes.loc[self.nodes.index.isin(ids)],
            self.as_of,
            self.window_months,
        )


def graph_from_edges(
    edges: pd.DataFrame, nodes: pd.DataFrame | None, as_of: date, window_months: int
) -> SupplyGraph:
    """Assemble a :class:`SupplyGraph` from an edge table (and optional node table)."""
    ids = pd.Index(pd.unique(np.concatenate([edges["source"], edges["target"]])), name="node")
    if nodes is not None:
        ids = ids.union(nodes.index, sort=False)
        frame = nodes.reindex(ids)
    else:
        frame = pd.DataFrame(index=ids)
    frame.index.name = "node"
    if "member" not in frame.columns:
        frame["member"] = False
    frame["member"] = frame["member"].fillna(False).astype(bool)
    if "label" not in frame.columns:
        frame["label"] = frame.index.to_series()
    frame["label"] = frame["label"].fillna(frame.index.to_series())
    frame["inflow_minor"] = edges.groupby("target")["amount_minor"].sum().reindex(ids).fillna(0)
    frame["outflow_minor"] = edges.groupby("source")["amount_minor"].sum().reindex(ids).fillna(0)
    frame[["inflow_minor", "outflow_minor"]] = frame[["inflow_minor", "outflow_minor"]].astype(
        "int64"
    )
    graph = rx.PyDiGraph()
    graph.add_nodes_from(list(ids))
    source = ids.get_indexer(edges["source"])
    target = ids.get_indexer(edges["target"])
    graph.extend_from_weighted_edge_list(
        list(zip(source.tolist(), target.tolist(), range(len(edges)), strict=True))
    )
    return SupplyGraph(as_of, window_months, frame, edges, graph)


def build_supply_graph(
    engine: Engine,
    as_of: date,
    *,
    window_months: int = 12,
    timezone: str = "Asia/Shanghai",
    currency: str = "CNY",
    members: Sequence[str] | None = None,
) -> SupplyGraph:
    """Build the supply graph from the warehouse connection ``engine`` (see the module rules).

    ``members``: ids that count as consortium members besides every ``enterprise_id`` that
    owns an account (e.g. the registry's enterprises).
    """
    edges = engine.query(
        supply_edges_sql(as_of, window_months=window_months, timezone=timezone, currency=currency)
    ).to_pandas()
    labels = engine.query(
        """SELECT enterprise_id AS node, min(owner_name) AS label, TRUE AS member
           FROM accounts WHERE enterprise_id IS NOT NULL GROUP BY enterprise_id
           UNION ALL
           SELECT counterparty_id, min(counterparty_name), FALSE FROM transactions
           WHERE counterparty_id IS NOT NULL AND counterparty_id LIKE 'ext:%'
           GROUP BY counterparty_id"""
    ).to_pandas()
    nodes = labels.drop_duplicates("node").set_index("node")
    if members:
        extra = pd.DataFrame({"member": True}, index=pd.Index(list(members), name="node"))
        nodes = nodes.combine_first(extra)
        nodes.loc[nodes.index.isin(list(members)), "member"] = True
    touched = set(edges["source"]) | set(edges["target"])
    nodes = nodes[nodes.index.isin(touched)]
    edges["first_day"] = pd.to_datetime(edges["first_day"]).dt.date
    edges["last_day"] = pd.to_datetime(edges["last_day"]).dt.date
    return graph_from_edges(edges, nodes, as_of, window_months)
