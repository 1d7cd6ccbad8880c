"""Supply graph assembly, key nodes, fragile links, the social graph and GraphSAGE."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from flowbureau.graph.embeddings import train_embeddings
from flowbureau.graph.keynodes import analyse_key_nodes, chain_dependency
from flowbureau.graph.registry import Registry, load_registry
from flowbureau.graph.social import build_social_graph, record_risk
from flowbureau.graph.supply import graph_from_edges

DAY = date(2025, 1, 1)


def _edges(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["source", "target", "amount_minor"])
    frame["count"] = 1
    frame["first_day"] = frame["last_day"] = date(2024, 6, 1)
    frame["source_outflow_share"] = frame["amount_minor"] / frame.groupby("source")[
        "amount_minor"
    ].transform("sum")
    frame["target_inflow_share"] = frame["amount_minor"] / frame.groupby("target")[
        "amount_minor"
    ].transform("sum")
    return frame


# money flows customer -> supplier: C1 and C2 buy from M; M buys from S; S buys from T and U
CHAIN = _edges(
    [("C1", "M", 300), ("C2", "M", 100), ("M", "S", 200), ("S", "T", 50), ("S", "U", 150)]
)


def test_supply_graph_tables() -> None:
    graph = graph_from_edges(CHAIN, None, DAY, 12)
    assert graph.graph.num_nodes() == 6
    assert graph.graph.num_edges() == 5
    assert graph.nodes.loc["M", "inflow_minor"] == 400
    assert graph.nodes.loc["M", "outflow_minor"] == 200
    assert list(graph.customers("M")["source"]) == ["C1", "C2"]
    assert list(graph.suppliers("S")["target"]) == ["U", "T"]
    sub = graph.neighbourhood("M", 1)
    assert set(sub.nodes.index) == {"C1", "C2", "M", "S"}


def test_key_nodes_cut_points_dependencies_and_chains() -> None:
    report = analyse_key_nodes(graph_from_edges(CHAIN, None, DAY, 12))
    nodes = report.nodes
    assert set(nodes.index[nodes["articulation"]]) == {"M", "S"}
    # M's sales: 75 % from C1 -> single-customer dependency; S buys 75 % from U
    assert nodes.loc["M", "top_customer_share"] == pytest.approx(0.75)
    assert bool(nodes.loc["M", "single_customer"])
    assert bool(nodes.loc["S", "single_source"])
    assert nodes.loc["M", "customer_hhi"] == pytest.approx(0.75**2 + 0.25**2)
    # T's sales all come from S, S's all from M, M's 75 % from C1: along the chain
    # D[T,S] = 1, (D^2)[T,M] = 1, (D^3)[T,C1] = 0.75
    chains = chain_dependency(graph_from_edges(CHAIN, None, DAY, 12))
    assert chains.loc["T", "chain_dependency"] == pytest.approx(1.0)
    assert chains.loc["U", "chain_dependency"] == pytest.approx(1.0)
    assert chains.loc["M", "chain_dependency"] == pytest.approx(0.75)
    assert chains.loc["M", "chain_dependency_on"] == "C1"
    # every link of a tree is a bridge
    assert report.links["bridge"].all()
    assert len(report.links) == 5
    # money flows to the end of the chain: U (largest supplier of S) outranks C2
    assert nodes.loc["U", "pagerank"] > nodes.loc["C2", "pagerank"]


def test_no_bridge_in_a_cycle() -> None:
    cycle = _edges([("A", "B", 10), ("B", "C", 10), ("C", "A", 10), ("A", "D", 1)])
    report = analyse_key_nodes(graph_from_edges(cycle, None, DAY, 12))
    bridges = report.links[report.links["bridge"]]
    assert list(zip(bridges["source"], bridges["target"], strict=True)) == [("A", "D")]
    assert set(report.nodes.index[report.nodes["articulation"]]) == {"A"}


def _registry() -> Registry:
    codes = ["E1", "E2", "E3", "E4", "E5"]
    return Registry(
        enterprises=pd.DataFrame(
            {
                "credit_code": codes,
                "name": [f"n{c}" for c in codes],
                "address": ["路1号", "路 1 号", "路2号", "路3号", "路4号"],
                "phone": ["1", "2", "3", "4", "5"],
                "registered_capital_minor": [1] * 5,
            }
        ),
        shareholders=pd.DataFrame(
            {
                "credit_code": ["E3", "E4", "E5"],
                "shareholder_id": ["P1", "P1", "E4"],
                "shareholder_type": ["person", "person", "enterprise"],
                "share_pct": [100.0, 50.0, 60.0],
                "since": [date(2020, 1, 1), date(2020, 1, 1), date(2026, 1, 1)],
            }
        ),
        executives=pd.DataFrame(columns=["credit_code", "person_id", "role"]),
        guarantees=pd.DataFrame(
            {
                "guarantee_id": ["G1", "G2"],
                "guarantor_credit_code": ["E1", "E4"],
                "borrower_credit_code": ["E5", "E1"],
                "amount_minor": [10, 10],
                "start_date": [date(2024, 1, 1), date(2021, 1, 1)],
                "end_date": [date(2027, 1, 1), date(2024, 1, 1)],
            }
        ),
    )


def test_social_ties_as_of_a_date() -> None:
    social = build_social_graph(_registry(), DAY)
    kinds = {(a, b, k) for a, b, k in social.ties[["a", "b", "kind"]].itertuples(index=False)}
    # E1/E2 share an address (spaces ignored); E3/E4 share person P1; E1 guarantees E5 (in
    # force); E4's shareholding in E5 starts after D and E4's guarantee has ended: no ties
    assert kinds == {
        ("E1", "E2", "shared_address"),
        ("E3", "E4", "shared_person"),
        ("E1", "E5", "guarantee"),
    }
    later = build_social_graph(_registry(), date(2026, 6, 1))
    assert ("E4", "E5", "shareholding") in {
        (a, b, k) for a, b, k in later.ties[["a", "b", "kind"]].itertuples(index=False)
    }


def test_social_measures_groups_and_reputation() -> None:
    social = build_social_graph(_registry(), DAY)
    records = pd.Series({"E5": 2.0})
    m = social.measures(records)
    assert m.loc["E1", "group_size"] == 3  # E1, E2, E5
    assert m.loc["E3", "group_size"] == 2
    assert m.loc["E1", "group_id"] == "E1"
    # E1's neighbours: E2 (0.5) and E5 (1.0): weighted mean of their own risk = 2 / 1.5 * 1
    assert m.loc["E1", "neighbour_record_risk"] == pytest.approx(2.0 / 1.5)
    assert m.loc["E3", "reputation_risk"] == 0.0
    # r = 0.5 r0 + 0.5 P r: E5's reputation stays above its neighbours', E2 gets some via E1
    assert (
        m.loc["E5", "reputation_risk"]
        > m.loc["E1", "reputation_risk"]
        > m.loc["E2", "reputation_risk"]
        > 0
    )
    assert m.loc["E1", "pagerank"] > m.loc["E2", "pagerank"]
    assert m.loc["E1", "eigenvector"] == pytest.approx(1.0)


def test_record_risk_counts_only_the_window(tmp_path: object) -> None:
    import pyarrow as pa

    penalties = pa.table(
        {
            "credit_code": ["E1", "E1", "E2"],
            "date": [date(2024, 5, 1), date(2025, 2, 1), date(2020, 1, 1)],
            "severity": ["fine", "fine", "suspension"],
        }
    )
    risk = record_risk({"penalties": penalties}, DAY)
    assert risk.to_dict() == pytest.approx({"E1": np.log1p(1.0)})


def test_registry_loader_names_file_line_and_field(tmp_path: object) -> None:
    from pathlib import Path

    from flowbureau.errors import InputError

    root = Path(str(tmp_path))
    (root / "enterprises.csv").write_text(
        "credit_code,name\n91320111MAHKB52W4E,南京振源水产有限公司\n", "utf-8"
    )
    (root / "guarantees.csv").write_text(
        "guarantee_id,guarantor_credit_code,borrower_credit_code,amount_minor,start_date\n"
        "G1,91320111MAHKB52W4E,91320111MAHKB52W4E,12.5,2024-01-01\n",
        "utf-8",
    )
    with pytest.raises(InputError) as raised:
        load_registry(root)
    assert (raised.value.line, raised.value.field) == (2, "amount_minor")
    assert raised.value.file is not None
    assert raised.value.file.endswith("guarantees.csv")


def test_graphsage_is_deterministic_and_learns_links() -> None:
    rng = np.random.default_rng(0)
    n = 60
    # two dense communities, few links between them
    left = [(int(a), int(b)) for a, b in rng.integers(0, 30, (150, 2)) if a != b]
    right = [(int(a) + 30, int(b) + 30) for a, b in rng.integers(0, 30, (150, 2)) if a != b]
    edges = np.array(left + right + [(0, 30)]).T
    features = rng.normal(size=(n, 4))
    first = train_embeddings(edges, features, dim=4, epochs=30, seed=3)
    again = train_embeddings(edges, features, dim=4, epochs=30, seed=3)
    other = train_embeddings(edges, features, dim=4, epochs=30, seed=4)
    assert np.array_equal(first.embeddings, again.embeddings)
    assert not np.allclose(first.embeddings, other.embeddings)
    assert first.losses[-1] < first.losses[0]
    z = first.embeddings
    same = np.mean([z[a] @ z[b] for a, b in [(1, 2), (3, 4), (31, 32), (33, 34)]])
    across = np.mean([z[a] @ z[b] for a, b in [(1, 31), (2, 32), (3, 33), (4, 34)]])
    assert same > across


def test_graphsage_supervised_head_and_bad_input() -> None:
    from flowbureau.errors import InputError

    edges = np.array([[0, 1, 2], [1, 2, 3]])
    features = np.eye(4)
    result = train_embeddings(edges, features, labels={0: 1, 3: 0}, dim=2, epochs=5)
    assert result.embeddings.shape == (4, 2)
    assert len(result.epoch_seconds) == 5
    with pytest.raises(InputError):
        train_embeddings(np.array([[0], [9]]), features)


def test_graphsage_thread_count_leaves_the_result_and_the_process_alone() -> None:
    import torch

    from flowbureau.errors import InputError

    rng = np.random.default_rng(1)
    edges = rng.integers(0, 40, (2, 120))
    features = rng.normal(size=(40, 3))
    threads = torch.get_num_threads()
    one = train_embeddings(edges, features, dim=3, epochs=8, seed=2, threads=1)
    two = train_embeddings(edges, features, dim=3, epochs=8, seed=2, threads=2)
    default = train_embeddings(edges, features, dim=3, epochs=8, seed=2)
    np.testing.assert_allclose(one.embeddings, two.embeddings, rtol=1e-4, atol=1e-5)
    assert np.array_equal(one.embeddings, default.embeddings)  # small graph: one thread
    assert torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(InputError) as raised:
        train_embeddings(edges, features, threads=0)
    assert raised.value.field == "threads"


def test_weighted_pagerank_converges_on_a_large_graph() -> None:
    """The L1 error against a fully converged power iteration stays below the tolerance
    (rustworkx's own default compares the change with n * 1e-6: 0.005 on 5,000 nodes)."""
    import rustworkx as rx
    import scipy.sparse as sp

    from flowbureau.graph.keynodes import PAGERANK_TOLERANCE, weighted_pagerank

    n, m = 5_000, 25_000
    rng = np.random.default_rng(3)
    source, target = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = source != target
    pairs = np.unique(np.stack([source[keep], target[keep]], axis=1), axis=0)
    weight = rng.uniform(1.0, 100.0, len(pairs))
    graph = rx.PyDiGraph()
    graph.add_nodes_from(range(n))
    graph.extend_from_weighted_edge_list(
        list(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), weight.tolist(), strict=True))
    )
    matrix = sp.csr_matrix((weight, (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    out = np.asarray(matrix.sum(axis=1)).ravel()
    step = (sp.diags(np.divide(1.0, out, out=np.zeros(n), where=out > 0)) @ matrix).T.tocsr()
    exact = np.full(n, 1.0 / n)
    for _ in range(500):
        exact = 0.85 * (step @ exact + exact[out == 0].sum() / n) + 0.15 / n
    rank = weighted_pagerank(graph)
    got = np.array([rank[i] for i in range(n)])
    assert abs(got.sum() - 1.0) < 1e-9
    assert np.abs(got - exact).sum() < 10 * PAGERANK_TOLERANCE
    assert weighted_pagerank(rx.PyDiGraph()) == {}
