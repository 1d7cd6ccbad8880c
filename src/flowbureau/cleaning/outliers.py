"""Outliers: amounts far larger than what an account usually books for the same purpose.

Rules:
- Per account, direction (credits and debits separately) and category (``tx_type``: rent,
  payroll and fees each have their own usual size), over the account's whole stored history:
  x = ln(|amount_minor|); robust z = 0.6745 * (x - median(x)) / MAD(x), with MAD the median
  absolute deviation (Iglewicz & Hoaglin's modified z-score). An entry is an outlier when z
  exceeds ``outlier_threshold`` (default 3.5). Only the high side is flagged: unusually large
  amounts (typos that multiply an amount, exceptional payments) are what matters for credit;
  small amounts are ordinary.
- Only groups with at least ``outlier_min_history`` entries are judged (too little history
  says nothing about "usual"); a group whose amounts are all equal (MAD 0) has no outliers.
  Zero amounts are never judged.
- Outliers are flagged, never deleted or changed: the result is the ``outliers`` annotation
  (``tx_id``, ``robust_z``, ``quality_flags = ['outlier']``), recomputed per bank after each
  ingest that adds records to it (scope = bank id), so flags follow the growing history.
"""

from __future__ import annotations

from flowbureau.cleaning.flags import QualityFlag

__all__ = ["outliers_sql"]


def outliers_sql(
    source: str, *, bank_id: str | None = None, min_history: int, threshold: float
) -> str:
    """SQL for the ``outliers`` annotation rows of relation ``source`` (one bank if given),
    with their ``bank_id`` last (the annotation's scope; not a column of the annotation).

    ``source`` needs ``tx_id``, ``bank_id``, ``account_id``, ``tx_type`` and ``amount_minor``.
    Groups are per bank too (an account pseudonym does not include the bank), so several
    banks are judged in one pass exactly as one at a time.
    """
    bank_filter = ""
    if bank_id is not None:
        bank_filter = "AND bank_id = '" + bank_id.replace("'", "''") + "'"
    return f"""
    WITH x AS (
        SELECT tx_id, bank_id, account_id, tx_type, amount_minor > 0 AS inflow,
               ln(abs(amount_minor)::DOUBLE) AS v
        FROM {source}
        WHERE amount_minor <> 0 {bank_filter}
    ),
    s AS (
        SELECT bank_id, account_id, inflow, tx_type, median(v) AS med, mad(v) AS spread
        FROM x GROUP BY bank_id, account_id, inflow, tx_type
        HAVING count(*) >= {int(min_history)}
    ),
    z AS (
        SELECT x.tx_id, x.bank_id, 0.6745 * (x.v - s.med) / s.spread AS robust_z
        FROM x JOIN s USING (bank_id, account_id, inflow, tx_type)
        WHERE s.spread > 0
    )
    SELECT tx_id, robust_z, ['{QualityFlag.OUTLIER.value}']::VARCHAR[] AS quality_flags, bank_id
    FROM z WHERE robust_z > {float(threshold)!r}
    """
