"""Key enterprises and fragile links of the supply chain.

Rules (edges point payer -> payee, :mod:`flowbureau.graph.supply`):
- **PageRank** over the amount-weighted graph (rustworkx, damping 0.85): money flows towards
  important suppliers. Iterated until the vector's L1 change is below
  :data:`PAGERANK_TOLERANCE` (rustworkx, like networkx, compares that change with
  ``n * tol``; its default ``tol`` stopped a 1M-node graph after a couple of iterations).
  **Betweenness** (rustworkx, normalised, unweighted) when the graph has
  at most ``betweenness_limit`` nodes (else NaN: it is O(nodes x edges)).
- **Articulation points** and **bridges** of the undirected graph: a node / link whose loss
  splits the chain into more pieces.
- **Dependencies**: ``top_customer_share`` = the largest ``target_inflow_share`` of a node's
  in-edges (its sales from one customer); ``top_supplier_share`` = the largest
  ``source_outflow_share`` of its out-edges. ``single_customer`` / ``single_source`` when that
  share is at least ``dependency_share`` (0.5). HHIs are over the same shares.
- **Chain concentration**: with ``D[x, c]`` = share of x's sales paid by c, the dependency of x
  on c along chains of up to three links is ``(D + D^2 + D^3)[x, c]`` (what x loses when c's
  purchases stop and that loss passes on unchanged); ``chain_dependency`` is its largest
  value over c != x, ``chain_dependency_on`` that c.
- **Fragile links**: bridges, and links carrying at least ``dependency_share`` of the payee's
  trade inflow or of the payer's trade outflow; each says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import rustworkx as rx
import scipy.sparse as sp

from flowbureau.graph.supply import SupplyGraph

__all__ = [
    "PAGERANK_TOLERANCE",
    "KeyNodeReport",
    "analyse_key_nodes",
    "chain_dependency",
    "weighted_pagerank",
]

PAGERANK_TOLERANCE = 1e-6
"""PageRank stops once the L1 change of the whole vector (summing to 1) is below this."""


def weighted_pagerank(graph: rx.PyDiGraph) -> Mapping[int, float]:
    """Weight-weighted PageRank (damping 0.85) of node positions, converged to
    :data:`PAGERANK_TOLERANCE`; empty for an empty graph."""
    n = graph.num_nodes()
    if not n:
        return {}
    rank: Mapping[int, float] = rx.pagerank(
        graph, alpha=0.85, weight_fn=float, tol=PAGERANK_TOLERANCE / n, max_iter=1000
    )
    return rank


@dataclass(frozen=True)
class KeyNodeReport:
    """Per-node measures and the fragile links of one supply graph."""

    nodes: pd.DataFrame
    links: pd.DataFrame

    def key_enterprises(self, top: int = 20, *, members_only: bool = True) -> pd.DataFrame:
        """The ``top`` nodes by PageRank (articulation points first among equals)."""
        frame = self.nodes[self.nodes["member"]] if members_only else self.nodes
        return frame.sort_values(["pagerank", "articulation"], ascending=False).head(top)

    def as_dict(self, top: int = 20) -> dict[str, Any]:
        """JSON-safe summary: key enterprises and fragile links (largest first)."""
        keys = self.key_enterprises(top).reset_index()
        links = self.links.sort_values("amount_minor", ascending=False).head(top)
        return {
            "key_enterprises": _records(keys),
            "fragile_links": _records(links),
            "articulation_points": int(self.nodes["articulation"].sum()),
            "single_customer": int(self.nodes["single_customer"].sum()),
            "single_source": int(self.nodes["single_source"].sum()),
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for row in frame.to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for key, raw in row.items():
            value = raw.item() if isinstance(raw, np.generic) else raw
            if isinstance(value, float) and np.isnan(value):
                value = None
            clean[str(key)] = value.isoformat() if hasattr(value, "isoformat") else value
        out.append(clean)
    return out


def chain_dependency(supply: SupplyGraph, hops: int = 3) -> pd.DataFrame:
    """``chain_dependency`` and ``chain_dependency_on`` per node (see the module rules)."""
    nodes = supply.nodes.index
    n = len(nodes)
    edges = supply.edges
    payee = nodes.get_indexer(pd.Index(edges["target"]))
    payer = nodes.get_indexer(pd.Index(edges["source"]))
    share = edges["target_inflow_share"].to_numpy(dtype=float)
    direct = sp.csr_matrix((share, (payee, payer)), shape=(n, n))
    total = direct.copy()
    power = direct
    for _ in range(hops - 1):
        power = power @ direct
        total = total + power
    total = total.tolil()
    total.setdiag(0.0)
    total = total.tocsr()
    best = np.zeros(n)
    on = np.full(n, None, dtype=object)
    for row in range(n):
        start, end = total.indptr[row], total.indptr[row + 1]
        if end > start:
            values = total.data[start:end]
            k = int(np.argmax(values))
            best[row] = values[k]
            on[row] = nodes[total.indices[start + k]] if values[k] > 0 else None
    return pd.DataFrame({"chain_dependency": best, "chain_dependency_on": on}, index=nodes)


def analyse_key_nodes(
    supply: SupplyGraph, *, dependency_share: float = 0.5, betweenness_limit: int = 20_000
) -> KeyNodeReport:
    """Centralities, cut points, dependencies and fragile links (see the module rules)."""
    nodes = supply.nodes.index
    n = len(nodes)
    edges = supply.edges
    graph = supply.graph
    out = supply.nodes[["member", "label"]].copy()
    amounts = edges["amount_minor"].to_numpy(dtype=float)
    weighted = rx.PyDiGraph()
    weighted.add_nodes_from(list(nodes))
    source = nodes.get_indexer(pd.Index(edges["source"]))
    target = nodes.get_indexer(pd.Index(edges["target"]))
    weighted.extend_from_weighted_edge_list(
        list(zip(source.tolist(), target.tolist(), amounts.tolist(), strict=True))
    )
    rank = weighted_pagerank(weighted)
    out["pagerank"] = [float(rank[i]) if i in rank else 0.0 for i in range(n)]
    if 0 < n <= betweenness_limit:
        between = rx.digraph_betweenness_centrality(graph, normalized=True)
        out["betweenness"] = [float(between[i]) for i in range(n)]
    else:
        out["betweenness"] = np.nan
    undirected = graph.to_undirected(multigraph=False)
    cut = rx.articulation_points(undirected)
    out["articulation"] = [i in cut for i in range(n)]
    out["customers"] = edges.groupby("target").size().reindex(nodes).fillna(0).astype(int)
    out["suppliers"] = edges.groupby("source").size().reindex(nodes).fillna(0).astype(int)
    inflow = edges.groupby("target")["target_inflow_share"]
    outflow = edges.groupby("source")["source_outflow_share"]
    out["top_customer_share"] = inflow.max().reindex(nodes)
    out["top_supplier_share"] = outflow.max().reindex(nodes)
    out["customer_hhi"] = inflow.apply(lambda s: float((s**2).sum())).reindex(nodes)
    out["supplier_hhi"] = outflow.apply(lambda s: float((s**2).sum())).reindex(nodes)
    out["single_customer"] = out["top_customer_share"].fillna(0) >= dependency_share
    out["single_source"] = out["top_supplier_share"].fillna(0) >= dependency_share
    out = out.join(chain_dependency(supply))

    bridges: set[tuple[int, int]] = set()
    for edge in rx.bridges(undirected):
        ends = sorted(int(v) for v in edge)
        bridges.add((ends[0], ends[1]))
    low, high = np.minimum(source, target), np.maximum(source, target)
    is_bridge = np.array([(int(a), int(b)) in bridges for a, b in zip(low, high, strict=True)])
    links = edges.copy()
    links["bridge"] = is_bridge if len(edges) else np.zeros(0, dtype=bool)
    customer_dep = links["target_inflow_share"] >= dependency_share
    supplier_dep = links["source_outflow_share"] >= dependency_share
    reasons = []
    for b, c, s in zip(links["bridge"], customer_dep, supplier_dep, strict=True):
        why = []
        if b:
            why.append("bridge")
        if c:
            why.append("payee depends on this customer")
        if s:
            why.append("payer depends on this supplier")
        reasons.append("; ".join(why))
    links["reason"] = reasons
    links = links[links["reason"] != ""].reset_index(drop=True)
    return KeyNodeReport(out, links)
