"""Pre-processing: each account's entries in ledger order, values the data determines, rule flags.

Rules:
- **Ledger order.** An account's sequence is its statements by period start, and within a
  statement the entries in the order the file prints them (CSV/MT940 line, camt ``Ntry[i]``).
  A statement printed newest first (most consecutive booking times decreasing) is read
  backwards. The file order, not the booking time, is the order: a mistyped booking date then
  shows as a jump back or forth in time instead of silently moving the entry.
- **Fills** (one record each: field, value, method, evidence; nothing is guessed):
  ``balance_after_minor`` when the previous entry's balance plus this amount, or the next
  entry's balance minus its amount, gives it (both when both exist and they must agree, else
  no fill); ``counterparty_name`` when the counterparty account is known and the account's
  own history (else the whole consortium's) names it one way only, by majority when it names
  it several ways. Fills are shown to analysts and flagged in the view (``balance_filled``,
  ``counterparty_filled``); the model sees only that a value was missing, never the filled
  value (a balance filled from an amount would hide that amount's error).
- **Rule flags** (one record each: rule, anomaly type, confidence, suggested value, evidence):

  ======================== ============== ==================================================
  rule                     type           proof
  ======================== ============== ==================================================
  balance_decimal_slip     typo_x10/x100  the running balance moved by ``d`` and the entry
                                          says ``10 d`` or ``100 d``: suggested ``d`` (exact)
  statement_decimal_slip   typo_x10/x100  the statement does not reconcile by ``diff`` and
                                          exactly one entry ``a`` has ``a/10 - a = diff`` (or
                                          ``/100``): suggested ``a/10`` (``a/100``)
  value_date_gap           date_shift     booking day (``settings.timezone``) differs from the
                                          value date: suggested date = value date
  near_duplicate           duplicate_...  an earlier entry of the account, at most 3 days
                                          before, has the same amount, counterparty and text
  round_burst              round_burst    5 or more outflows of whole multiples of 10,000
                                          major units within 3 days
  circular_flow            circular_flow  A pays B, B pays C, C pays A (consortium accounts)
                                          within 10 days, each leg within 2 % of the first
  ======================== ============== ==================================================

  Rules may look at a whole statement or the whole stored history (they are checks of what
  was delivered, not predictions); that is why the model's features do not use them, except
  the per-entry facts that only need earlier entries (balance movement, value date, earlier
  equal entries), which :mod:`~flowbureau.anomaly.features` computes itself.
- Amounts are integer minor units throughout; a suggested amount is an exact integer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from flowbureau.anomaly._sequence import lag_index, sequence_codes

if TYPE_CHECKING:
    from flowbureau.storage.engine import Engine

__all__ = [
    "FILL_COLUMNS",
    "FLAG_COLUMNS",
    "ROUND_UNIT_MAJOR",
    "Preprocessed",
    "counterparty_keys",
    "fill_missing",
    "load_transactions",
    "local_days",
    "multiple_of_major",
    "order_ledger",
    "preprocess",
    "round_outflows",
    "rule_flags",
]

ROUND_UNIT_MAJOR = 10_000
"""Whole multiples of this many major units (yuan) count as round amounts for burst rules."""

FILL_COLUMNS = ("tx_id", "field", "value", "method", "evidence")
"""Columns of the fill records."""

FLAG_COLUMNS = (
    "tx_id",
    "rule",
    "anomaly_type",
    "confidence",
    "suggested_amount_minor",
    "suggested_value_date",
    "evidence",
)
"""Columns of the rule-flag records (``suggested_*`` null when the rule proposes nothing)."""

_DAY_US = 86_400 * 1_000_000

_LOAD_SQL = """
WITH st AS (
  SELECT statement_id, any_value(period_start) AS period_start,
         any_value(reconciliation_diff_minor) AS diff
  FROM statements GROUP BY statement_id
), members AS (SELECT DISTINCT account_id FROM accounts)
SELECT t.tx_id, t.bank_id, t.account_id, t.enterprise_id, t.statement_id,
       epoch_us(t.booked_at) AS booked_us,
       coalesce(date_diff('day', DATE '1970-01-01', t.value_date), 0) AS value_day,
       t.value_date IS NOT NULL AS has_value_date,
       t.amount_minor, t.currency,
       coalesce(t.balance_after_minor, 0) AS balance_after_minor,
       t.balance_after_minor IS NOT NULL AS has_balance,
       t.counterparty_name, t.counterparty_name_norm, t.counterparty_account,
       t.tx_type, t.reference, t.description_raw, t.source_location,
       t.quality_flags,
       coalesce(date_diff('day', DATE '1970-01-01', st.period_start), 0) AS period_day,
       coalesce(st.diff, 0) AS statement_diff_minor,
       coalesce(TRY_CAST(regexp_extract(t.source_location, '(\\d+)\\]?$', 1) AS BIGINT), 0)
         AS location_index,
       m.account_id IS NOT NULL AS cp_member
FROM transactions t
LEFT JOIN st USING (statement_id)
LEFT JOIN members m ON m.account_id = t.counterparty_account
{where}
"""


def load_transactions(engine: Engine, *, account_id: str | None = None) -> pd.DataFrame:
    """Every stored transaction (or one account's) with what pre-processing needs, in ledger
    order (:func:`order_ledger`). Money stays integer; nulls of integer columns are 0 plus a
    ``has_*`` column."""
    where, params = ("WHERE t.account_id = ?", [account_id]) if account_id else ("", [])
    table = engine.query(_LOAD_SQL.format(where=where), params)
    frame = table.to_pandas()
    for column in ("counterparty_name", "counterparty_name_norm", "counterparty_account"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame["quality_flags"] = [list(v) if v is not None else [] for v in frame["quality_flags"]]
    return order_ledger(frame)


def order_ledger(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort ``frame`` into ledger order and number each account's entries (``position``).

    Needs ``account_id``, ``period_day``, ``statement_id``, ``location_index``, ``booked_us``
    and ``tx_id``; adds ``sequence_id`` (the account) and ``position`` (0-based).
    """
    keys = ["account_id", "period_day", "statement_id", "location_index", "tx_id"]
    ordered = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    same = ordered["statement_id"].to_numpy()[1:] == ordered["statement_id"].to_numpy()[:-1]
    step = np.diff(ordered["booked_us"].to_numpy())
    statements = ordered["statement_id"].to_numpy()[1:][same]
    votes = (
        pd.DataFrame({"statement_id": statements, "down": step[same] < 0, "up": step[same] > 0})
        .groupby("statement_id")[["down", "up"]]
        .sum()
    )
    backwards = set(votes.index[votes["down"] > votes["up"]])
    if backwards:
        flip = ordered["statement_id"].isin(backwards).to_numpy()
        ordered["location_index"] = np.where(
            flip, -ordered["location_index"].to_numpy(), ordered["location_index"].to_numpy()
        )
        ordered = ordered.sort_values(keys, kind="stable").reset_index(drop=True)
    ordered["sequence_id"] = ordered["account_id"]
    ordered["position"] = ordered.groupby("account_id", sort=False).cumcount().astype(np.int64)
    return ordered


@dataclass(frozen=True, slots=True)
class Preprocessed:
    """The ledger-ordered frame with fills applied, and the fill and rule-flag records."""

    frame: pd.DataFrame
    fills: pd.DataFrame
    flags: pd.DataFrame


def preprocess(frame: pd.DataFrame, *, timezone: str = "Asia/Shanghai") -> Preprocessed:
    """Fill what the data determines and raise the rule flags (see the module rules);
    ``timezone`` gives the calendar day of a booking time (``settings.timezone``)."""
    filled, fills = fill_missing(frame)
    return Preprocessed(filled, fills, rule_flags(filled, timezone=timezone))


def fill_missing(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill missing balances and counterparty names (module rules); return the frame with
    ``balance_filled`` / ``counterparty_filled`` columns and the fill records."""
    out = frame.copy()
    records: list[dict[str, object]] = []
    codes = sequence_codes(out["sequence_id"])
    amount = out["amount_minor"].to_numpy(np.int64)
    balance = out["balance_after_minor"].to_numpy(np.int64).copy()
    has = out["has_balance"].to_numpy(bool)
    tx_ids = out["tx_id"].to_numpy(object)
    before, after = lag_index(codes, 1), lag_index(codes, -1)
    prev_ok = ~has & (before >= 0) & has[np.maximum(before, 0)]
    next_ok = ~has & (after >= 0) & has[np.maximum(after, 0)]
    balance_filled = np.zeros(len(out), dtype=bool)
    for i in np.flatnonzero(prev_ok | next_ok):
        candidates: list[tuple[int, str]] = []
        if prev_ok[i]:
            b, a = int(balance[before[i]]), int(amount[i])
            candidates.append((b + a, f"previous balance {b} + amount {a}"))
        if next_ok[i]:
            b, a = int(balance[after[i]]), int(amount[after[i]])
            candidates.append((b - a, f"next balance {b} - next amount {a}"))
        if len({v for v, _ in candidates}) != 1:
            continue  # the two sides disagree: an amount near here is wrong, fill nothing
        if len(candidates) == 2:
            method = "previous_and_next"
        else:
            method = "previous" if prev_ok[i] else "next"
        value = candidates[0][0]
        balance[i] = value
        balance_filled[i] = True
        records.append(
            {
                "tx_id": tx_ids[i],
                "field": "balance_after_minor",
                "value": str(value),
                "method": f"balance_continuity_{method}",
                "evidence": " = ".join(e for _, e in candidates) + f" = {value}",
            }
        )
    out["balance_after_minor"] = balance
    out["balance_filled"] = balance_filled
    out["counterparty_filled"] = False
    missing = (out["counterparty_name"].isna() & out["counterparty_account"].notna()).to_numpy()
    if missing.any():
        known = out.loc[out["counterparty_name"].notna() & out["counterparty_account"].notna()]
        own = _majority(known, ["account_id", "counterparty_account"])
        anyone = _majority(known, ["counterparty_account"])
        names = out["counterparty_name"].to_numpy(object).copy()
        norms = out["counterparty_name_norm"].to_numpy(object).copy()
        filled = np.zeros(len(out), dtype=bool)
        accounts = out["account_id"].to_numpy(object)
        cps = out["counterparty_account"].to_numpy(object)
        for i in np.flatnonzero(missing):
            found = own.get((accounts[i], cps[i]))
            scope = "this account's history"
            if found is None:
                found, scope = anyone.get((cps[i],)), "the consortium's history"
            if found is None:
                continue
            name, norm, votes, total = found
            names[i], norms[i], filled[i] = name, norm, True
            records.append(
                {
                    "tx_id": tx_ids[i],
                    "field": "counterparty_name",
                    "value": name,
                    "method": "counterparty_history",
                    "evidence": f"{votes} of {total} entries with this counterparty account in "
                    f"{scope} name it {name!r}",
                }
            )
        out["counterparty_name"] = names
        out["counterparty_name_norm"] = norms
        out["counterparty_filled"] = filled
    fills = pd.DataFrame.from_records(records, columns=list(FILL_COLUMNS))
    return out, fills


def _majority(
    known: pd.DataFrame, keys: list[str]
) -> dict[tuple[object, ...], tuple[str, str, int, int]]:
    """Per key: the most frequent (name, normalised name), its count and the key's total."""
    if known.empty:
        return {}
    counts = (
        known.groupby([*keys, "counterparty_name", "counterparty_name_norm"])
        .size()
        .reset_index(name="n")
        .sort_values(
            [*keys, "n", "counterparty_name"], ascending=[True] * len(keys) + [False, True]
        )
    )
    totals = counts.groupby(keys)["n"].transform("sum")
    counts = counts.assign(total=totals).drop_duplicates(keys, keep="first")
    return {
        tuple(row[:-4]): (str(row[-4]), str(row[-3]), int(row[-2]), int(row[-1]))
        for row in counts.itertuples(index=False, name=None)
    }


def rule_flags(frame: pd.DataFrame, *, timezone: str = "Asia/Shanghai") -> pd.DataFrame:
    """Every rule flag of the module table, one record per (entry, rule)."""
    parts = [
        _balance_slips(frame),
        _statement_slips(frame),
        _value_date_gaps(frame, timezone),
        _near_duplicates(frame),
        _round_bursts(frame),
        _circular_flows(frame),
    ]
    flags = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    if flags.empty:
        flags = pd.DataFrame(columns=list(FLAG_COLUMNS))
    flags["suggested_amount_minor"] = flags["suggested_amount_minor"].astype("Int64")
    flags["confidence"] = flags["confidence"].astype(float)
    return flags.sort_values(["tx_id", "rule"], kind="stable").reset_index(drop=True)


def _flags(
    tx_ids: object,
    rule: str,
    anomaly_type: object,
    *,
    confidence: float,
    evidence: object,
    amount: object = None,
    value_date: object = None,
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "tx_id": tx_ids,
            "rule": rule,
            "anomaly_type": anomaly_type,
            "confidence": confidence,
            "suggested_amount_minor": amount,
            "suggested_value_date": value_date,
            "evidence": evidence,
        }
    )
    return frame.astype({"suggested_amount_minor": "Int64"})


def _balance_slips(frame: pd.DataFrame) -> pd.DataFrame:
    codes = sequence_codes(frame["sequence_id"])
    before = lag_index(codes, 1)
    has = frame["has_balance"].to_numpy(bool)
    balance = frame["balance_after_minor"].to_numpy(np.int64)
    amount = frame["amount_minor"].to_numpy(np.int64)
    pair = has & (before >= 0) & has[np.maximum(before, 0)]
    delta = np.where(pair, balance - balance[np.maximum(before, 0)], 0)
    parts = []
    for factor, kind in ((10, "typo_x10"), (100, "typo_x100")):
        hit = np.flatnonzero(pair & (delta != 0) & (amount == factor * delta))
        evidence = [
            f"the running balance moved by {int(delta[i])} but the entry says {int(amount[i])} "
            f"({factor} times as much)"
            for i in hit
        ]
        parts.append(
            _flags(
                frame["tx_id"].to_numpy()[hit],
                "balance_decimal_slip",
                kind,
                confidence=0.999,
                evidence=evidence,
                amount=delta[hit],
            )
        )
    return pd.concat(parts, ignore_index=True)


def _statement_slips(frame: pd.DataFrame) -> pd.DataFrame:
    diff = frame["statement_diff_minor"].to_numpy(np.int64)
    amount = frame["amount_minor"].to_numpy(np.int64)
    parts = []
    for factor, kind in ((10, "typo_x10"), (100, "typo_x100")):
        hit = (diff != 0) & (amount % factor == 0) & (amount // factor - amount == diff)
        candidates = frame.loc[hit, ["tx_id", "statement_id"]]
        unique = candidates.groupby("statement_id")["tx_id"].transform("size") == 1
        chosen = np.flatnonzero(hit)[unique.to_numpy()]
        evidence = [
            f"the statement misses reconciliation by {int(diff[i])}, exactly what writing "
            f"{int(amount[i]) // factor} as {int(amount[i])} causes, and no other entry fits"
            for i in chosen
        ]
        parts.append(
            _flags(
                frame["tx_id"].to_numpy()[chosen],
                "statement_decimal_slip",
                kind,
                confidence=0.99,
                evidence=evidence,
                amount=amount[chosen] // factor,
            )
        )
    return pd.concat(parts, ignore_index=True)


def local_days(booked_us: npt.ArrayLike, timezone: str) -> npt.NDArray[np.int64]:
    """Days since 1970-01-01 of each UTC instant (microseconds) in ``timezone``."""
    stamps = pd.to_datetime(np.asarray(booked_us, dtype=np.int64), unit="us", utc=True)
    local = stamps.tz_convert(timezone).tz_localize(None)
    return np.asarray(local.to_numpy().astype("datetime64[D]").astype(np.int64))


def _value_date_gaps(frame: pd.DataFrame, timezone: str) -> pd.DataFrame:
    days = local_days(frame["booked_us"], timezone)
    value = frame["value_day"].to_numpy(np.int64)
    hit = np.flatnonzero(frame["has_value_date"].to_numpy(bool) & (days != value))
    dates = np.datetime_as_string(value[hit].astype("datetime64[D]"))
    evidence = [
        f"booked on {np.datetime64(int(days[i]), 'D')} but value-dated {d} "
        f"({int(days[i] - value[i]):+d} days)"
        for i, d in zip(hit, dates, strict=True)
    ]
    return _flags(
        frame["tx_id"].to_numpy()[hit],
        "value_date_gap",
        "date_shift",
        confidence=0.8,
        evidence=evidence,
        value_date=dates,
    )


def counterparty_keys(frame: pd.DataFrame) -> npt.NDArray[np.object_]:
    """The counterparty's account pseudonym, else ``name:`` + its normalised name, else None."""
    account = frame["counterparty_account"]
    named = "name:" + frame["counterparty_name_norm"].astype(object)
    keys = account.where(account.notna(), named).astype(object)
    return np.asarray(keys.where(keys.notna(), None), dtype=object)


_DUPLICATE_DAYS = 3
_MAX_LAG = 64


def _near_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    codes = sequence_codes(frame["sequence_id"])
    amount = frame["amount_minor"].to_numpy(np.int64)
    booked = frame["booked_us"].to_numpy(np.int64)
    cp = counterparty_keys(frame)
    text = frame["description_raw"].fillna("").to_numpy(object)
    tx_ids = frame["tx_id"].to_numpy(object)
    found = np.full(len(frame), -1, dtype=np.int64)
    for k in range(1, _MAX_LAG + 1):
        j = lag_index(codes, k)
        ok = j >= 0
        if not ok.any():
            break
        jj = np.maximum(j, 0)
        close = ok & (np.abs(booked - booked[jj]) <= _DUPLICATE_DAYS * _DAY_US)
        if not close.any():
            break
        same = close & (amount == amount[jj]) & pd.notna(cp) & (cp == cp[jj]) & (text == text[jj])
        found = np.where((found < 0) & same, jj, found)
    hit = np.flatnonzero(found >= 0)
    evidence = [
        f"same amount, counterparty and text as {tx_ids[found[i]]}, booked "
        f"{abs(int(booked[i] - booked[found[i]])) / _DAY_US:.1f} days apart"
        for i in hit
    ]
    return _flags(
        tx_ids[hit],
        "near_duplicate",
        "duplicate_posting",
        confidence=0.6,
        evidence=evidence,
        amount=0,
    )


def multiple_of_major(frame: pd.DataFrame, major: int) -> npt.NDArray[np.bool_]:
    """Non-zero amounts that are whole multiples of ``major`` major units of their currency."""
    from flowbureau.schema import currency_exponent

    units = {c: major * 10 ** currency_exponent(c) for c in frame["currency"].unique()}
    unit = frame["currency"].map(units).to_numpy(np.int64)
    amount = np.abs(frame["amount_minor"].to_numpy(np.int64))
    return np.asarray((amount > 0) & (amount % unit == 0))


def round_outflows(frame: pd.DataFrame) -> npt.NDArray[np.bool_]:
    """Outflows of whole multiples of :data:`ROUND_UNIT_MAJOR` major units."""
    outflow = frame["amount_minor"].to_numpy(np.int64) < 0
    return np.asarray(outflow & multiple_of_major(frame, ROUND_UNIT_MAJOR))


_BURST_MIN = 5
_BURST_DAYS = 3


def _round_bursts(frame: pd.DataFrame) -> pd.DataFrame:
    rows = np.flatnonzero(round_outflows(frame))
    if not len(rows):
        return _flags([], "round_burst", "round_burst", confidence=0.7, evidence=[])
    codes = sequence_codes(frame["sequence_id"])[rows]
    booked = frame["booked_us"].to_numpy(np.int64)[rows]
    order = np.lexsort((booked, codes))
    rows, codes, booked = rows[order], codes[order], booked[order]
    key = codes.astype(np.float64) * 1e15 + booked.astype(np.float64)
    # microseconds fit exactly in float64 up to 2**53; codes * 1e15 keeps accounts apart
    ends = np.searchsorted(key, key + _BURST_DAYS * _DAY_US, side="left")
    counts = ends - np.arange(len(rows))
    marked = np.zeros(len(rows), dtype=np.int64)
    for start in np.flatnonzero(counts >= _BURST_MIN):
        marked[start : ends[start]] = np.maximum(marked[start : ends[start]], counts[start])
    hit = np.flatnonzero(marked > 0)
    evidence = [
        f"{int(marked[i])} outflows of whole multiples of {ROUND_UNIT_MAJOR} within "
        f"{_BURST_DAYS} days"
        for i in hit
    ]
    return _flags(
        frame["tx_id"].to_numpy()[rows[hit]],
        "round_burst",
        "round_burst",
        confidence=0.7,
        evidence=evidence,
    )


_CYCLE_DAYS = 10
_CYCLE_TOLERANCE = 0.02


def _circular_flows(frame: pd.DataFrame) -> pd.DataFrame:
    amount = frame["amount_minor"].to_numpy(np.int64)
    out = frame.loc[
        (amount < 0) & frame["cp_member"].to_numpy(bool) & frame["counterparty_account"].notna(),
        ["tx_id", "account_id", "counterparty_account", "amount_minor", "booked_us"],
    ].rename(columns={"account_id": "payer", "counterparty_account": "payee"})
    out["amt"] = -out["amount_minor"]
    window = _CYCLE_DAYS * _DAY_US
    one = out.add_suffix("1")
    two = one.merge(out.add_suffix("2"), left_on="payee1", right_on="payer2")
    two = two[
        (two["booked_us2"] >= two["booked_us1"])
        & (two["booked_us2"] - two["booked_us1"] <= window)
        & (two["payee2"] != two["payer1"])
        & ((two["amt2"] / two["amt1"] - 1).abs() <= _CYCLE_TOLERANCE)
    ]
    three = two.merge(
        out.add_suffix("3"), left_on=["payee2", "payer1"], right_on=["payer3", "payee3"]
    )
    three = three[
        (three["booked_us3"] >= three["booked_us2"])
        & (three["booked_us3"] - three["booked_us1"] <= window)
        & ((three["amt3"] / three["amt1"] - 1).abs() <= _CYCLE_TOLERANCE)
    ]
    if three.empty:
        return _flags([], "circular_flow", "circular_flow", confidence=0.7, evidence=[])
    legs = pd.concat(
        [
            three[[f"tx_id{k}", f"payer{k}", f"payee{k}", f"amt{k}", f"booked_us{k}"]]
            .set_axis(["tx_id", "payer", "payee", "amt", "booked_us"], axis=1)
            .assign(cycle=three["tx_id1"] + "/" + three["tx_id2"] + "/" + three["tx_id3"])
            for k in (1, 2, 3)
        ],
        ignore_index=True,
    ).drop_duplicates("tx_id")
    credits = frame.loc[
        (amount > 0) & frame["counterparty_account"].notna(),
        ["tx_id", "account_id", "counterparty_account", "amount_minor", "booked_us"],
    ]
    sides = legs.merge(
        credits,
        left_on=["payee", "payer", "amt"],
        right_on=["account_id", "counterparty_account", "amount_minor"],
        suffixes=("", "_credit"),
    )
    sides = sides[(sides["booked_us_credit"] - sides["booked_us"]).abs() <= 3 * _DAY_US]
    flagged = pd.concat(
        [
            legs[["tx_id", "cycle"]],
            sides[["tx_id_credit", "cycle"]].rename(columns={"tx_id_credit": "tx_id"}),
        ],
        ignore_index=True,
    ).drop_duplicates("tx_id")
    evidence = [
        f"payment cycle of three consortium accounts within {_CYCLE_DAYS} days "
        f"(debits {c.replace('/', ', ')})"
        for c in flagged["cycle"]
    ]
    return _flags(
        flagged["tx_id"].to_numpy(),
        "circular_flow",
        "circular_flow",
        confidence=0.7,
        evidence=evidence,
    )
