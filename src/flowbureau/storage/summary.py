"""What the warehouse holds, in one summary (``flowbureau inspect``).

Rules:
- Read-only, over one committed snapshot; every figure comes from the views, so it agrees with
  what ``flowbureau sql`` would answer.
- Money totals are in minor units per currency; ``outflow_minor`` is a positive magnitude.
"""

from __future__ import annotations

from typing import Any

from flowbureau.storage.engine import Engine
from flowbureau.storage.warehouse import Warehouse

__all__ = ["summarise"]

_LIST_LIMIT = 20
"""Longest list of individual items (e.g. unreconciled statements) in a summary."""


def _rows(engine: Engine, sql: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = engine.query(sql).to_pylist()
    return rows


def _scalar(engine: Engine, sql: str) -> Any:
    return engine.query(sql).column(0)[0].as_py()


def summarise(*, warehouse: Warehouse | None = None) -> dict[str, Any]:
    """A JSON-ready summary: banks, accounts, records per bank and month, period, quarantine
    reasons, reconciliation failures, duplicates, payment links, outliers, categories, flags."""
    warehouse = warehouse or Warehouse.default()
    manifest = warehouse.manifest()
    with warehouse.connect(manifest=manifest) as engine:
        period = _rows(
            engine,
            "SELECT strftime(min(booked_at), '%Y-%m-%dT%H:%M:%SZ') AS first, "
            "strftime(max(booked_at), '%Y-%m-%dT%H:%M:%SZ') AS last FROM stored_transactions",
        )[0]
        return {
            "version": manifest.version,
            "committed_at": manifest.committed_at,
            "records": _scalar(engine, "SELECT count(*) FROM stored_transactions"),
            "period": period,
            "banks": _rows(
                engine,
                """
                SELECT b.bank_id, coalesce(a.accounts, 0) AS accounts,
                       coalesce(t.records, 0) AS records, coalesce(s.files, 0) AS files
                FROM (SELECT bank_id FROM stored_transactions UNION SELECT bank_id FROM accounts
                      UNION SELECT bank_id FROM sources) b
                LEFT JOIN (SELECT bank_id, count(*) AS accounts FROM accounts GROUP BY 1) a
                  USING (bank_id)
                LEFT JOIN (SELECT bank_id, count(*) AS records FROM stored_transactions
                           GROUP BY 1) t USING (bank_id)
                LEFT JOIN (SELECT bank_id, count(DISTINCT file_sha256) AS files FROM sources
                           GROUP BY 1) s
                  USING (bank_id)
                ORDER BY b.bank_id
                """,
            ),
            "accounts": _scalar(engine, "SELECT count(*) FROM accounts"),
            "enterprises": _scalar(engine, "SELECT count(DISTINCT enterprise_id) FROM accounts"),
            "records_per_month": _rows(
                engine,
                "SELECT bank_id, strftime(booked_at, '%Y-%m') AS month, count(*) AS records "
                "FROM stored_transactions GROUP BY ALL ORDER BY ALL",
            ),
            "totals": _rows(
                engine,
                "SELECT currency, CAST(coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0)"
                ", 0) AS BIGINT) AS inflow_minor, CAST(coalesce(-sum(amount_minor) FILTER "
                "(WHERE amount_minor < 0), 0) AS BIGINT) AS outflow_minor "
                "FROM stored_transactions GROUP BY ALL ORDER BY ALL",
            ),
            "quarantine": _rows(
                engine,
                "SELECT reason, field, count(*) AS records FROM quarantine "
                "GROUP BY ALL ORDER BY records DESC, reason",
            ),
            "reconciliation_failures": {
                "statements": _scalar(
                    engine, "SELECT count(*) FROM statements WHERE reconciled = false"
                ),
                "first": _rows(
                    engine,
                    "SELECT bank_id, source_file, source_location, reconciliation_diff_minor "
                    "FROM statements WHERE reconciled = false "
                    f"ORDER BY source_file, source_location LIMIT {_LIST_LIMIT}",
                ),
            },
            "duplicates": _rows(
                engine,
                """
                SELECT CAST(coalesce(sum(duplicates) FILTER (WHERE status = 'duplicate_file'),
                                     0) AS BIGINT) AS in_duplicate_files,
                       count(*) FILTER (WHERE status = 'duplicate_file') AS duplicate_files,
                       (SELECT count(*) FROM duplicates WHERE kind = 'existing')
                         AS overlapping_entries,
                       (SELECT count(*) FROM duplicates WHERE kind = 'in_batch')
                         AS repeated_in_batch
                FROM sources
                """,
            )[0],
            "payment_links": _scalar(
                engine, "SELECT count(DISTINCT payment_link_id) FROM payment_links"
            ),
            "outliers": _scalar(engine, "SELECT count(*) FROM outliers"),
            "categories": _rows(
                engine,
                "SELECT tx_type, count(*) AS records FROM stored_transactions "
                "GROUP BY ALL ORDER BY records DESC, tx_type",
            ),
            "quality_flags": _rows(
                engine,
                "SELECT flag, count(*) AS records FROM (SELECT unnest(quality_flags) AS flag "
                "FROM transactions) GROUP BY ALL ORDER BY records DESC, flag",
            ),
        }
