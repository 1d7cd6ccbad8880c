"""Supply-chain and social graph: counterparty resolution, graphs, key nodes, DebtRank,
embeddings and the graph features of credit scoring (``docs/graph.md``).

Heavy libraries (PyTorch, splink, matplotlib, plotly) are imported inside the functions that
use them, so importing this package stays cheap.
"""

from flowbureau.graph.debtrank import (
    DebtRankResult,
    ExposureNetwork,
    PropagationPath,
    debtrank,
    debtrank_impacts,
    exposure_network,
    run_debtrank,
)
from flowbureau.graph.features import GRAPH_FEATURES, graph_features
from flowbureau.graph.keynodes import KeyNodeReport, analyse_key_nodes
from flowbureau.graph.registry import Registry, load_registry
from flowbureau.graph.resolution import ResolutionReport, resolve_counterparties
from flowbureau.graph.shock import ShockReport, shock
from flowbureau.graph.social import SocialGraph, build_social_graph
from flowbureau.graph.store import GraphStore, build_graph
from flowbureau.graph.supply import SupplyGraph, build_supply_graph

__all__ = [
    "GRAPH_FEATURES",
    "DebtRankResult",
    "ExposureNetwork",
    "GraphStore",
    "KeyNodeReport",
    "PropagationPath",
    "Registry",
    "ResolutionReport",
    "ShockReport",
    "SocialGraph",
    "SupplyGraph",
    "analyse_key_nodes",
    "build_graph",
    "build_social_graph",
    "build_supply_graph",
    "debtrank",
    "debtrank_impacts",
    "exposure_network",
    "graph_features",
    "load_registry",
    "resolve_counterparties",
    "run_debtrank",
    "shock",
]
