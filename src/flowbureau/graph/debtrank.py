"""DebtRank: distress propagation over an exposure network (Battiston et al., 2012).

Battiston, Puliga, Kaushik, Tasca & Caldarelli, "DebtRank: Too Central to Fail? Financial
Networks, the FED and Systemic Risk", Scientific Reports 2, 541 (2012). The original algorithm,
exactly:

- **Exposures** are rows ``(source, target, amount)``: ``amount`` is what ``target`` stands to
  lose if ``source`` fails (a receivable, a guarantee, the sales it would lose). Rows of the same
  pair are summed. **Impact** of ``i`` on ``j``: ``W[i, j] = min(1, A[i, j] / capital[j])``;
  self-exposures are ignored.
- **State** of each node: distress ``h`` in [0, 1] and a status Sound / Distressed / Inactive.
  At ``t = 1``: ``h = shock`` (0 where not given); nodes with ``h > 0`` are Distressed.
- **Step** ``t >= 2``: ``h_j(t) = min(1, h_j(t-1) + sum over Distressed i of W[i, j] h_i(t-1))``
  for every node j (an Inactive node can still lose value, it just never propagates again);
  then a node Distressed at ``t-1`` becomes Inactive, and a Sound node with ``h > 0`` becomes
  Distressed. So **each node propagates exactly once**, the distress it had on the step it
  propagates. The run stops when no node is Distressed (at most n + 1 steps).
- **Value** ``v``: relative economic value of each node (normalised to sum 1). Given as
  ``value``, or by default each node's total exposure held (the sum of what it stands to lose),
  the proxy of the paper's application; uniform if no node holds any.
- **DebtRank** ``R = sum_j h_j(T) v_j - sum_j h_j(1) v_j``: the relative value lost beyond the
  initial shock.
- **Paths**: when a node first becomes Distressed, its *parent* is the Distressed node whose
  contribution ``W[i, j] h_i`` that step was largest (ties: lowest node order). Parents form a
  forest rooted at the shocked nodes; the main paths are the root-to-node chains of the nodes
  with the largest value lost ``(h_j(T) - h_j(1)) v_j``.

Vectorised with scipy sparse matrices: one sparse product per step, so 5M exposures and 1M
nodes take seconds. :func:`debtrank_impacts` runs one single-node shock per column of a dense
block (the impact of each node's failure), in chunks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from flowbureau.errors import InputError

__all__ = [
    "DebtRankResult",
    "ExposureNetwork",
    "PropagationPath",
    "debtrank",
    "debtrank_impacts",
    "exposure_network",
    "run_debtrank",
]

_SOUND, _DISTRESSED, _INACTIVE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class PropagationPath:
    """One chain along which distress travelled: shocked origin first, ``loss`` = value lost
    by the last node beyond its own shock."""

    nodes: tuple[str, ...]
    distress: tuple[float, ...]
    loss: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"nodes": list(self.nodes), "distress": list(self.distress), "loss": self.loss}


@dataclass(frozen=True)
class DebtRankResult:
    """Outcome of one DebtRank run."""

    distress: pd.Series
    """Final distress ``h_j(T)`` per node (index: node id)."""
    initial: pd.Series
    """Initial distress ``h_j(1)`` (the shock)."""
    value: pd.Series
    """Relative economic value ``v_j`` used (sums to 1)."""
    total: float
    """DebtRank ``R``: relative value lost beyond the initial shock."""
    rounds: int
    """Steps until no node was Distressed."""
    paths: list[PropagationPath]

    def as_dict(self, *, top: int = 20) -> dict[str, Any]:
        """JSON-safe summary: DebtRank, rounds, the ``top`` most distressed nodes, paths."""
        hit = self.distress[self.distress > 0].sort_values(ascending=False).head(top)
        initial = self.initial.to_dict()
        value = self.value.to_dict()
        return {
            "debtrank": self.total,
            "rounds": self.rounds,
            "distressed_nodes": int((self.distress > 0).sum()),
            "distress": [
                {
                    "node": str(node),
                    "distress": float(h),
                    "initial": float(initial[node]),
                    "value_lost": float((h - initial[node]) * value[node]),
                }
                for node, h in hit.items()
            ],
            "paths": [p.as_dict() for p in self.paths],
        }


@dataclass(frozen=True)
class ExposureNetwork:
    """Validated exposure network: node ids, the impact matrix ``W`` (CSR, row = source) and
    the relative value per node."""

    nodes: pd.Index
    impact: sp.csr_matrix
    value: np.ndarray

    def position(self, node: str) -> int:
        """Row of ``node`` (InputError when unknown)."""
        try:
            position = self.nodes.get_loc(node)
        except KeyError:
            position = None
        if not isinstance(position, int):
            raise InputError(f"unknown node {node!r}", field="node")
        return position


def _rows(exposures: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, target, amount) columns of a DataFrame, Arrow table or row sequence."""
    if hasattr(exposures, "to_pandas") and not isinstance(exposures, pd.DataFrame):
        exposures = exposures.to_pandas()
    if isinstance(exposures, pd.DataFrame):
        missing = [c for c in ("source", "target", "amount") if c not in exposures.columns]
        if missing:
            raise InputError(f"exposures lack column(s) {missing}", field=missing[0])
        frame = exposures
    else:
        rows = list(exposures)
        for line, row in enumerate(rows, start=1):
            if len(row) != 3:
                raise InputError(
                    "an exposure row is (source, target, amount)", line=line, field="exposures"
                )
        frame = pd.DataFrame(rows, columns=["source", "target", "amount"])
    amount = pd.to_numeric(frame["amount"], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(amount) | (amount < 0))
    if len(bad):
        raise InputError(
            f"exposure amount must be a number >= 0, got {frame['amount'].iloc[bad[0]]!r}",
            line=int(bad[0]) + 1,
            field="amount",
        )
    return (
        frame["source"].astype(str).to_numpy(),
        frame["target"].astype(str).to_numpy(),
        amount,
    )


def _number_map(values: Mapping[str, Any] | pd.Series, name: str) -> pd.Series:
    series = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values
    series = series.set_axis(series.index.astype(str))  # a copy: the caller's index stays
    numbers = pd.to_numeric(series, errors="coerce").astype(float)
    bad = numbers[~np.isfinite(numbers.to_numpy())]
    if len(bad):
        raise InputError(f"{name} of {bad.index[0]!r} is not a finite number", field=name)
    return numbers


def exposure_network(
    exposures: Any,
    capital: Mapping[str, Any] | pd.Series,
    value: Mapping[str, Any] | pd.Series | None = None,
) -> ExposureNetwork:
    """Validate the inputs and build the impact matrix (see the module rules).

    Nodes are the union of ``capital``'s keys and the exposure endpoints; a target with an
    exposure must have capital > 0 (else :class:`InputError` naming the node).
    """
    source, target, amount = _rows(exposures)
    cap = _number_map(capital, "capital")
    if cap.index.has_duplicates:
        twice = cap.index[cap.index.duplicated()][0]
        raise InputError(f"capital of {twice!r} is given twice", field="capital")
    # one hash pass numbers every id in order of first appearance (capital's keys first)
    keys = cap.index.to_numpy(dtype=str)
    codes, uniques = pd.factorize(np.concatenate([keys, source, target]))
    nodes = pd.Index(uniques)
    n = len(nodes)
    s = codes[len(keys) : len(keys) + len(source)]
    t = codes[len(keys) + len(source) :]
    keep = (s != t) & (amount > 0)
    s, t, amount = s[keep], t[keep], amount[keep]
    cap_vec = np.full(n, np.nan)
    cap_vec[codes[: len(keys)]] = cap.to_numpy(dtype=float)
    holds = np.zeros(n, dtype=bool)
    holds[t] = True
    lacking = np.flatnonzero(holds & ~(cap_vec > 0))
    if len(lacking):
        node = nodes[lacking[0]]
        raise InputError(
            f"node {node!r} has exposures but its capital is "
            f"{'missing' if math.isnan(cap_vec[lacking[0]]) else cap_vec[lacking[0]]} "
            "(must be > 0)",
            field="capital",
        )
    exposure = sp.coo_matrix((amount, (s, t)), shape=(n, n)).tocsr()
    exposure.sum_duplicates()
    held = np.asarray(exposure.sum(axis=0)).ravel()
    impact = exposure.tocoo()
    weights = np.minimum(1.0, impact.data / cap_vec[impact.col])
    matrix = sp.csr_matrix((weights, (impact.row, impact.col)), shape=(n, n))
    if value is None:
        raw = held
    else:
        given = _number_map(value, "value")
        if (given < 0).any():
            raise InputError(f"value of {given[given < 0].index[0]!r} is negative", field="value")
        raw = given.reindex(nodes).fillna(0.0).to_numpy(dtype=float)
    total = raw.sum()
    v = raw / total if total > 0 else np.full(n, 1.0 / max(n, 1))
    return ExposureNetwork(nodes, matrix, v)


def _shock_vector(network: ExposureNetwork, shock: Mapping[str, Any] | pd.Series) -> np.ndarray:
    h = np.zeros(len(network.nodes))
    for node, level in _number_map(shock, "shock").items():
        if not 0.0 <= level <= 1.0:
            raise InputError(f"shock of {node!r} must lie in [0, 1], got {level}", field="shock")
        h[network.position(str(node))] = level
    return h


def _propagate(
    impact_t: sp.csr_matrix, h: np.ndarray, *, track: bool
) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Run the original dynamics from ``h`` (n or n x B). Returns final h, rounds, parents."""
    h = h.copy()
    status = np.where(h > 0, _DISTRESSED, _SOUND).astype(np.int8)
    parent = np.full(h.shape[0], -1, dtype=np.int64) if track else None
    rounds = 1
    coo = impact_t.tocoo() if track else None
    while (status == _DISTRESSED).any():
        rounds += 1
        pushed = np.where(status == _DISTRESSED, h, 0.0)
        h_next = np.minimum(1.0, h + impact_t @ pushed)
        if track and parent is not None and coo is not None:
            # parent of each node that becomes Distressed now: its largest contributor
            active = status[coo.col] == _DISTRESSED
            rows, cols = coo.row[active], coo.col[active]
            contribution = coo.data[active] * h[cols]
            fresh = (status[rows] == _SOUND) & (h_next[rows] > 0) & (contribution > 0)
            rows, cols, contribution = rows[fresh], cols[fresh], contribution[fresh]
            order = np.lexsort((cols, -contribution, rows))
            first = np.unique(rows[order], return_index=True)[1]
            parent[rows[order][first]] = cols[order][first]
        status = np.where(
            status == _DISTRESSED,
            _INACTIVE,
            np.where((status == _SOUND) & (h_next > 0), _DISTRESSED, status),
        ).astype(np.int8)
        h = h_next
    return h, rounds, parent


def debtrank(
    exposures: Any,
    capital: Mapping[str, Any] | pd.Series,
    shock: Mapping[str, Any] | pd.Series,
    value: Mapping[str, Any] | pd.Series | None = None,
    *,
    paths: int = 10,
) -> DebtRankResult:
    """Propagate ``shock`` (node -> initial distress in [0, 1]) through the exposure network.

    ``exposures``: rows ``(source, target, amount)`` (a DataFrame or Arrow table with those
    columns, or a sequence of triples); ``capital``: node -> capital (> 0 for every node that
    holds an exposure); ``value``: node -> economic value (default: total exposure held).
    Returns per-node distress, the DebtRank and the ``paths`` main propagation paths.
    """
    network = exposure_network(exposures, capital, value)
    return run_debtrank(network, shock, paths=paths)


def run_debtrank(
    network: ExposureNetwork, shock: Mapping[str, Any] | pd.Series, *, paths: int = 10
) -> DebtRankResult:
    """:func:`debtrank` on an already built :class:`ExposureNetwork` (reuse it for scenarios)."""
    h0 = _shock_vector(network, shock)
    impact_t = network.impact.T.tocsr()
    h, rounds, parent = _propagate(impact_t, h0, track=True)
    v = network.value
    total = float(h @ v - h0 @ v)
    chains: list[PropagationPath] = []
    if parent is not None and paths > 0:
        loss = (h - h0) * v
        candidates = np.flatnonzero((parent >= 0) & (loss > 0))
        ranked = candidates[np.lexsort((candidates, -loss[candidates]))][:paths]
        for node in ranked.tolist():
            chain = [node]
            while parent[chain[-1]] >= 0:
                chain.append(int(parent[chain[-1]]))
            chain.reverse()
            chains.append(
                PropagationPath(
                    tuple(str(network.nodes[i]) for i in chain),
                    tuple(float(h[i]) for i in chain),
                    float(loss[node]),
                )
            )
    index = network.nodes
    return DebtRankResult(
        pd.Series(h, index=index, name="distress"),
        pd.Series(h0, index=index, name="initial"),
        pd.Series(v, index=index, name="value"),
        total,
        rounds,
        chains,
    )


def debtrank_impacts(
    network: ExposureNetwork,
    nodes: Sequence[str] | None = None,
    *,
    distress: float = 1.0,
    reach_threshold: float = 0.0,
    chunk: int = 256,
) -> pd.DataFrame:
    """For each node, the DebtRank of its own failure alone (``h = distress`` at it).

    Columns: ``impact`` (R of that scenario), ``reach`` (other nodes whose distress ends
    above ``reach_threshold``).
    Also, per node, ``vulnerability``: the mean distress it receives over all the scenarios
    run (how exposed it is to the failure of a random one of ``nodes``).
    """
    if not 0.0 < distress <= 1.0:
        raise InputError(f"distress must lie in (0, 1], got {distress}", field="distress")
    chosen = list(network.nodes) if nodes is None else [str(n) for n in nodes]
    positions = np.array([network.position(n) for n in chosen], dtype=np.int64)
    n = len(network.nodes)
    impact_t = network.impact.T.tocsr()
    v = network.value
    impact = np.zeros(len(positions))
    reach = np.zeros(len(positions), dtype=np.int64)
    received = np.zeros(n)
    for start in range(0, len(positions), chunk):
        block = positions[start : start + chunk]
        h0 = np.zeros((n, len(block)))
        h0[block, np.arange(len(block))] = distress
        h, _, _ = _propagate(impact_t, h0, track=False)
        gained = h - h0
        impact[start : start + len(block)] = gained.T @ v
        others = h.copy()
        others[block, np.arange(len(block))] = 0.0
        reach[start : start + len(block)] = (others > reach_threshold).sum(axis=0)
        received += gained.sum(axis=1)
    vulnerability = received / max(len(positions), 1)
    frame = pd.DataFrame({"impact": impact, "reach": reach}, index=pd.Index(chosen, name="node"))
    frame["vulnerability"] = pd.Series(vulnerability, index=network.nodes).reindex(chosen).values
    return frame
