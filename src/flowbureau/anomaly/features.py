"""Per-step features of each account's ledger-ordered transactions, from strictly earlier entries.

Rules:
- **No look-ahead.** The features of entry ``i`` of an account use entry ``i`` itself and
  entries ``0 .. i-1`` of the same account (ledger order, :func:`~flowbureau.anomaly.
  preprocessing.order_ledger`), nothing later and no other account's entries. Changing, adding
  or removing a later entry leaves every earlier row unchanged (``tests/anomaly`` proves it).
  The per-row baselines get exactly these features; only the bidirectional sequence model
  (``direction="both"``) looks ahead, through its recurrence over the later rows.
  Reference data is the one exception: ``cp_member`` says whether the counterparty account is
  a consortium account (the ``accounts`` register), a fact about the counterparty, not a flow.
- Context statistics are robust and past-only: the rolling median and inter-quartile range of
  the 12 previous log-amounts of the same (direction, category), the median of the 50 previous
  of the same direction, the previous amount with the same counterparty; a single mistyped
  amount therefore hardly moves the context of the entries after it.
- What the rule layer proves with a whole statement or the whole history (reconciliation,
  cycles, the cleaning stage's ``outlier`` flag) is not a feature; per-entry facts that only
  need earlier entries are: balance movement vs amount (``bal_*``), booking vs value date,
  earlier equal entries (``dup_3d``), round outflows and opposite flows in the last days.
- Amounts enter as ``log10(|amount_minor| + 1)``; money is never summed here, so floats are
  fine (features, not bookings). Missing values are 0 with an indicator feature. Values that
  pre-processing filled are not used (a fill may rest on later entries): only the fact that
  the stored record lacked them (``cp_name_missing``, ``bal_missing``).
- :data:`FEATURE_NAMES` is the order the model sees; :data:`FEATURE_VERSION` changes whenever
  a definition changes (saved models record it and refuse other versions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from flowbureau.anomaly._sequence import lag_index, sequence_codes
from flowbureau.anomaly.preprocessing import (
    ROUND_UNIT_MAJOR,
    counterparty_keys,
    local_days,
    multiple_of_major,
    round_outflows,
)
from flowbureau.schema import TxType

__all__ = ["FEATURE_NAMES", "FEATURE_VERSION", "ID_COLUMNS", "build_features"]

FEATURE_VERSION = 1
"""Version of the feature definitions below."""

_TX_TYPES = tuple(t.value for t in TxType)

FEATURE_NAMES: tuple[str, ...] = (
    "log_amount",
    "inflow",
    *(f"type_{t}" for t in _TX_TYPES),
    "first_entry",
    "log_position",
    "gap_days",
    "gap_negative",
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
    "weekend",
    "month_day",
    "value_gap_days",
    "value_gap_nonzero",
    "has_value_date",
    "cp_missing",
    "cp_name_missing",
    "cp_member",
    "cp_new",
    "cp_seen_log",
    "cp_last_ratio",
    "has_cp_last",
    "group_ratio",
    "group_z",
    "group_seen_log",
    "direction_ratio",
    "bal_pair",
    "bal_residual_log",
    "bal_ratio",
    "bal_slip_x10",
    "bal_slip_x100",
    "bal_missing",
    "amount_to_balance",
    "round_10k",
    "round_1k",
    "trailing_zeros",
    "out_3d_log",
    "round_out_3d_log",
    "new_cp_3d_log",
    "dup_3d",
    "opposite_5d",
    "opposite_member_5d",
    "returned_payment",
)
"""Feature columns in model order (see the module rules)."""

ID_COLUMNS: tuple[str, ...] = ("tx_id", "sequence_id", "position", "amount_minor", "currency")
"""Identifying columns every feature frame carries besides :data:`FEATURE_NAMES`."""

_DAY_US = 86_400 * 1_000_000
_MAX_LAG = 64


def _past_rolling(
    values: npt.NDArray[np.float64], groups: Sequence[npt.ArrayLike], window: int, stat: str
) -> npt.NDArray[np.float64]:
    """``stat`` of the ``window`` previous values of the same group (NaN when none)."""
    series = pd.Series(values)
    shifted = series.groupby(list(groups), sort=False).shift(1)
    rolled = shifted.groupby(list(groups), sort=False).rolling(window, min_periods=1)
    if stat == "median":
        result = rolled.median()
    elif stat == "iqr":
        result = rolled.quantile(0.75) - rolled.quantile(0.25)
    else:
        raise ValueError(stat)
    return np.asarray(result.reset_index(level=list(range(len(groups))), drop=True).sort_index())


def build_features(frame: pd.DataFrame, *, timezone: str = "Asia/Shanghai") -> pd.DataFrame:
    """The feature frame (:data:`ID_COLUMNS` + :data:`FEATURE_NAMES`) of a pre-processed,
    ledger-ordered transaction frame (:func:`~flowbureau.anomaly.preprocessing.preprocess`)."""
    n = len(frame)
    codes = sequence_codes(frame["sequence_id"])
    amount = frame["amount_minor"].to_numpy(np.int64)
    magnitude = np.abs(amount)
    log_amount = np.log10(magnitude.astype(np.float64) + 1.0)
    inflow = amount > 0
    booked = frame["booked_us"].to_numpy(np.int64)
    tx_type = frame["tx_type"].to_numpy(object)
    f: dict[str, npt.NDArray[np.float64]] = {}

    def put(name: str, values: npt.ArrayLike) -> None:
        f[name] = np.asarray(values, dtype=np.float64)

    put("log_amount", log_amount)
    put("inflow", inflow)
    for t in _TX_TYPES:
        put(f"type_{t}", tx_type == t)

    before = lag_index(codes, 1)
    has_before = before >= 0
    prev = np.maximum(before, 0)
    position = frame["position"].to_numpy(np.int64)
    put("first_entry", ~has_before)
    put("log_position", np.log1p(position) / 8.0)
    gap = np.where(has_before, (booked - booked[prev]) / _DAY_US, 0.0)
    put("gap_days", np.sign(gap) * np.log1p(np.abs(gap)))
    put("gap_negative", gap < 0)

    local = pd.to_datetime(booked, unit="us", utc=True).tz_convert(timezone)
    hour = np.asarray(local.hour + local.minute / 60.0, dtype=np.float64)
    weekday = np.asarray(local.day_of_week, dtype=np.float64)
    put("hour_sin", np.sin(2 * np.pi * hour / 24))
    put("hour_cos", np.cos(2 * np.pi * hour / 24))
    put("weekday_sin", np.sin(2 * np.pi * weekday / 7))
    put("weekday_cos", np.cos(2 * np.pi * weekday / 7))
    put("weekend", weekday >= 5)
    put("month_day", np.asarray(local.day, dtype=np.float64) / 31.0)
    has_value = frame["has_value_date"].to_numpy(bool)
    value_gap = np.where(
        has_value, local_days(booked, timezone) - frame["value_day"].to_numpy(np.int64), 0
    )
    put("value_gap_days", np.clip(value_gap, -10, 10) / 5.0)
    put("value_gap_nonzero", value_gap != 0)
    put("has_value_date", has_value)

    cp = counterparty_keys(frame)
    cp_known = pd.notna(cp)
    put("cp_missing", ~cp_known)
    name_missing = (
        frame["counterparty_filled"].to_numpy(bool) | frame["counterparty_name"].isna().to_numpy()
    )
    put("cp_name_missing", name_missing)
    put("cp_member", frame["cp_member"].to_numpy(bool))
    cp_group = pd.Series(np.where(cp_known, cp, "\x00none"), dtype=object)
    seen = pd.Series(codes).groupby([codes, cp_group], sort=False).cumcount().to_numpy()
    put("cp_new", cp_known & (seen == 0))
    put("cp_seen_log", np.where(cp_known, np.log1p(seen), 0.0))
    last_cp = np.asarray(
        pd.Series(log_amount).groupby([codes, cp_group, inflow], sort=False).shift(1),
        dtype=np.float64,
    )
    has_last = cp_known & ~np.isnan(last_cp)
    put("cp_last_ratio", np.where(has_last, np.clip(log_amount - last_cp, -4, 4), 0.0))
    put("has_cp_last", has_last)

    group = [codes, inflow, tx_type]
    median = _past_rolling(log_amount, group, 12, "median")
    spread = _past_rolling(log_amount, group, 12, "iqr")
    has_group = ~np.isnan(median)
    ratio = np.where(has_group, log_amount - np.nan_to_num(median), 0.0)
    put("group_ratio", np.clip(ratio, -4, 4))
    put("group_z", np.clip(ratio / np.maximum(np.nan_to_num(spread) / 1.349, 0.05), -20, 20) / 5)
    group_seen = pd.Series(codes).groupby(group, sort=False).cumcount().to_numpy()
    put("group_seen_log", np.log1p(group_seen))
    direction_median = _past_rolling(log_amount, [codes, inflow], 50, "median")
    put(
        "direction_ratio",
        np.where(np.isnan(direction_median), 0.0, np.clip(log_amount - direction_median, -4, 4)),
    )

    has_balance = frame["has_balance"].to_numpy(bool)
    balance = frame["balance_after_minor"].to_numpy(np.int64)
    pair = has_balance & has_before & has_balance[prev]
    delta = np.where(pair, balance - balance[prev], 0)
    residual = np.where(pair, delta - amount, 0)
    put("bal_pair", pair)
    put("bal_residual_log", np.sign(residual) * np.log10(np.abs(residual).astype(float) + 1) / 4)
    moved = pair & (delta != 0)
    put(
        "bal_ratio",
        np.where(
            moved, np.clip(log_amount - np.log10(np.abs(delta).astype(float) + 1.0), -3, 3), 0.0
        ),
    )
    put("bal_slip_x10", moved & (amount == 10 * delta))
    put("bal_slip_x100", moved & (amount == 100 * delta))
    had_balance = (
        pd.Series(has_balance)
        .groupby(codes, sort=False)
        .transform(lambda s: s.shift(1, fill_value=False).cummax())
    ).to_numpy(bool)
    put("bal_missing", ~has_balance & had_balance)
    prev_balance = np.where(has_before & has_balance[prev], np.abs(balance[prev]), 0)
    put(
        "amount_to_balance",
        np.where(
            has_before & has_balance[prev],
            np.clip(log_amount - np.log10(prev_balance.astype(float) + 1.0), -4, 4),
            0.0,
        ),
    )

    round_out = round_outflows(frame)
    put("round_10k", multiple_of_major(frame, ROUND_UNIT_MAJOR))
    put("round_1k", multiple_of_major(frame, 1_000))
    digits = np.zeros(n)
    rest = magnitude.copy()
    for _ in range(8):
        zero = (rest > 0) & (rest % 10 == 0)
        digits += zero
        rest = np.where(zero, rest // 10, rest)
    put("trailing_zeros", digits / 8.0)

    outflow = amount < 0
    text = frame["description_raw"].fillna("").to_numpy(object)
    new_cp = cp_known & (seen == 0)
    out_3d = np.zeros(n)
    round_3d = np.zeros(n)
    new_3d = np.zeros(n)
    dup = np.zeros(n, dtype=bool)
    opposite = np.zeros(n, dtype=bool)
    opposite_member = np.zeros(n, dtype=bool)
    member = frame["cp_member"].to_numpy(bool)
    for k in range(1, _MAX_LAG + 1):
        j = lag_index(codes, k)
        jj = np.maximum(j, 0)
        age = np.abs(booked - booked[jj])
        within5 = (j >= 0) & (age <= 5 * _DAY_US)
        if not within5.any():
            break
        within3 = within5 & (age <= 3 * _DAY_US)
        out_3d += within3 & outflow[jj]
        round_3d += within3 & round_out[jj]
        new_3d += within3 & new_cp[jj]
        dup |= within3 & (amount == amount[jj]) & cp_known & (cp == cp[jj]) & (text == text[jj])
        similar = (
            within5
            & (inflow != inflow[jj])
            & (np.abs(log_amount - log_amount[jj]) <= 0.005)
            & ~(cp_known & (cp == cp[jj]))
        )
        opposite |= similar
        opposite_member |= similar & member & member[jj]
    put("out_3d_log", np.log1p(out_3d))
    put("round_out_3d_log", np.log1p(round_3d))
    put("new_cp_3d_log", np.log1p(new_3d))
    put("dup_3d", dup)
    put("opposite_5d", opposite)
    put("opposite_member_5d", opposite_member)
    put(
        "returned_payment",
        np.fromiter(
            ("returned_payment" in flags for flags in frame["quality_flags"]), bool, count=n
        ),
    )

    ids = frame[list(ID_COLUMNS)].reset_index(drop=True)
    features = pd.DataFrame({name: f[name] for name in FEATURE_NAMES})
    return pd.concat([ids, features], axis=1)
