"""DebtRank (Battiston et al. 2012): a hand-checked network and the algorithm's properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flowbureau.errors import InputError
from flowbureau.graph.debtrank import debtrank, debtrank_impacts, exposure_network

EXPOSURES = [("A", "B", 50), ("B", "C", 30), ("A", "C", 20), ("C", "A", 10), ("C", "D", 40)]
CAPITAL = {"A": 100, "B": 100, "C": 60, "D": 20}


def test_hand_checked_network() -> None:
    """Four nodes, A fails (h_A = 1).

    Impacts W[i, j] = min(1, A_ij / E_j): W[A,B] = 50/100 = 0.5, W[B,C] = 30/60 = 0.5,
    W[A,C] = 20/60 = 1/3, W[C,A] = 10/100 = 0.1, W[C,D] = min(1, 40/20) = 1.
    Values (exposure held): A 10, B 50, C 50, D 40 -> /150: 1/15, 1/3, 1/3, 4/15.

    t=1: h = (1, 0, 0, 0); A distressed.
    t=2: h_B = 0.5, h_C = 1/3 (from A); A -> inactive; B, C -> distressed.
    t=3: h_A = min(1, 1 + 0.1 * 1/3) = 1; h_C = 1/3 + 0.5 * 0.5 = 7/12 (B pushes its 0.5);
         h_D = min(1, 0 + 1 * 1/3) = 1/3 (C pushes the 1/3 it had at t=2, once);
         B, C -> inactive; D -> distressed (it holds no exposure: pushes nothing).
    t=4: nothing changes; D -> inactive. No node distressed: 4 rounds.
    R = (1/15 * 1 + 1/3 * 0.5 + 1/3 * 7/12 + 4/15 * 1/3) - 1/15 * 1
      = 0.166667 + 0.194444 + 0.088889 = 0.45.
    """
    result = debtrank(EXPOSURES, CAPITAL, {"A": 1.0})
    assert result.distress.to_dict() == pytest.approx({"A": 1.0, "B": 0.5, "C": 7 / 12, "D": 1 / 3})
    assert result.value.to_dict() == pytest.approx(
        {"A": 1 / 15, "B": 1 / 3, "C": 1 / 3, "D": 4 / 15}
    )
    assert result.total == pytest.approx(0.45)
    assert result.rounds == 4
    # C was first distressed by A (1/3), D by C: the main paths follow those parents
    paths = {p.nodes[-1]: p.nodes for p in result.paths}
    assert paths["C"] == ("A", "C")
    assert paths["D"] == ("A", "C", "D")
    assert paths["B"] == ("A", "B")
    assert result.paths[0].nodes[-1] == "C"  # largest value lost: 1/3 * 7/12


def test_each_node_propagates_once_on_a_cycle() -> None:
    """A <-> B with full impact both ways: A fails, B gets 1, A stays 1; B pushes once."""
    result = debtrank([("A", "B", 10), ("B", "A", 10)], {"A": 10, "B": 10}, {"A": 0.4})
    # t=2: h_B = 0.4; t=3: h_A = 0.4 + 1 * 0.4 = 0.8 (B pushes once); A is inactive: stop
    assert result.distress.to_dict() == pytest.approx({"A": 0.8, "B": 0.4})
    assert result.rounds == 3


def test_no_shock_means_no_loss() -> None:
    result = debtrank(EXPOSURES, CAPITAL, {})
    assert result.total == 0.0
    assert (result.distress == 0).all()
    assert result.paths == []


def test_distress_bounded_and_monotone_in_the_shock() -> None:
    rng = np.random.default_rng(5)
    n = 40
    rows = [
        (f"n{a}", f"n{b}", float(rng.integers(1, 100)))
        for a, b in rng.integers(0, n, (200, 2))
        if a != b
    ]
    capital = {f"n{i}": float(rng.integers(20, 300)) for i in range(n)}
    previous = -1.0
    for level in (0.0, 0.2, 0.5, 0.8, 1.0):
        result = debtrank(rows, capital, {"n0": level, "n7": level / 2})
        assert ((result.distress >= 0) & (result.distress <= 1)).all()
        assert (result.distress >= result.initial).all()
        assert result.total >= previous - 1e-12
        previous = result.total


def test_impacts_equal_single_runs() -> None:
    network = exposure_network(EXPOSURES, CAPITAL)
    impacts = debtrank_impacts(network, chunk=2)
    for node in ("A", "B", "C", "D"):
        single = debtrank(EXPOSURES, CAPITAL, {node: 1.0})
        assert impacts.loc[node, "impact"] == pytest.approx(single.total)
        assert impacts.loc[node, "reach"] == int((single.distress.drop(node) > 0).sum())


def test_dataframe_input_and_explicit_value() -> None:
    frame = pd.DataFrame(EXPOSURES, columns=["source", "target", "amount"])
    result = debtrank(frame, CAPITAL, {"A": 1.0}, value={"A": 1, "B": 1, "C": 1, "D": 1})
    assert result.total == pytest.approx((0.5 + 7 / 12 + 1 / 3) / 4)


@pytest.mark.parametrize(
    ("exposures", "capital", "shock", "field"),
    [
        ([("A", "B", -5)], {"A": 1, "B": 1}, {"A": 1}, "amount"),
        ([("A", "B", 5)], {"A": 1}, {"A": 1}, "capital"),
        ([("A", "B", 5)], {"A": 1, "B": 0}, {"A": 1}, "capital"),
        ([("A", "B", 5)], {"A": 1, "B": 1}, {"A": 1.5}, "shock"),
        ([("A", "B", 5)], {"A": 1, "B": 1}, {"Z": 1}, "node"),
        ([("A", "B")], {"A": 1, "B": 1}, {"A": 1}, "exposures"),
    ],
)
def test_bad_input_is_a_typed_error(
    exposures: list[tuple[object, ...]],
    capital: dict[str, float],
    shock: dict[str, float],
    field: str,
) -> None:
    with pytest.raises(InputError) as raised:
        debtrank(exposures, capital, shock)
    assert raised.value.field == field


def test_network_numbers_nodes_in_order_of_first_appearance() -> None:
    capital = pd.Series([60.0, 100.0], index=["C", "A"])
    network = exposure_network([("X", "A", 10), ("A", "C", 30), ("C", "A", 0)], capital)
    assert list(network.nodes) == ["C", "A", "X"]
    a, c, x = (network.position(k) for k in ("A", "C", "X"))
    assert network.impact[x, a] == pytest.approx(0.1)  # 10 / capital 100 of A
    assert network.impact[a, c] == pytest.approx(0.5)  # 30 / capital 60 of C
    assert network.impact[c, a] == 0  # a zero exposure is no link
    assert list(capital.index) == ["C", "A"]  # the caller's series is left as it was


def test_capital_given_twice_is_refused() -> None:
    capital = pd.Series([1.0, 2.0, 3.0], index=["A", "B", "A"])
    with pytest.raises(InputError) as raised:
        exposure_network([("A", "B", 1)], capital)
    assert raised.value.field == "capital"
    assert "'A'" in str(raised.value)
