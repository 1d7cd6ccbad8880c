"""The cleaning of one batch, as DuckDB SQL over the batch's registered Arrow relations.

Input relations (registered by :mod:`flowbureau.ingestion`; clear account numbers are
already replaced by pseudonyms and never reach SQL):

- ``b_files``: ``file_idx``, ``source_file``, ``file_sha256``, ``format``, ``profile``,
  ``statements``, ``pending`` (entries the reader reported as pending).
- ``b_statements``: ``stmt_idx``, ``file_idx``, ``statement_id``, ``location``,
  ``account_id``, ``owner_name``, ``owner_name_norm``, ``owner_enterprise_id`` (a valid
  credit code printed on the statement), ``currency``, balances, period, ``pending``.
- ``b_entries``: ``row_idx`` (its position in the table), ``stmt_idx``, ``entry_no`` (file
  order) and the fields of ``RAW_ENTRY_SCHEMA`` with ``account_id`` / ``counterparty_account``
  pseudonyms and ``counterparty_name_norm`` added.
- ``b_accounts``: ``account_id``, ``enterprise_id``, ``owner_name_norm`` of every known
  account (the ``accounts`` view, registers of this run included).
- ``existing_ids``: ``tx_id`` of stored records that could repeat this batch's (same bank,
  neighbouring months).

Steps, in order: ``b_stmts`` adds each statement's reconciliation difference; ``b_std`` (a
view: wide rows are never copied) standardises every entry (UTC time, currency, the
account's enterprise) and decides completeness (``reject_reason`` / ``reject_field``);
``b_counts`` / ``b_rejects`` tally it per statement and keep the rejected entries;
``b_ok`` (a view) keeps the admitted entries; ``b_kinds`` categorises
(:mod:`.rules`) each distinct (description, counterparty name, direction, transaction code,
own-account) combination once - texts repeat, so the rule regexes run far fewer times than
once per entry; ``b_rows`` is the narrow per-entry result: ``tx_id``
(:mod:`.identifiers`), category, quality flags (:mod:`.flags`), time, currency and
enterprise, keyed by ``row_idx``.

Each step is one set-based pass. The occurrence index of ``tx_id`` and the in-batch duplicate
rank are windows only over the rare rows that need them: ``tx_id`` is first computed with
occurrence 0; entries of one file with equal identity fields then share it, and only those
groups are ranked and re-hashed (``b_repeat``). Likewise only ``tx_id`` s seen twice are ranked
(``b_dups``) and only stored ones are looked up (``b_existing``). ``b_marked`` (a view) joins
these marks on; the ``*_sql`` functions then select the rows of each warehouse table in its
exact schema, and :func:`new_rows_sql` the narrow columns of the new records, which the
caller completes from the Arrow entries (see :mod:`flowbureau.ingestion`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from flowbureau.cleaning.flags import QualityFlag
from flowbureau.cleaning.identifiers import tx_id_sql
from flowbureau.cleaning.normalise import fold_width_sql
from flowbureau.cleaning.rules import RuleSet, categorise_sql, returned_sql
from flowbureau.schema import CURRENCY_EXPONENTS

__all__ = [
    "BOOKED_OR_INVALID",
    "NEW",
    "accounts_sql",
    "duplicates_sql",
    "marks_sql",
    "new_rows_sql",
    "quarantine_sql",
    "reconcile_sql",
    "rows_sql",
    "sources_sql",
    "standardise_sql",
    "statements_sql",
    "tallies_sql",
]

BOOKED_OR_INVALID = "(status = 'BOOK' OR starts_with(status, 'INVALID:'))"
"""Entries that count as records of a file (the rest are pending / informational)."""

NEW = "(dup_rank = 1 AND NOT is_existing)"
"""``b_marked`` rows stored as new records (the rest are duplicates)."""

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


def _flags_sql(flags: Sequence[tuple[QualityFlag, str]]) -> str:
    """``quality_flags`` of an entry: the flags whose condition holds, in the given order.

    The conditions add up to a bit mask that picks one of the 2^n possible lists from a
    constant list of lists (cheaper per row than filtering a list built per row).
    """
    mask = " + ".join(
        f"CASE WHEN {condition} THEN {1 << bit} ELSE 0 END"
        for bit, (_, condition) in enumerate(flags)
    )
    lists = ", ".join(
        "["
        + ", ".join(_literal(flag.value) for bit, (flag, _) in enumerate(flags) if m >> bit & 1)
        + "]::VARCHAR[]"
        for m in range(1 << len(flags))
    )
    return f"([{lists}])[({mask}) + 1]"


def reconcile_sql() -> str:
    """``b_stmts``: ``b_statements`` plus its file's ``source_file`` and ``file_sha256`` and
    ``reconciliation_diff_minor``, the statement's
    closing balance minus (opening + its entries), NULL when either balance is missing or an
    entry is in another currency (:func:`flowbureau.formats.reconcile`, for every statement
    of the batch in one pass)."""
    return """
    CREATE OR REPLACE TEMP TABLE b_stmts AS
    SELECT s.*, f.source_file, f.file_sha256,
           CASE WHEN s.opening_balance_minor IS NULL OR s.closing_balance_minor IS NULL
                  OR coalesce(t.foreign_entries, 0) > 0 THEN NULL
                ELSE CAST(s.closing_balance_minor
                          - (s.opening_balance_minor + coalesce(t.total, 0)) AS BIGINT)
           END AS reconciliation_diff_minor
    FROM b_statements s
    JOIN b_files f USING (file_idx)
    LEFT JOIN (
        SELECT e.stmt_idx, sum(e.amount_minor) AS total,
               count(*) FILTER (WHERE e.currency IS DISTINCT FROM s.currency) AS foreign_entries
        FROM b_entries e JOIN b_statements s USING (stmt_idx)
        GROUP BY e.stmt_idx
    ) t USING (stmt_idx)
    """


def standardise_sql(*, timezone: str) -> str:
    """``b_std`` (a view): every entry, standardised, with its completeness verdict.

    ``reject_reason`` is the reader's ``INVALID:`` reason, ``missing account number`` or
    ``unknown currency <code>``; ``reject_field`` names the field (for reader reasons, the
    field the reason mentions).
    """
    currencies = ", ".join(f"({_literal(c)})" for c in sorted(CURRENCY_EXPONENTS))
    return f"""
    CREATE OR REPLACE TEMP VIEW b_std AS
    SELECT e.* EXCLUDE (currency), upper(trim(e.currency)) AS currency,
           s.file_idx, s.statement_id, s.source_file, s.file_sha256,
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
    JOIN b_stmts s USING (stmt_idx)
    LEFT JOIN b_accounts k ON k.account_id = e.account_id
    LEFT JOIN (VALUES {currencies}) iso(code) ON iso.code = upper(trim(e.currency))
    """


def tallies_sql() -> list[str]:
    """Statements building ``b_counts`` (per statement: ``records``, ``pending_entries``,
    ``entries_sum`` of booked amounts, ``quarantined``) and ``b_rejects`` (the rejected
    entries with their source, reason and raw text): one pass over ``b_std`` each, so the
    per-file and per-statement tables and the report never scan the entries again."""
    return [
        f"""
        CREATE OR REPLACE TEMP TABLE b_counts AS
        SELECT stmt_idx, any_value(file_idx) AS file_idx,
               count(*) FILTER (WHERE {BOOKED_OR_INVALID}) AS records,
               count(*) FILTER (WHERE NOT {BOOKED_OR_INVALID}) AS pending_entries,
               coalesce(sum(amount_minor) FILTER (WHERE status = 'BOOK'), 0) AS entries_sum,
               count(*) FILTER (WHERE reject_reason IS NOT NULL) AS quarantined
        FROM b_std GROUP BY stmt_idx
        """,
        """
        CREATE OR REPLACE TEMP TABLE b_rejects AS
        SELECT stmt_idx, entry_no, source_file, location, file_sha256, reject_field,
               reject_reason, raw_text
        FROM b_std WHERE reject_reason IS NOT NULL
        """,
    ]


def rows_sql(*, bank_id: str, rules: RuleSet) -> list[str]:
    """Statements building ``b_ok``, ``b_kinds`` and ``b_rows`` (admitted entries: ``row_idx``,
    ``file_idx``, ``stmt_idx``, ``entry_no``, ``tx_id``, ``tx_type``, ``quality_flags``,
    ``booked_at``, ``enterprise_id``, ``currency``, ``amount_minor``, ``month``), with the
    occurrence index of repeated entries applied (``b_repeat``)."""
    flags = _flags_sql(
        (
            (QualityFlag.ENTERPRISE_UNKNOWN, "o.enterprise_id IS NULL"),
            (QualityFlag.TIMEZONE_ASSUMED, "o.booked_offset_minutes IS NULL"),
            (QualityFlag.RETURNED_PAYMENT, "o.returned"),
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
        CREATE OR REPLACE TEMP VIEW b_ok AS
        SELECT o.*, {_literal(bank_id)} AS bank_id,
               coalesce(c.enterprise_id = o.enterprise_id, false)
                 OR coalesce(o.counterparty_name_norm = o.owner_name_norm, false) AS cp_is_own
        FROM b_std o LEFT JOIN b_accounts c ON c.account_id = o.counterparty_account
        WHERE o.status = 'BOOK' AND o.reject_reason IS NULL
        """,
        f"""
        CREATE OR REPLACE TEMP TABLE b_kinds AS
        SELECT description_key AS k_description, counterparty_name_norm AS k_counterparty,
               amount_minor AS k_direction, tx_code AS k_code, cp_is_own AS k_own,
               {categorise_sql(rules)} AS tx_type, {returned_sql(rules)} AS returned
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
        # The previous balance is a window over four numbers per entry, joined back by
        # row_idx: sorting the wide rows (tx_id and the rest) for it costs twice as much.
        f"""
        CREATE OR REPLACE TEMP TABLE b_rows AS
        WITH prev AS (
            SELECT row_idx,
                   lag(balance_after_minor) OVER (PARTITION BY stmt_idx ORDER BY entry_no)
                     AS prev_balance
            FROM b_ok
        )
        SELECT o.row_idx, o.file_idx, o.stmt_idx, o.entry_no, o.tx_id, o.tx_type,
               {flags} AS quality_flags,
               o.booked_at, o.enterprise_id, o.currency, o.amount_minor,
               strftime(make_timestamp(epoch_us(o.booked_at)), '%Y-%m') AS month  -- no ICU
        FROM (
            SELECT e.row_idx, e.file_idx, e.stmt_idx, e.entry_no, {tx_id_sql("0")} AS tx_id,
                   k.tx_type, k.returned, e.booked_at, e.enterprise_id, e.currency,
                   e.amount_minor, e.balance_after_minor, e.booked_offset_minutes,
                   e.reconciliation_diff_minor, p.prev_balance
            FROM b_ok e
            JOIN b_kinds k
              ON k.k_description = coalesce(e.description, '')
             AND k.k_counterparty = coalesce(e.counterparty_name_norm, '')
             AND k.k_direction = sign(e.amount_minor)
             AND k.k_code = coalesce(e.tx_code, '')
             AND k.k_own = e.cp_is_own
            JOIN prev p ON p.row_idx = e.row_idx
        ) o
        """,
        # Entries of one file with all identity fields equal got the same tx_id above (they
        # hashed occurrence 0): rank them in file order and re-hash the later ones.
        f"""
        CREATE OR REPLACE TEMP TABLE b_repeat AS
        WITH groups AS (
            SELECT file_idx, tx_id FROM b_rows GROUP BY ALL HAVING count(*) > 1
        ),
        ranked AS (
            SELECT row_idx, row_number() OVER (PARTITION BY file_idx, tx_id
                                           ORDER BY stmt_idx, entry_no) - 1 AS occurrence
            FROM b_rows SEMI JOIN groups USING (file_idx, tx_id)
        )
        SELECT row_idx, {tx_id_sql("occurrence")} AS tx_id
        FROM b_ok JOIN ranked USING (row_idx)
        WHERE occurrence > 0
        """,
        "UPDATE b_rows SET tx_id = p.tx_id FROM b_repeat p WHERE b_rows.row_idx = p.row_idx",
        "DROP TABLE b_repeat",
        "DROP TABLE b_kinds",
    ]


def marks_sql() -> list[str]:
    """Statements building ``b_marked`` (a view): ``b_rows`` plus ``dup_rank`` (> 1 for an
    entry whose ``tx_id`` came earlier in the batch) and ``is_existing`` (already stored;
    needs ``existing_ids``)."""
    return [
        """
        CREATE OR REPLACE TEMP TABLE b_dups AS
        WITH repeated AS (SELECT tx_id FROM b_rows GROUP BY tx_id HAVING count(*) > 1)
        SELECT row_idx, row_number() OVER (PARTITION BY tx_id
                                       ORDER BY file_idx, stmt_idx, entry_no) AS dup_rank
        FROM b_rows SEMI JOIN repeated USING (tx_id)
        """,
        """
        CREATE OR REPLACE TEMP TABLE b_existing AS
        SELECT row_idx FROM b_rows SEMI JOIN existing_ids USING (tx_id)
        """,
        """
        CREATE OR REPLACE TEMP VIEW b_marked AS
        SELECT r.*, coalesce(d.dup_rank, 1) AS dup_rank, x.row_idx IS NOT NULL AS is_existing
        FROM b_rows r LEFT JOIN b_dups d USING (row_idx) LEFT JOIN b_existing x USING (row_idx)
        """,
    ]


def new_rows_sql() -> str:
    """The computed columns of the new records (``row_idx`` points into ``b_entries``;
    ``month`` is the ``YYYY-MM`` of ``booked_at`` that partitions the files), in no order."""
    return f"""
    SELECT row_idx, tx_id, tx_type, quality_flags, booked_at, enterprise_id, currency, month
    FROM b_marked WHERE {NEW}
    """


def duplicates_sql(*, bank_id: str, ingest_id: str) -> str:
    """Entries not stored because their ``tx_id`` is stored already or came earlier."""
    return f"""
    SELECT m.tx_id, {_literal(bank_id)} AS bank_id,
           CASE WHEN m.is_existing THEN 'existing' ELSE 'in_batch' END AS kind,
           f.source_file, e.location AS source_location, f.file_sha256,
           {_literal(ingest_id)} AS ingest_id
    FROM (SELECT * FROM b_marked WHERE NOT {NEW}) m
    JOIN b_entries e USING (row_idx)
    JOIN b_files f ON f.file_idx = m.file_idx
    """


def quarantine_sql(*, bank_id: str, ingest_id: str, now: datetime) -> str:
    """Rejected entries in ``QUARANTINE_SCHEMA`` order."""
    return f"""
    SELECT {_literal(bank_id)} AS bank_id, source_file, location AS source_location,
           file_sha256, reject_field AS field, reject_reason AS reason, raw_text,
           {_literal(ingest_id)} AS ingest_id, {_timestamp(now)} AS quarantined_at
    FROM b_rejects
    """


def statements_sql(*, bank_id: str, ingest_id: str, now: datetime) -> str:
    """Statements of the batch (those with an account) in ``STATEMENT_SCHEMA`` order."""
    return f"""
    SELECT s.statement_id, {_literal(bank_id)} AS bank_id, s.account_id,
           coalesce(k.enterprise_id, s.owner_enterprise_id) AS enterprise_id, s.owner_name,
           s.currency, s.opening_balance_minor, s.closing_balance_minor, s.period_start,
           s.period_end, coalesce(t.records, 0) AS entry_count,
           s.pending + coalesce(t.pending_entries, 0) AS pending_count,
           CAST(coalesce(t.entries_sum, 0) AS BIGINT) AS entries_sum_minor,
           s.reconciliation_diff_minor = 0 AS reconciled, s.reconciliation_diff_minor,
           f.format, f.profile, f.source_file, s.location AS source_location, f.file_sha256,
           {_literal(ingest_id)} AS ingest_id, {_timestamp(now)} AS ingested_at
    FROM b_stmts s
    JOIN b_files f ON f.file_idx = s.file_idx
    LEFT JOIN b_accounts k ON k.account_id = s.account_id
    LEFT JOIN b_counts t ON t.stmt_idx = s.stmt_idx
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
           CAST(coalesce(a.records, 0) AS BIGINT) AS records,
           coalesce(r.new_records, 0) AS new_records, coalesce(r.duplicates, 0) AS duplicates,
           CAST(coalesce(a.quarantined, 0) AS BIGINT) AS quarantined,
           CAST(f.pending + coalesce(a.pending_entries, 0) AS BIGINT) AS pending,
           {_literal(ingest_id)} AS ingest_id, {_timestamp(now)} AS ingested_at
    FROM b_files f
    LEFT JOIN (
        SELECT file_idx, sum(records) AS records, sum(quarantined) AS quarantined,
               sum(pending_entries) AS pending_entries
        FROM b_counts GROUP BY file_idx
    ) a ON a.file_idx = f.file_idx
    LEFT JOIN (
        SELECT file_idx,
               count(*) FILTER (WHERE {NEW}) AS new_records,
               count(*) FILTER (WHERE NOT {NEW}) AS duplicates
        FROM b_marked GROUP BY file_idx
    ) r ON r.file_idx = f.file_idx
    ORDER BY f.file_idx
    """
