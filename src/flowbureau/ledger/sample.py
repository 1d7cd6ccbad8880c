"""Synthetic canonical batches for benchmarks, the documentation's worked example and tests.

Rules:
- :func:`sample_batch` returns ``(records, statements)`` in the stored schemas that pass the
  default contract: one statement per account covering ``days`` days from ``start``, entries
  that add up (opening + entries = closing), pseudonymous hex account ids, valid unified social
  credit codes, standard categories, UTC booking times inside the period.
- It is deterministic in its arguments (a seeded NumPy generator; no clock, no randomness from
  the environment), so a given call always yields the same bytes and the same leaf hashes.
- Realistic multi-bank data with ground truth comes from :mod:`flowbureau.synth`; this is only the
  smallest thing that exercises every column of the ledger's leaf format.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
from stdnum.cn import uscc

from flowbureau.schema import STATEMENT_SCHEMA, STORED_TRANSACTION_SCHEMA, TxType

__all__ = ["sample_batch"]

_NAMES = ["上海申华贸易有限公司", "Acme Trading Ltd", "杭州云帆科技股份有限公司", "王五"]
_TYPES = [t.value for t in TxType]


def _hex(*parts: object, size: int = 32) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:size]


def _credit_code(seed: int, i: int) -> str:
    body = f"9131{(seed * 7919 + i) % 10**4:04d}MA{(seed + i * 104729) % 10**7:07d}"
    return body + str(uscc.calc_check_digit(body))


def sample_batch(
    bank_id: str = "BANK01",
    *,
    records: int = 100,
    accounts: int = 3,
    seed: int = 0,
    start: date = date(2024, 1, 1),
    days: int = 31,
    ingest_id: str = "ingest-sample",
    ingested_at: datetime = datetime(2024, 3, 1, tzinfo=UTC),
) -> tuple[pa.Table, pa.Table]:
    """Records and statements of one bank for ``accounts`` accounts over ``days`` days."""
    rng = np.random.default_rng(seed)
    n = records
    account_of = np.sort(rng.integers(0, accounts, size=n)) if n else np.zeros(0, np.int64)
    amounts = rng.integers(1, 5_000_000, size=n) * np.where(rng.random(n) < 0.5, -1, 1)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    first_us = (
        int((datetime.combine(start, datetime.min.time(), UTC) - epoch).total_seconds()) * 10**6
    )
    offsets = rng.integers(0, days * 86_400 * 10**6 - 1, size=n)
    booked = first_us + np.sort(offsets)
    account_ids = [_hex(bank_id, "account", seed, a) for a in range(accounts)]
    codes = [_credit_code(seed, a) for a in range(accounts)]
    statement_ids = [f"{bank_id}-st-{seed}-{a}" for a in range(accounts)]
    openings = rng.integers(0, 10**9, size=accounts)
    source = f"banks/{bank_id}/statement-{seed}.csv"
    file_sha = _hex(source, size=64)
    # running balance per account (records are grouped by account, in booking order)
    cumulative = np.cumsum(amounts)
    first = np.searchsorted(account_of, account_of, side="left")
    balances = openings[account_of] + cumulative - (cumulative[first] - amounts[first])
    rows = {
        "tx_id": [_hex(bank_id, seed, i) for i in range(n)],
        "bank_id": [bank_id] * n,
        "account_id": [account_ids[a] for a in account_of],
        "enterprise_id": [codes[a] for a in account_of],
        "statement_id": [statement_ids[a] for a in account_of],
        "booked_at": pa.array(booked, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "value_date": pa.array(booked // (86_400 * 10**6), pa.int64())
        .cast(pa.int32())
        .cast(pa.date32()),
        "amount_minor": amounts.astype(np.int64),
        "currency": ["CNY"] * n,
        "balance_after_minor": balances,
        "counterparty_name": [_NAMES[i % len(_NAMES)] for i in range(n)],
        "counterparty_name_norm": [_NAMES[i % len(_NAMES)].casefold() for i in range(n)],
        "counterparty_account": [
            _hex(bank_id, "cp", seed, i % 17) if i % 5 else None for i in range(n)
        ],
        "counterparty_bank": ["中国工商银行" if i % 2 else None for i in range(n)],
        "tx_type": [_TYPES[i % len(_TYPES)] for i in range(n)],
        "tx_code": ["NTRF" if i % 3 else None for i in range(n)],
        "reference": [f"REF{seed}-{i}" for i in range(n)],
        "end_to_end_id": [None] * n,
        "description_raw": [f"货款 invoice {i}" for i in range(n)],
        "source_file": [source] * n,
        "source_location": [str(i + 2) for i in range(n)],
        "file_sha256": [file_sha] * n,
        "ingest_id": [ingest_id] * n,
        "quality_flags": [["outlier"] if i % 11 == 0 else [] for i in range(n)],
    }
    record_table = pa.table(rows, schema=STORED_TRANSACTION_SCHEMA)
    sums = np.bincount(account_of, weights=amounts, minlength=accounts).astype(np.int64)
    counts = np.bincount(account_of, minlength=accounts)
    end = start + timedelta(days=days - 1)
    statements = {
        "statement_id": statement_ids,
        "bank_id": [bank_id] * accounts,
        "account_id": account_ids,
        "enterprise_id": codes,
        "owner_name": [f"企业{a}" for a in range(accounts)],
        "currency": ["CNY"] * accounts,
        "opening_balance_minor": openings.astype(np.int64),
        "closing_balance_minor": (openings + sums).astype(np.int64),
        "period_start": [start] * accounts,
        "period_end": [end] * accounts,
        "entry_count": counts.astype(np.int64),
        "pending_count": [0] * accounts,
        "entries_sum_minor": sums,
        "reconciled": [True] * accounts,
        "reconciliation_diff_minor": [0] * accounts,
        "format": ["csv"] * accounts,
        "profile": ["generic"] * accounts,
        "source_file": [source] * accounts,
        "source_location": ["1"] * accounts,
        "file_sha256": [file_sha] * accounts,
        "ingest_id": [ingest_id] * accounts,
        "ingested_at": [ingested_at] * accounts,
    }
    return record_table, pa.table(statements, schema=STATEMENT_SCHEMA)
