"""The cleaning of one batch, as DuckDB SQL over the batch's registered Arrow relations.

Input relations (registered by :mod:`flowbureau.ingestion`; clear account numbers are
already replaced by pseudonyms and never reach SQL):

- ``b_files``: ``file_idx``, ``source_file``, ``file_sha256``, ``format``, ``profile``,
  ``statements``, ``pending`` (entries the reader reported as pending).
- ``b_statements``: ``stmt_idx``, ``file_idx``, ``statement_id``, ``location``,
  ``account_id``, ``owner_name``, ``owner_name_norm``, ``owner_enterprise_id`` (a valid
  credit code printed on the statement), ``currency``, balances, period,
  ``reconciliation_diff_minor``.
- ``b_entries``: ``stmt_idx``, ``entry_no`` (file order) and the fields of
  ``RAW_ENTRY_SCHEMA`` with ``account_id`` / ``counterparty_account`` pseudonyms and
  ``counterparty_name_norm`` added.
- ``b_accounts``: ``account_id``, ``enterprise_id``, ``owner_name_norm`` of every known
  account (the ``accounts`` view, registers of this run included).
- ``existing_ids``: ``tx_id`` of stored records that could repeat this batch's (same bank,
  neighbouring months).

Steps, in order (each a temp table): ``b_std`` (every column but ``raw_text``, which only a
quarantined entry keeps) standardises (UTC time, currency, the account's enterprise) and
decides completeness (``reject_reason`` / ``reject_field``); ``b_ok`` assigns ``tx_id``
(:mod:`.identifiers`) to the admitted entries;
``b_kinds`` categorises (:mod:`.rules`) each distinct (description, counterparty name,
direction, transaction code, own-account) combination once - texts repeat, so this runs the
rule regexes far fewer times than once per entry; ``b_rows`` joins the category back, sets
quality flags (:mod:`.flags`) and marks duplicates (``dup_rank`` > 1 within the batch,
``is_existing`` against the store). The ``*_sql`` functions then select the
rows of each warehouse table in its exact schema.
"""

from __future__ import annotations

from datetime import datetime

from flowbureau.cleaning.flags import QualityFlag
from flowbureau.cleaning.identifiers import tx_id_sql
from flowbureau.cleaning.normalise import fold_width_sql
from flowbureau.cleaning.rules import RuleSet, categorise_sql, returned_sql
from flowbureau.schema import CURRENCY_EXPONENTS

__all__ = [
    "BOOKED_OR_INVALID",
    "accounts_sql",
    "duplicates_sql",
    "quarantine_sql",
    "rows_sql",
    "sources_sql",
    "standardise_sql",
    "statements_sql",
    "transactions_sql",
]

BOOKED_OR_INVALID = "(status = 'BOOK' OR starts_with(status, 'INVALID:'))"
"""Entries that count as records of a file (the rest are pending / informational)."""

_FIELD_HINTS = (
    ("amount", "amount"),
    ("decimal", "amount"),
    ("currenc", "currency"),
    ("date", "date"),
    ("time", "date"),
    ("account", "account_number"),
    ("balance", "balance"),
)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _timestamp(value: datetime) -> str:
    return f"TIMESTAMPTZ {_literal(value.isoformat())}"


def _field_from_reason() -> str:
    branches = " ".join(
        f"WHEN contains(lower(status), {_literal(hint)}) THEN {_literal(field)}"
        for hint, field in _FIELD_HINTS
    )
    return f"CASE {branches} END"


def standardise_sql(*, timezone: str) -> str:
    """``b_std``: every entry, standardised, with its completeness verdict.

    ``reject_reason`` is the reader's ``INVALID:`` reason, ``missing account number`` or
    ``unknown currency <code>``; ``reject_field`` names the field (for reader reasons, the
    field the reason mentions).
    """
    currencies = ", ".join(f"({_literal(c)})" for c in sorted(CURRENCY_EXPONENTS))
    return f"""
    CREATE OR REPLACE TEMP TABLE b_std AS
    SELECT e.* EXCLUDE (currency, raw_text), upper(trim(e.currency)) AS currency,
           s.file_idx, s.statement_id, f.source_file, f.file_sha256,
           s.reconciliation_diff_minor,
           coalesce(k.enterprise_id, s.owner_enterprise_id) AS enterprise_id,
           coalesce(k.owner_name_norm, s.owner_name_norm) AS owner_name_norm,
           CAST(e.booked_local AS DATE) AS local_date,
           CASE WHEN e.booked_offset_minutes IS NULL
                THEN timezone({_literal(timezone)}, e.booked_local)
                ELSE timezone('UTC', e.booked_local
                              - to_minutes(CAST(e.booked_offset_minutes AS BIGINT)))
           END AS booked_at,
           CASE WHEN starts_with(e.status, 'INVALID:') THEN substr(e.status, 9)
                WHEN e.status <> 'BOOK' THEN NULL
                WHEN e.account_id IS NULL THEN 'missing account number'
                WHEN iso.code IS NULL
                  THEN 'unknown currency ' || coalesce(e.currency, '(none)')
           END AS reject_reason,
           CASE WHEN starts_with(e.status, 'INVALID:') THEN {_field_from_reason()}
                WHEN e.status <> 'BOOK' THEN NULL
                WHEN e.account_id IS NULL THEN 'account_number'
                WHEN iso.code IS NULL THEN 'currency'
           END AS reject_field
    FROM b_entries e
    JOIN b_statements s USING (stmt_idx)
    JOIN b_files f ON f.file_idx = s.file_idx
    LEFT JOIN b_accounts k ON k.account_id = e.account_id
    LEFT JOIN (VALUES {currencies}) iso(code) ON iso.code = upper(trim(e.currency))
    """


def rows_sql(*, bank_id: str, rules: RuleSet) -> list[str]:
    """Statements building ``b_rows``: admitted entries with ``tx_id``, ``tx_type``,
    ``quality_flags``, ``dup_rank`` and ``is_existing`` (needs ``existing_ids``)."""
    occurrence_key = (
        "file_idx, account_id, local_date, amount_minor, currency, reference, end_to_end_id, "
        "counterparty_account, counterparty_name_norm, description"
    )
    flags = ", ".join(
        f"CASE WHEN {condition} THEN {_literal(flag.value)} END"
        for flag, condition in (
            (QualityFlag.ENTERPRISE_UNKNOWN, "o.enterprise_id IS NULL"),
            (QualityFlag.TIMEZONE_ASSUMED, "o.booked_offset_minutes IS NULL"),
            (QualityFlag.RETURNED_PAYMENT, "k.returned"),
            (
                QualityFlag.BALANCE_BREAK,
                "o.prev_balance IS NOT NULL AND o.balance_after_minor IS NOT NULL "
                "AND o.prev_balance + o.amount_minor <> o.balance_after_minor",
            ),
            (QualityFlag.STATEMENT_UNRECONCILED, "coalesce(o.reconciliation_diff_minor, 0) <> 0"),
        )
    )
    return [
        f"""
        CREATE OR REPLACE TEMP TABLE b_ok AS
        WITH ok AS (
            SELECT *, {_literal(bank_id)} AS bank_id
            FROM b_std WHERE status = 'BOOK' AND reject_reason IS NULL
        ),
        windows AS (  -- on a narrow projection: windows over all 30 columns cost far more
            SELECT stmt_idx, entry_no,
                   lag(balance_after_minor) OVER (PARTITION BY stmt_idx ORDER BY entry_no)
                     AS prev_balance,
                   row_number() OVER (PARTITION BY {occurrence_key}
                                      ORDER BY stmt_idx, entry_no) - 1 AS occurrence
            FROM ok
        ),
        hashed AS (
            SELECT *, {tx_id_sql()} AS tx_id
            FROM ok JOIN windows USING (stmt_idx, entry_no)
        )
        SELECT h.*,
               coalesce(c.enterprise_id = h.enterprise_id, false)
                 OR coalesce(h.counterparty_name_norm = h.owner_name_norm, false) AS cp_is_own
        FROM hashed h LEFT JOIN b_accounts c ON c.account_id = h.counterparty_account
        """,
        f"""
        CREATE OR REPLACE TEMP TABLE b_kinds AS
        SELECT *, {categorise_sql(rules)} AS tx_type, {returned_sql(rules)} AS returned
        FROM (
            SELECT description_key, lower({fold_width_sql("description_key")}) AS desc_fold,
                   cp_key AS counterparty_name_norm, direction AS amount_minor, code AS tx_code,
                   cp_is_own
            FROM (SELECT DISTINCT coalesce(description, '') AS description_key,
                         coalesce(counterparty_name_norm, '') AS cp_key,
                         sign(amount_minor) AS direction, coalesce(tx_code, '') AS code,
                         cp_is_own
                  FROM b_ok)
        )
        """,
        f"""
        CREATE OR REPLACE TEMP TABLE b_rows AS
        SELECT o.*, k.tx_type,
               list_filter([{flags}], lambda f: f IS NOT NULL) AS quality_flags,
               row_number() OVER (PARTITION BY o.tx_id ORDER BY o.file_idx, o.stmt_idx,
                                  o.entry_no) AS dup_rank,
               o.tx_id IN (SELECT tx_id FROM existing_ids) AS is_existing
        FROM b_ok o
        JOIN b_kinds k
          ON k.description_key = coalesce(o.description, '')
         AND k.counterparty_name_norm = coalesce(o.counterparty_name_norm, '')
         AND k.amount_minor = sign(o.amount_minor)
         AND k.tx_code = coalesce(o.tx_code, '')
         AND k.cp_is_own = o.cp_is_own
        """,
        "DROP TABLE b_kinds",
        "DROP TABLE b_ok",
    ]


def transactions_sql(*, ingest_id: str) -> str:
    """New records in ``STORED_TRANSACTION_SCHEMA`` order, plus the ``month`` partition."""
    return f"""
    SELECT tx_id, bank_id, account_id, enterprise_id, statement_id, booked_at, value_date,
           amount_minor, currency, balance_after_minor, counterparty_name,
           counterparty_name_norm, counterparty_account, counterparty_bank, tx_type, tx_code,
           reference, end_to_end_id, description AS description_raw, source_file,
           location AS source_location, file_sha256, {_literal(ingest_id)} AS ingest_id,
           quality_flags, strftime(booked_at, '%Y-%m') AS month
    FROM b_rows WHERE dup_rank = 1 AND NOT is_existing
    """


def duplicates_sql(*, ingest_id: str) -> str:
    """Entries not stored because their ``tx_id`` is stored already or came earlier."""
    return f"""
    SELECT tx_id, bank_id,
           CASE WHEN is_existing THEN 'existing' ELSE 'in_batch' END AS kind,
           source_file, location AS source_location, file_sha256,
           {_literal(ingest_id)} AS ingest_id
    FROM b_rows WHERE dup_rank > 1 OR is_existing
    """


def quarantine_sql(*, bank_id: str, ingest_id: str, now: datetime) -> str:
    """Rejected entries in ``QUARANTINE_SCHEMA`` order."""
    return f"""
    SELECT {_literal(bank_id)} AS bank_id, q.source_file, q.location AS source_location,
           q.file_sha256, q.reject_field AS field, q.reject_reason AS reason, e.raw_text,
           {_literal(ingest_id)} AS ingest_id, {_timestamp(now)} AS quarantined_at
    FROM b_std q JOIN b_entries e USING (stmt_idx, entry_no)
    WHERE q.reject_reason IS NOT NULL
    """


_STATEMENT_TOTALS = f"""
    SELECT stmt_idx,
           count(*) FILTER (WHERE {BOOKED_OR_INVALID}) AS entry_count,
           count(*) FILTER (WHERE NOT {BOOKED_OR_INVALID}) AS pending_entries,
           coalesce(sum(amount_minor) FILTER (WHERE status = 'BOOK'), 0) AS entries_sum
    FROM b_std GROUP BY stmt_idx
"""


def statements_sql(*, bank_id: str, ingest_id: str, now: datetime) -> str:
    """Statements of the batch (those with an account) in ``STATEMENT_SCHEMA`` order."""
    return f"""
    SELECT s.statement_id, {_literal(bank_id)} AS bank_id, s.account_id,
           coalesce(k.enterprise_id, s.owner_enterprise_id) AS enterprise_id, s.owner_name,
           s.currency, s.opening_balance_minor, s.closing_balance_minor, s.period_start,
           s.period_end, coalesce(t.entry_count, 0) AS entry_count,
           s.pending + coalesce(t.pending_entries, 0) AS pending_count,
           CAST(coalesce(t.entries_sum, 0) AS BIGINT) AS entries_sum_minor,
           s.reconciliation_diff_minor = 0 AS reconciled, s.reconciliation_diff_minor,
           f.format, f.profile, f.source_file, s.location AS source_location, f.file_sha256,
           {_literal(ingest_id)} AS ingest_id, {_timestamp(now)} AS ingested_at
    FROM b_statements s
    JOIN b_files f ON f.file_idx = s.file_idx
    LEFT JOIN b_accounts k ON k.account_id = s.account_id
    LEFT JOIN ({_STATEMENT_TOTALS}) t ON t.stmt_idx = s.stmt_idx
    WHERE s.account_id IS NOT NULL
    """


def accounts_sql(*, bank_id: str, ingest_id: str, now: datetime) -> str:
    """``source = 'statement'`` account rows for accounts no register or earlier file named."""
    return f"""
    SELECT s.account_id, {_literal(bank_id)} AS bank_id,
           s.owner_enterprise_id AS enterprise_id, s.owner_name, s.owner_name_norm,
           s.currency, 'statement' AS source,
           f.source_file, s.location AS source_location, f.file_sha256,
           {_literal(ingest_id)} AS ingest_id, {_timestamp(now)} AS recorded_at
    FROM b_statements s
    JOIN b_files f ON f.file_idx = s.file_idx
    ANTI JOIN b_accounts k ON k.account_id = s.account_id
    WHERE s.account_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY s.account_id ORDER BY s.stmt_idx) = 1
    """


def sources_sql(*, bank_id: str, ingest_id: str, now: datetime) -> str:
    """One ``SOURCE_FILE_SCHEMA`` row per file of the batch, with its counts."""
    return f"""
    SELECT f.file_sha256, {_literal(bank_id)} AS bank_id, f.source_file, f.format, f.profile,
           'ingested' AS status, CAST(f.statements AS BIGINT) AS statements,
           coalesce(a.records, 0) AS records, coalesce(r.new_records, 0) AS new_records,
           coalesce(r.duplicates, 0) AS duplicates, coalesce(a.quarantined, 0) AS quarantined,
           CAST(f.pending + coalesce(a.pending_entries, 0) AS BIGINT) AS pending,
           {_literal(ingest_id)} AS ingest_id, {_timestamp(now)} AS ingested_at
    FROM b_files f
    LEFT JOIN (
        SELECT file_idx,
               count(*) FILTER (WHERE {BOOKED_OR_INVALID}) AS records,
               count(*) FILTER (WHERE reject_reason IS NOT NULL) AS quarantined,
               count(*) FILTER (WHERE NOT {BOOKED_OR_INVALID}) AS pending_entries
        FROM b_std GROUP BY file_idx
    ) a ON a.file_idx = f.file_idx
    LEFT JOIN (
        SELECT file_idx,
               count(*) FILTER (WHERE dup_rank = 1 AND NOT is_existing) AS new_records,
               count(*) FILTER (WHERE dup_rank > 1 OR is_existing) AS duplicates
        FROM b_rows GROUP BY file_idx
    ) r ON r.file_idx = f.file_idx
    ORDER BY f.file_idx
    """
