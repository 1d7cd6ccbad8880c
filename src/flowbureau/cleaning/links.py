"""Cross-bank payment links: the payer's debit and the payee's credit of one payment.

Rules:
- A *candidate* pair is a debit D and a credit C on different accounts with
  ``C.amount_minor = -D.amount_minor``, the same currency, booking dates at most
  ``link_window_days`` calendar days apart (either order; days in ``settings.timezone``, the
  banks' local calendar, so a date-only MT940 entry and a timed camt entry compare as
  printed), and one of these identity matches:
  ``D.counterparty_account = C.account_id`` or ``C.counterparty_account = D.account_id``
  (pseudonyms, matched_by ``account``); or both names agree: D's normalised counterparty
  name is C's account owner's and C's is D's owner's (matched_by ``name``). Banks may be the
  same (two enterprises at one bank) or differ.
- Score = 2 per account match (each direction) + 1 per name match (each direction) + 2 if
  both carry the same end-to-end id. One-to-one matching: candidates are ordered by day gap,
  then score (higher first), then exact time gap, then ``tx_id``s, and a pair is linked when
  each side is the other's first choice among the still-unlinked ("mutual best"); rounds
  repeat until no pair is left. With this strict order the result is the greedy matching
  (always take the best remaining pair) computed without a Python loop over rows.
- Links are never undone by later ingests: records already linked are not candidates, and a
  run links only pairs with at least one record of that run. Both records are kept; each gets
  a row in the ``payment_links`` annotation (scope = the ingest id) with the shared
  ``payment_link_id`` = first 32 hex digits of SHA-256(``link:<payer tx_id>:<payee tx_id>``).
- Everything is DuckDB SQL over the warehouse views (``stored_transactions``, ``accounts``,
  ``payment_links``); the caller runs :func:`candidates_sql`, then :data:`ROUND_SQL` until it
  links nothing, then :func:`annotation_sql`.
"""

from __future__ import annotations

__all__ = ["MAX_ROUNDS", "ROUND_SQL", "annotation_sql", "candidates_sql"]

MAX_ROUNDS = 100
"""Safety bound on matching rounds (each round links at least the best remaining pair)."""

_SIDE = """
CREATE OR REPLACE TEMP TABLE link_side AS
WITH span AS (  -- the run's records, widened by the window (+1 day for time zone shifts)
    SELECT min(booked_at) - INTERVAL {margin} DAY AS low,
           max(booked_at) + INTERVAL {margin} DAY AS high
    FROM stored_transactions WHERE ingest_id = {run}
)
SELECT t.tx_id, t.account_id, CAST(timezone({tz}, t.booked_at) AS DATE) AS day,
       epoch(t.booked_at) AS ts,
       t.amount_minor, t.currency, t.counterparty_account, t.counterparty_name_norm,
       t.end_to_end_id, a.owner_name_norm, t.ingest_id = {run} AS is_new,
       hash(t.account_id) AS k_account, {key_cp_account} AS k_cp_account,
       {key_owner} AS k_owner, {key_cp_name} AS k_cp_name
FROM stored_transactions t
JOIN span ON t.booked_at BETWEEN span.low AND span.high
LEFT JOIN accounts a USING (account_id)
ANTI JOIN payment_links l USING (tx_id)
WHERE t.amount_minor <> 0
"""

_HITS = """
SELECT d.rowid AS payer_row, c.rowid AS payee_row
FROM d JOIN c ON {on} AND c.amount_minor = -d.amount_minor
WHERE (d.is_new OR c.is_new) AND abs(date_diff('day', d.day, c.day)) <= {window}
"""

_NARROW = "rowid, amount_minor, day, is_new, k_account, k_cp_account, k_owner, k_cp_name"


def _key(column: str) -> str:
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE hash({column}) END"


def candidates_sql(*, ingest_id: str, window_days: int, timezone: str) -> list[str]:
    """Statements creating ``link_cand`` (candidate pairs with gaps and score) and an empty
    ``link_pairs``; days are calendar days in ``timezone``.

    Only records within the window of the run's own records are read (``link_side``). The
    three identity paths (payer names the payee's account, payee names the payer's, both
    names agree) are equi-joins on 64-bit hashes of the texts and the amount, carrying
    nothing but numbers (``link_hits``: a superset, since equal texts have equal hashes);
    the texts and every other condition are then checked exactly on those few pairs.
    """
    run = "'" + ingest_id.replace("'", "''") + "'"
    tz = "'" + timezone.replace("'", "''") + "'"
    window = int(window_days)
    paths = [
        "c.k_account = d.k_cp_account",
        "d.k_account = c.k_cp_account",
        "c.k_owner = d.k_cp_name AND c.k_cp_name = d.k_owner",
    ]
    union = " UNION ".join(_HITS.format(on=on, window=window) for on in paths)
    return [
        _SIDE.format(
            run=run,
            tz=tz,
            margin=window + 1,
            key_cp_account=_key("t.counterparty_account"),
            key_owner=_key("a.owner_name_norm"),
            key_cp_name=_key("t.counterparty_name_norm"),
        ),
        f"""
        CREATE OR REPLACE TEMP TABLE link_hits AS
        WITH d AS (SELECT {_NARROW} FROM link_side WHERE amount_minor < 0),
             c AS (SELECT {_NARROW} FROM link_side WHERE amount_minor > 0)
        {union}
        """,
        """
        CREATE OR REPLACE TEMP TABLE link_cand AS
        SELECT payer_tx, payee_tx, day_gap, time_gap,
               CASE WHEN acct_fwd OR acct_back THEN 'account' ELSE 'name' END AS matched_by,
               2 * acct_fwd::INT + 2 * acct_back::INT + name_fwd::INT + name_back::INT
                 + 2 * same_e2e::INT AS score
        FROM (
            SELECT d.tx_id AS payer_tx, c.tx_id AS payee_tx,
                   abs(date_diff('day', d.day, c.day)) AS day_gap,
                   abs(c.ts - d.ts) AS time_gap,
                   coalesce(d.counterparty_account = c.account_id, false) AS acct_fwd,
                   coalesce(c.counterparty_account = d.account_id, false) AS acct_back,
                   coalesce(d.counterparty_name_norm = c.owner_name_norm, false) AS name_fwd,
                   coalesce(c.counterparty_name_norm = d.owner_name_norm, false) AS name_back,
                   coalesce(d.end_to_end_id = c.end_to_end_id, false) AS same_e2e
            FROM link_hits h
            JOIN link_side d ON d.rowid = h.payer_row
            JOIN link_side c ON c.rowid = h.payee_row
            WHERE c.currency = d.currency AND d.account_id <> c.account_id
        )
        WHERE acct_fwd OR acct_back OR (name_fwd AND name_back)
        """,
        "CREATE OR REPLACE TEMP TABLE link_pairs AS SELECT * FROM link_cand LIMIT 0",
        "DROP TABLE link_hits",
        "DROP TABLE link_side",
    ]


ROUND_SQL = [
    """
    CREATE OR REPLACE TEMP TABLE link_round AS
    SELECT payer_tx, payee_tx, day_gap, time_gap, matched_by, score FROM (
        SELECT *,
          row_number() OVER (PARTITION BY payer_tx
                             ORDER BY day_gap, score DESC, time_gap, payee_tx) AS rank_payer,
          row_number() OVER (PARTITION BY payee_tx
                             ORDER BY day_gap, score DESC, time_gap, payer_tx) AS rank_payee
        FROM link_cand)
    WHERE rank_payer = 1 AND rank_payee = 1
    """,
    "INSERT INTO link_pairs SELECT * FROM link_round",
    """
    DELETE FROM link_cand WHERE payer_tx IN (SELECT payer_tx FROM link_round)
                             OR payee_tx IN (SELECT payee_tx FROM link_round)
    """,
]
"""One matching round; afterwards ``SELECT count(*) FROM link_round`` says how many it linked."""


def annotation_sql(*, ingest_id: str) -> str:
    """SQL for the ``payment_links`` annotation rows (two per linked pair)."""
    run = "'" + ingest_id.replace("'", "''") + "'"
    link_id = "left(sha256('link:' || payer_tx || ':' || payee_tx), 32)"
    columns = (
        "matched_by, CAST(score AS INTEGER) AS match_score, CAST(day_gap AS INTEGER) AS day_gap"
    )
    return f"""
    SELECT payer_tx AS tx_id, {link_id} AS payment_link_id, payee_tx AS linked_tx_id,
           'payer' AS role, {columns}, {run} AS ingest_id FROM link_pairs
    UNION ALL
    SELECT payee_tx, {link_id}, payer_tx, 'payee', {columns}, {run} FROM link_pairs
    """
