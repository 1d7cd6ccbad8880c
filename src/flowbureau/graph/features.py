"""Graph features of every enterprise as of a date, for credit scoring.

Rules:
- ``graph_features(as_of)`` returns one row per consortium member (index ``enterprise_id``,
  the credit code) with the numeric columns of :data:`GRAPH_FEATURES`, all computed from data
  before ``as_of`` only: the supply graph of the ``window_months`` before ``as_of``
  (:mod:`.supply`), the registry ties in force on ``as_of`` (:mod:`.social`), public records
  dated before ``as_of``. Nothing reads a default label.
- It needs a completed ``flowbureau graph build`` (counterparties resolved, registry kept);
  before that it raises :class:`~flowbureau.errors.NotFoundError`, which the scoring
  assembly reads as "no graph features".
- **Distress proxy** of a member (what its neighbours can see of it): the fall of its sales
  receipts, ``clip(1 - (last 3 months' sales / 3) / (months 4-12's sales / 9), 0, 1)``; 0
  without earlier sales. Neighbour distress features weight it by the trade shares.
- **DebtRank** (:mod:`.debtrank`) on the member exposure network: a supplier stands to lose
  what a customer paid it in the window (exposure customer -> supplier), a guarantor the
  guaranteed amount in force (borrower -> guarantor); capital = the node's sales receipts in
  the window, or its registered capital if larger (a firm absorbs a lost customer from its
  revenue and equity), at least one minor unit; value = default (exposure held). Features:
  the DebtRank of the member's own failure (``impact``, ``reach``), the mean distress it
  receives over every member's failure (``vulnerability``), the extra distress it ends with
  when every member starts at its distress proxy (``stress``) and the expected spread
  ``p x impact`` with ``p`` = the member's PD when ``pd`` is given, else its distress proxy.
- **Embeddings** (:mod:`.embeddings`): GraphSAGE on the supply graph (members and outsiders),
  node features = log trade inflow / outflow, log in / out degree, top customer / supplier
  share, member flag, distress proxy (standardised); ``graph_emb_k``. Embedding coordinates
  have no fixed meaning across dates (a retrained model may rotate them).

How scoring joins them: ``flowbureau.scoring.assembly.graph_source()`` wraps this function in a
``FrameSource`` (columns already start with ``graph_``); the assembly left-joins them onto the
cash-flow population by ``enterprise_id`` for the same as-of date; a member absent from the
graph (no trade in the window) gets NaN (the scorecard's Missing bin).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

import numpy as np
import pandas as pd

from flowbureau.errors import InputError, NotFoundError
from flowbureau.graph.debtrank import debtrank_impacts, exposure_network, run_debtrank
from flowbureau.graph.keynodes import analyse_key_nodes
from flowbureau.graph.social import build_social_graph, record_risk
from flowbureau.graph.store import GraphStore
from flowbureau.graph.supply import SupplyGraph, build_supply_graph
from flowbureau.scoring.features import cutoff_instant, month_start
from flowbureau.storage.engine import Engine
from flowbureau.storage.warehouse import Warehouse

__all__ = [
    "GRAPH_FEATURES",
    "distress_proxy",
    "graph_features",
    "member_exposures",
]

GRAPH_FEATURES: dict[str, str] = {
    "graph_customers": "Customers (members and outsiders) paying it in the window.",
    "graph_suppliers": "Suppliers it paid in the window.",
    "graph_top_customer_share": "Share of its trade inflow from its largest customer.",
    "graph_top_supplier_share": "Share of its trade outflow to its largest supplier.",
    "graph_customer_hhi": "Herfindahl index of its customers' shares of its sales.",
    "graph_supplier_hhi": "Herfindahl index of its suppliers' shares of its purchases.",
    "graph_member_sales_share": "Share of its trade inflow paid by consortium members.",
    "graph_pagerank": "PageRank in the amount-weighted supply graph.",
    "graph_betweenness": "Betweenness centrality in the supply graph (NaN above 20k nodes).",
    "graph_articulation": "1 when its loss splits the supply graph, else 0.",
    "graph_chain_dependency": "Largest dependency of its sales on one node along <= 3 links.",
    "graph_distress": "Its own distress proxy (fall of its sales receipts).",
    "graph_customer_distress": "Sales-share-weighted distress proxy of its member customers.",
    "graph_supplier_distress": "Purchase-share-weighted distress proxy of its member suppliers.",
    "graph_debtrank_impact": "DebtRank of its own failure in the member exposure network.",
    "graph_debtrank_reach": "Members whose distress reaches 0.01 when it fails.",
    "graph_debtrank_vulnerability": "Mean distress it receives over every member's failure.",
    "graph_debtrank_stress": "Extra distress it ends with when every member starts at its proxy.",
    "graph_expected_spread": "PD (or distress proxy) x DebtRank impact.",
    "graph_social_ties": "Registry ties to other enterprises.",
    "graph_social_pagerank": "PageRank in the social graph.",
    "graph_social_eigenvector": "Eigenvector centrality in the social graph (per component).",
    "graph_group_size": "Enterprises in its connected group of ties.",
    "graph_community_size": "Enterprises in its Louvain community.",
    "graph_record_risk": "log1p of its weighted public records of the last 24 months.",
    "graph_neighbour_record_risk": "Tie-weighted mean record risk of its neighbours.",
    "graph_reputation_risk": "Record risk propagated along ties (restart 0.5).",
}
"""Every fixed column and what it means (plus ``graph_emb_0`` .. ``graph_emb_{dim-1}``)."""


def _timestamp(value: datetime) -> str:
    return f"TIMESTAMPTZ '{value.strftime('%Y-%m-%d %H:%M:%S')}+00:00'"


def distress_proxy(engine: Engine, as_of: date, *, timezone: str = "Asia/Shanghai") -> pd.Series:
    """The distress proxy of every enterprise with sales receipts (module rules)."""
    cutoff = cutoff_instant(as_of, timezone)
    recent = cutoff_instant(month_start(as_of, 3), timezone)
    start = cutoff_instant(month_start(as_of, 12), timezone)
    frame = engine.query(
        f"""SELECT enterprise_id,
              sum(CASE WHEN booked_at >= {_timestamp(recent)} THEN amount_minor ELSE 0 END)
                AS recent,
              sum(CASE WHEN booked_at < {_timestamp(recent)} THEN amount_minor ELSE 0 END)
                AS earlier
            FROM transactions
            WHERE enterprise_id IS NOT NULL AND tx_type = 'sales_receipt' AND amount_minor > 0
              AND currency = 'CNY' AND booked_at >= {_timestamp(start)}
              AND booked_at < {_timestamp(cutoff)}
            GROUP BY enterprise_id"""
    ).to_pandas()
    earlier = frame["earlier"].to_numpy(dtype=float) / 9.0
    recent_rate = frame["recent"].to_numpy(dtype=float) / 3.0
    ratio = np.divide(recent_rate, earlier, out=np.ones(len(frame)), where=earlier > 0)
    values = np.clip(1.0 - ratio, 0.0, 1.0)
    return pd.Series(values, index=frame["enterprise_id"].astype(str), name="distress")


def member_exposures(
    supply: SupplyGraph, guarantees: pd.DataFrame | None, registered: pd.Series | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """The member exposure network's rows ``(source, target, amount)`` and capital (rules)."""
    members = set(supply.nodes.index[supply.nodes["member"]])
    edges = supply.edges
    trade = edges[edges["source"].isin(members) & edges["target"].isin(members)]
    rows = [trade[["source", "target"]].assign(amount=trade["amount_minor"].astype(float))]
    as_of = supply.as_of
    if guarantees is not None and len(guarantees):
        g = guarantees
        active = g["start_date"].map(lambda d: d is not None and d <= as_of) & g["end_date"].map(
            lambda d: d is None or pd.isna(d) or as_of < d
        )
        g = g[active]
        rows.append(
            pd.DataFrame(
                {
                    "source": g["borrower_credit_code"],
                    "target": g["guarantor_credit_code"],
                    "amount": g["amount_minor"].astype(float),
                }
            )
        )
    exposures = pd.concat(rows, ignore_index=True)
    nodes = sorted(members | set(exposures["source"]) | set(exposures["target"]))
    sales = supply.nodes["inflow_minor"].reindex(nodes).fillna(0).astype(float)
    buffer = sales.to_numpy(dtype=float)
    if registered is not None:
        buffer = np.maximum(buffer, registered.reindex(nodes).fillna(0).to_numpy(dtype=float))
    capital = pd.Series(np.maximum(buffer, 1.0), index=nodes)
    return exposures, capital


def _node_features(supply: SupplyGraph, measures: pd.DataFrame, distress: pd.Series) -> np.ndarray:
    nodes = supply.nodes
    columns = np.column_stack(
        [
            np.log1p(nodes["inflow_minor"].to_numpy(dtype=float)),
            np.log1p(nodes["outflow_minor"].to_numpy(dtype=float)),
            np.log1p(measures["customers"].to_numpy(dtype=float)),
            np.log1p(measures["suppliers"].to_numpy(dtype=float)),
            measures["top_customer_share"].fillna(0).to_numpy(dtype=float),
            measures["top_supplier_share"].fillna(0).to_numpy(dtype=float),
            nodes["member"].to_numpy(dtype=float),
            distress.reindex(nodes.index).fillna(0).to_numpy(dtype=float),
        ]
    )
    scale = columns.std(axis=0)
    standard: np.ndarray = (columns - columns.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    return standard


def graph_features(
    as_of: date,
    *,
    warehouse: Warehouse | None = None,
    store: GraphStore | None = None,
    pd_by_enterprise: Mapping[str, float] | None = None,
    window_months: int = 12,
    embedding_dim: int = 8,
    epochs: int = 50,
    seed: int = 0,
    timezone: str | None = None,
) -> pd.DataFrame:
    """Graph features as of ``as_of`` (see the module rules and :data:`GRAPH_FEATURES`)."""
    if not isinstance(as_of, date) or isinstance(as_of, datetime):
        raise InputError(f"as_of must be a date, got {as_of!r}", field="as_of")
    from flowbureau.config import get_settings
    from flowbureau.graph.embeddings import train_embeddings

    zone = timezone or get_settings().timezone
    kept = store or GraphStore.default()
    if not kept.exists():
        raise NotFoundError("no graph built yet: run `flowbureau graph build`")
    registry = kept.registry()
    with (warehouse or Warehouse.default()).connect() as engine:
        supply = build_supply_graph(
            engine,
            as_of,
            window_months=window_months,
            timezone=zone,
            members=list(registry.enterprises["credit_code"]),
        )
        distress = distress_proxy(engine, as_of, timezone=zone)
    members = supply.nodes.index[supply.nodes["member"]]
    out = pd.DataFrame(index=pd.Index(members, name="enterprise_id"))
    key = analyse_key_nodes(supply)
    m = key.nodes.reindex(members)
    out["graph_customers"] = m["customers"]
    out["graph_suppliers"] = m["suppliers"]
    out["graph_top_customer_share"] = m["top_customer_share"]
    out["graph_top_supplier_share"] = m["top_supplier_share"]
    out["graph_customer_hhi"] = m["customer_hhi"]
    out["graph_supplier_hhi"] = m["supplier_hhi"]
    edges = supply.edges
    member_set = set(members)
    from_members = edges[edges["source"].isin(member_set)].groupby("target")["target_inflow_share"]
    out["graph_member_sales_share"] = from_members.sum().reindex(members).fillna(0.0)
    out["graph_pagerank"] = m["pagerank"]
    out["graph_betweenness"] = m["betweenness"]
    out["graph_articulation"] = m["articulation"].astype(float)
    out["graph_chain_dependency"] = m["chain_dependency"]
    own = distress.reindex(supply.nodes.index).fillna(0.0)
    out["graph_distress"] = own.reindex(members)
    weighted = edges.assign(
        customer_distress=edges["target_inflow_share"] * own.reindex(edges["source"]).to_numpy(),
        supplier_distress=edges["source_outflow_share"] * own.reindex(edges["target"]).to_numpy(),
    )
    member_customers = weighted[weighted["source"].isin(member_set)]
    member_suppliers = weighted[weighted["target"].isin(member_set)]
    out["graph_customer_distress"] = (
        member_customers.groupby("target")["customer_distress"].sum().reindex(members).fillna(0.0)
    )
    out["graph_supplier_distress"] = (
        member_suppliers.groupby("source")["supplier_distress"].sum().reindex(members).fillna(0.0)
    )

    registered = registry.enterprises.set_index("credit_code")["registered_capital_minor"]
    exposures, capital = member_exposures(supply, registry.guarantees, registered)
    network = exposure_network(exposures, capital)
    impacts = debtrank_impacts(network, list(members), reach_threshold=0.01)
    out["graph_debtrank_impact"] = impacts["impact"]
    out["graph_debtrank_reach"] = impacts["reach"].astype(float)
    out["graph_debtrank_vulnerability"] = impacts["vulnerability"]
    start = own.reindex(network.nodes).fillna(0.0)
    stress = run_debtrank(network, start[start > 0], paths=0)
    out["graph_debtrank_stress"] = (stress.distress - stress.initial).reindex(members)
    if pd_by_enterprise is not None:
        probability = pd.Series(pd_by_enterprise, dtype=float).reindex(members)
    else:
        probability = own.reindex(members)
    out["graph_expected_spread"] = probability * out["graph_debtrank_impact"]

    social = build_social_graph(registry, as_of)
    records = record_risk(kept.records(), as_of)
    s = social.measures(records, seed=seed).reindex(members)
    out["graph_social_ties"] = s["ties"].astype(float)
    out["graph_social_pagerank"] = s["pagerank"]
    out["graph_social_eigenvector"] = s["eigenvector"]
    out["graph_group_size"] = s["group_size"].astype(float)
    out["graph_community_size"] = s["community_size"].astype(float)
    out["graph_record_risk"] = s["record_risk"]
    out["graph_neighbour_record_risk"] = s["neighbour_record_risk"]
    out["graph_reputation_risk"] = s["reputation_risk"]

    if embedding_dim > 0 and len(supply.nodes) > 1:
        positions = np.vstack(
            [
                supply.nodes.index.get_indexer(pd.Index(edges["source"])),
                supply.nodes.index.get_indexer(pd.Index(edges["target"])),
            ]
        )
        trained = train_embeddings(
            positions,
            _node_features(supply, key.nodes, own),
            dim=embedding_dim,
            epochs=epochs,
            seed=seed,
        )
        rows = supply.nodes.index.get_indexer(members)
        for k in range(embedding_dim):
            out[f"graph_emb_{k}"] = trained.embeddings[rows, k].astype(float)
    return out.astype("float64")
