"""Sequence anomaly detection and audited correction of transaction flows.

Before any score is computed, each account's flow is checked:

1. :mod:`~flowbureau.anomaly.preprocessing` fills values the data itself determines (a missing
   balance from balance continuity, a missing counterparty name from the account's history)
   and raises rule flags (decimal slips proved by balances or by the statement's
   reconciliation, booking/value-date gaps, near-duplicate postings, round-amount bursts,
   three-way circular flows); every fill and flag is a record with its evidence.
2. :mod:`~flowbureau.anomaly.features` turns each account's transactions, in the bank's ledger
   order, into per-step features computed from strictly earlier entries only.
3. :mod:`~flowbureau.anomaly.model` (PyTorch, a causal GRU over each account's whole history
   by default, a bidirectional one on request) gives every transaction an anomaly score, a
   type (:data:`ANOMALY_TYPES`) and a predicted normal amount; with the bidirectional model a
   later entry can change an earlier entry's score, so every run re-scores everything;
   :mod:`~flowbureau.anomaly.baselines` holds the MAD rule and PyOD baselines.
4. :mod:`~flowbureau.anomaly.correction` turns confident proposals into correction records
   (append-only, revertible) that the warehouse ``transactions`` view shows as
   ``corrected_amount_minor`` / ``correction_id`` and the ``corrected`` quality flag.
5. :mod:`~flowbureau.anomaly.feedback` stores analysts' confirmations, rejections and labels;
   :mod:`~flowbureau.anomaly.pipeline` trains on them (with the synthetic ground truth when
   given) and runs detection end to end.

This package module imports nothing heavy: import the submodules you need.
"""

from __future__ import annotations

ANOMALY_TYPES: tuple[str, ...] = (
    "normal",
    "typo_x10",
    "typo_x100",
    "date_shift",
    "duplicate_posting",
    "outlier",
    "circular_flow",
    "round_burst",
)
"""Classes the model predicts: ``normal`` first, then the planted anomaly types (the names of
``docs/synth.md``'s problems and real-flow anomalies; ``duplicate_posting`` is planted by
:func:`flowbureau.anomaly.evaluation.plant_duplicates`, since ingest removes exact copies)."""

CORRECTABLE_TYPES: frozenset[str] = frozenset({"typo_x10", "typo_x100"})
"""Types a correction may be applied for: decimal slips, whose normal value is the written
amount divided by 10 or 100, exactly. A ``duplicate_posting``'s normal value (0) is predicted
and shown but never applied automatically: a legitimate repeated payment can look the same.
Real flows (outliers, circular flows, bursts) and date problems are flagged, never corrected."""

__all__ = ["ANOMALY_TYPES", "CORRECTABLE_TYPES"]
