"""The social graph: enterprises tied by people, ownership, guarantees, addresses and phones.

Rules:
- **Ties as of a date D** between two enterprises (undirected, weight = strength):
  a shared person (by person id: shareholder or executive of both, the legal representative
  being an executive; names alone are never joined, namesakes exist; 1.0), a
  shareholding of one in the other held since before D (share / 100, at least 0.2), a
  guarantee of one for the other in force on D (start <= D < end; 1.0), the same registered
  address (0.5) or phone (0.5) after normalisation (NFKC, no spaces or dashes). Parallel ties
  add up. Shareholdings without a ``since`` date count from the start.
- **Influence**: PageRank (rustworkx; damping 0.85, tie weights) and eigenvector centrality
  (power iteration on the weighted adjacency, scaled to 1 within each connected component;
  0 for isolated nodes).
- **Groups**: connected components over ties (``group_id`` = the smallest credit code of the
  component, ``group_size``), and communities by the Louvain method of networkx (BSD;
  seeded, resolution 1) within them (``community_size``).
- **Reputation** from public records before D over the last 24 months: per enterprise
  ``record_risk`` = penalties (warning 0.5, fine 1, suspension / confiscation / revocation 2)
  + failed inspections (1) + judgments as defendant (1) + online loans first overdue (1), then
  ``log1p``. Propagated along ties with restart: ``r = (1 - a) r0 + a P r`` (``P`` the
  row-normalised tie matrix, ``a = 0.5``), solved by iteration; ``neighbour_record_risk`` is
  ``P r0`` (the tie-weighted mean of the neighbours' own record risk).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import rustworkx as rx
import scipy.sparse as sp

from flowbureau.graph.keynodes import weighted_pagerank
from flowbureau.graph.registry import Registry
from flowbureau.scoring.features import month_start

__all__ = ["SEVERITY_WEIGHTS", "SocialGraph", "build_social_graph", "record_risk"]

SEVERITY_WEIGHTS: dict[str, float] = {
    "warning": 0.5,
    "fine": 1.0,
    "suspension": 2.0,
    "confiscation": 2.0,
    "revocation": 2.0,
}
"""Weight of an administrative penalty by severity in the record risk."""
_CLEAN = re.compile(r"[\s\-－—]+")


@dataclass
class SocialGraph:
    """Enterprise ties as of a date, with their kinds."""

    as_of: date
    nodes: pd.Index
    ties: pd.DataFrame
    """One row per tie: ``a``, ``b`` (credit codes), ``kind``, ``weight``."""
    graph: rx.PyGraph = field(repr=False)
    """Node payload = credit code; edge payload = summed weight of the pair's ties."""

    def adjacency(self) -> sp.csr_matrix:
        """Symmetric weighted adjacency in :attr:`nodes` order."""
        n = len(self.nodes)
        a = self.nodes.get_indexer(pd.Index(self.ties["a"]))
        b = self.nodes.get_indexer(pd.Index(self.ties["b"]))
        w = self.ties["weight"].to_numpy(dtype=float)
        matrix = sp.coo_matrix((np.r_[w, w], (np.r_[a, b], np.r_[b, a])), shape=(n, n))
        return matrix.tocsr()

    def measures(self, records: pd.Series | None = None, *, seed: int = 0) -> pd.DataFrame:
        """Influence, groups and reputation per enterprise (columns in the module rules)."""
        import networkx as nx  # type: ignore[import-untyped]

        n = len(self.nodes)
        out = pd.DataFrame(index=self.nodes.copy())
        out.index.name = "enterprise_id"
        adjacency = self.adjacency()
        degree = np.asarray((adjacency > 0).sum(axis=1)).ravel()
        out["ties"] = degree
        out["tie_weight"] = np.asarray(adjacency.sum(axis=1)).ravel()
        directed = rx.PyDiGraph()
        directed.add_nodes_from(list(self.nodes))
        coo = adjacency.tocoo()
        directed.extend_from_weighted_edge_list(
            list(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True))
        )
        rank = weighted_pagerank(directed)
        out["pagerank"] = [float(rank[i]) if i in rank else 0.0 for i in range(n)]
        out["eigenvector"] = _eigenvector(adjacency)
        components = rx.connected_components(self.graph)
        group_id = np.empty(n, dtype=object)
        group_size = np.zeros(n, dtype=np.int64)
        community_size = np.ones(n, dtype=np.int64)
        for component in components:
            members = sorted(component)
            name = min(self.nodes[members])
            group_id[members] = name
            group_size[members] = len(members)
            if len(members) > 2:
                sub = nx.Graph()
                sub.add_nodes_from(members)
                for u, v, w in self.graph.subgraph(members).weighted_edge_list():
                    sub.add_edge(members[u], members[v], weight=w)
                for community in nx.community.louvain_communities(sub, weight="weight", seed=seed):
                    community_size[list(community)] = len(community)
            else:
                community_size[members] = len(members)
        out["group_id"] = group_id
        out["group_size"] = group_size
        out["community_size"] = community_size
        own = (
            records.reindex(self.nodes).fillna(0.0).to_numpy(dtype=float)
            if records is not None
            else np.zeros(n)
        )
        strength = np.asarray(adjacency.sum(axis=1)).ravel()
        inverse = np.divide(1.0, strength, out=np.zeros(n), where=strength > 0)
        transition = sp.diags(inverse) @ adjacency
        out["record_risk"] = own
        out["neighbour_record_risk"] = transition @ own
        reputation = own.copy()
        for _ in range(100):
            updated = 0.5 * own + 0.5 * (transition @ reputation)
            if np.max(np.abs(updated - reputation), initial=0.0) < 1e-10:
                reputation = updated
                break
            reputation = updated
        out["reputation_risk"] = reputation
        return out


def _eigenvector(adjacency: sp.csr_matrix, iterations: int = 500) -> np.ndarray:
    """Eigenvector centrality by power iteration on ``A + I`` (converges on bipartite parts
    too), scaled to a maximum of 1 *within each connected component* (components do not
    compete); 0 for isolated nodes."""
    from scipy.sparse.csgraph import connected_components

    n = adjacency.shape[0]
    if n == 0 or adjacency.nnz == 0:
        return np.zeros(n)
    _, labels = connected_components(adjacency, directed=False)
    shifted = adjacency + sp.identity(n, format="csr")
    x = np.ones(n)
    for _ in range(iterations):
        y = shifted @ x
        peak = np.zeros(labels.max() + 1)
        np.maximum.at(peak, labels, y)
        y = y / peak[labels]
        if np.max(np.abs(y - x)) < 1e-10:
            x = y
            break
        x = y
    isolated = np.asarray(adjacency.sum(axis=1)).ravel() == 0
    x[isolated] = 0.0
    return x


def _clean(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = _CLEAN.sub("", unicodedata.normalize("NFKC", str(value))).casefold()
    return text or None


def _pairs_sharing(frame: pd.DataFrame, key: str, item: str) -> pd.DataFrame:
    """Pairs (a < b) of enterprises sharing a value of ``item`` (``key`` = their code)."""
    data = frame[[key, item]].dropna().drop_duplicates()
    joined = data.merge(data, on=item, suffixes=("_a", "_b"))
    joined = joined[joined[f"{key}_a"] < joined[f"{key}_b"]]
    return pd.DataFrame({"a": joined[f"{key}_a"], "b": joined[f"{key}_b"]})


def build_social_graph(registry: Registry, as_of: date) -> SocialGraph:
    """Ties among the registry's enterprises as of ``as_of`` (see the module rules)."""
    ent = registry.enterprises
    nodes = pd.Index(sorted(ent["credit_code"]), name="enterprise_id")
    ties: list[pd.DataFrame] = []

    people = [
        registry.executives.rename(columns={"person_id": "person"})[["credit_code", "person"]]
    ]
    holders = registry.shareholders
    since_ok = holders["since"].map(lambda d: d is None or pd.isna(d) or d < as_of)
    holders = holders[since_ok]
    persons = holders[holders["shareholder_type"] == "person"]
    people.append(persons.rename(columns={"shareholder_id": "person"})[["credit_code", "person"]])
    shared = _pairs_sharing(pd.concat(people, ignore_index=True), "credit_code", "person")
    ties.append(shared.assign(kind="shared_person", weight=1.0))

    owners = holders[holders["shareholder_type"] == "enterprise"]
    owned = pd.DataFrame(
        {
            "a": owners["shareholder_id"].str.upper(),
            "b": owners["credit_code"],
            "kind": "shareholding",
            "weight": np.maximum(owners["share_pct"].astype(float) / 100.0, 0.2),
        }
    )
    ties.append(owned)

    g = registry.guarantees
    if len(g):
        active = g["start_date"].map(lambda d: d <= as_of) & g["end_date"].map(
            lambda d: d is None or pd.isna(d) or as_of < d
        )
        g = g[active]
        ties.append(
            pd.DataFrame(
                {
                    "a": g["guarantor_credit_code"],
                    "b": g["borrower_credit_code"],
                    "kind": "guarantee",
                    "weight": 1.0,
                }
            )
        )
    for column in ("address", "phone"):
        if column in ent.columns:
            cleaned = ent.assign(**{column: ent[column].map(_clean)})
            pairs = _pairs_sharing(cleaned, "credit_code", column)
            ties.append(pairs.assign(kind=f"shared_{column}", weight=0.5))
    frame = pd.concat(ties, ignore_index=True)
    frame = frame[frame["a"].isin(nodes) & frame["b"].isin(nodes) & (frame["a"] != frame["b"])]
    frame = frame.reset_index(drop=True)
    graph = rx.PyGraph()
    graph.add_nodes_from(list(nodes))
    if len(frame):
        a = np.minimum(
            nodes.get_indexer(pd.Index(frame["a"])), nodes.get_indexer(pd.Index(frame["b"]))
        )
        b = np.maximum(
            nodes.get_indexer(pd.Index(frame["a"])), nodes.get_indexer(pd.Index(frame["b"]))
        )
        summed = (
            pd.DataFrame({"a": a, "b": b, "w": frame["weight"].to_numpy(dtype=float)})
            .groupby(["a", "b"], sort=True)["w"]
            .sum()
        )
        ends = summed.index.to_frame(index=False).to_numpy(dtype=np.int64)
        weights = summed.to_numpy(dtype=float).tolist()
        graph.extend_from_weighted_edge_list(
            [(int(x), int(y), w) for x, y, w in zip(ends[:, 0], ends[:, 1], weights, strict=True)]
        )
    return SocialGraph(as_of, nodes, frame, graph)


def record_risk(records: Mapping[str, pa.Table], as_of: date) -> pd.Series:
    """Each enterprise's own public-record risk before ``as_of`` (24 months; module rules)."""
    start = month_start(as_of, 24)
    totals: dict[str, float] = {}

    def add(codes: pd.Series, weights: pd.Series | float) -> None:
        for code, weight in (
            pd.DataFrame({"c": codes, "w": weights}).groupby("c")["w"].sum().items()
        ):
            totals[str(code)] = totals.get(str(code), 0.0) + float(weight)

    def window(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        days = frame[column]
        keep = days.map(lambda d: d is not None and not pd.isna(d) and start <= d < as_of)
        return frame[keep]

    if "penalties" in records:
        p = window(records["penalties"].to_pandas(), "date")
        add(p["credit_code"], p["severity"].map(SEVERITY_WEIGHTS).fillna(1.0))
    if "inspections" in records:
        i = window(records["inspections"].to_pandas(), "date")
        i = i[i["result"] == "fail"]
        add(i["credit_code"], 1.0)
    if "judgments" in records:
        j = window(records["judgments"].to_pandas(), "date")
        j = j[j["role"] == "defendant"]
        add(j["credit_code"], 1.0)
    if "online_lending" in records:
        o = records["online_lending"].to_pandas()
        if "first_overdue_on" in o.columns:
            o = window(o, "first_overdue_on")
            add(o["credit_code"], 1.0)
    series = pd.Series(totals, dtype=float).sort_index()
    return pd.Series(np.log1p(series.to_numpy()), index=series.index, name="record_risk")
