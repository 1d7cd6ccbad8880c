"""Cash-flow features of every enterprise as of a date, defined once as portable SQL.

Rules:
- **As of a date, no look-ahead.** Features as of day ``D`` (a calendar day in the consortium's
  time zone, ``settings.timezone``) use only entries booked before local midnight starting
  ``D``. The cut-off is an exact UTC instant computed here and written into the SQL as a
  literal, so entries booked on or after ``D`` can be added or changed without changing a
  single feature (``tests/scoring/test_scoring_features.py`` proves it).
- **Windows** are calendar months counted back from ``D``: month 0 is ``[D - 1 month, D)``,
  month ``k`` is ``[D - (k+1) months, D - k months)`` (day clipped to the month's end). The
  3/6/12-month windows are months ``< 3``, ``< 6``, ``< 12``; 24 months are read (for the
  year-on-year and seasonality features). Local days come from ``booked_at`` converted to the
  consortium's time zone.
- **Per enterprise across all its banks**: rows are grouped by ``enterprise_id``; entries of
  accounts whose owner is unknown are not used. Money features use the effective amount
  ``coalesce(corrected_amount_minor, amount_minor)`` (an accepted anomaly correction replaces
  the booked amount) in the features' currency (``settings.scoring.currency``, CNY); entries
  in other currencies are only counted (``foreign_currency_share_12m``): no FX rate is invented.
- **Flows**: inflows are credits, outflows debits (as positive magnitudes), both excluding
  transfers between the enterprise's own accounts (``tx_type = internal_transfer``).
- **Balances**: the end-of-day balance of an account is ``balance_after_minor`` of its last
  entry of the day that states one (latest ``booked_at``, then highest ``tx_id``); the
  enterprise's balance is the sum over its accounts of their latest end-of-day balance,
  carried forward until the account's next one. Averages are per calendar day covered.
- **Payment timing**: the *payment day* of a recurring obligation (payroll, tax, rent) in a
  month is the local day of month of that month's largest debit of its ``tx_type``
  (ties: earliest ``booked_at``, then lowest ``tx_id``); the enterprise's *usual day* is the
  median payment day over the months (of the last 12) with such a debit. A month is *late*
  when its payment day is more than ``LATE_PAYMENT_DAYS`` after the usual day. Firms pay
  salaries, taxes and rent on a fixed day; cash-strapped ones postpone them.
- **Population**: every enterprise with at least one entry (any currency) booked before
  ``D``. Totals and counts of an enterprise without entries in a window are 0; ratios with a
  zero denominator and statistics that need more data are NULL (the models have a Missing bin).
- **Portability**: the SQL is DuckDB's dialect restricted to constructs that sqlglot translates
  to Spark SQL (no QUALIFY, no list lambdas, no engine-specific functions); the Spark backend
  (:mod:`flowbureau.storage.spark_engine`) runs the very same text, and a test shows both
  engines give the same numbers. The query is self-contained: it reads only ``transactions``.

Every feature is one :class:`Feature` in :data:`FEATURES` (name, the stage that computes it,
its SQL expression, a description); ``docs/scoring.md`` lists them.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from flowbureau.errors import InputError
from flowbureau.schema import is_valid_credit_code

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "HISTORY_MONTHS",
    "SUMMARY_COLUMNS",
    "WINDOWS",
    "Feature",
    "cashflow_sql",
    "check_enterprises",
    "cutoff_instant",
    "entries_digest_sql",
    "month_start",
    "months_before",
]

WINDOWS: tuple[int, ...] = (3, 6, 12)
"""Window lengths in months."""
HISTORY_MONTHS = 24
"""Months of entries a feature query reads (two years, for year-on-year features)."""
LOW_BALANCE_DAYS_OF_OUTFLOW = 7
"""A day's balance is 'low' below this many days of average outflow (12-month average)."""
ROUND_AMOUNT_MINOR = 1_000_000
"""A 'round amount' is a non-zero multiple of 10,000 major units (1,000,000 minor units)."""
LATE_PAYMENT_DAYS = 3
"""A payment is late when made more than this many days after the enterprise's usual day
(absorbs weekends and holidays, which move a payment by up to three days)."""
_DUE_KINDS = ("payroll", "tax", "rent")
"""Recurring obligations whose payment timing is measured."""

_STAGES = (
    "flows",
    "activity",
    "monthly",
    "seasonal",
    "counterparties",
    "timing",
    "balances",
    "life",
    "derived",
)


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature: the stage (CTE) computing it, its SQL expression and what it means.

    ``zero_if_absent``: an enterprise with no row in the stage gets 0 (totals, counts)
    rather than NULL (ratios, statistics).
    """

    name: str
    stage: str
    sql: str
    description: str
    zero_if_absent: bool = False


def _within(months: int) -> str:
    return f"mi < {months}"


def _sum(condition: str, value: str = "amount") -> str:
    return f"CAST(sum(CASE WHEN {condition} THEN {value} ELSE 0 END) AS BIGINT)"


def _count(condition: str) -> str:
    return f"CAST(sum(CASE WHEN {condition} THEN 1 ELSE 0 END) AS BIGINT)"


def _share(condition: str, among: str) -> str:
    return (
        f"CAST(sum(CASE WHEN {among} AND {condition} THEN 1 ELSE 0 END) AS DOUBLE) "
        f"/ NULLIF(sum(CASE WHEN {among} THEN 1 ELSE 0 END), 0)"
    )


def _ratio(numerator: str, denominator: str) -> str:
    return f"CAST({numerator} AS DOUBLE) / NULLIF({denominator}, 0)"


_EXTERNAL = "tx_type <> 'internal_transfer'"
_FIXED_COSTS = "'payroll', 'rent', 'utilities'"
"""Costs that do not follow sales: their weight in the inflow grows when sales fall."""
_IN = f"amount > 0 AND {_EXTERNAL}"
_OUT = f"amount < 0 AND {_EXTERNAL}"


def _build_features() -> tuple[Feature, ...]:
    out: list[Feature] = []

    def add(name: str, stage: str, sql: str, description: str, *, zero: bool = False) -> None:
        out.append(Feature(name, stage, sql, description, zero))

    for w in WINDOWS:
        within = _within(w)
        add(
            f"inflow_{w}m",
            "flows",
            _sum(f"{within} AND {_IN}"),
            f"Total inflow over {w} months (minor units).",
            zero=True,
        )
        add(
            f"outflow_{w}m",
            "flows",
            _sum(f"{within} AND {_OUT}", "-amount"),
            f"Total outflow over {w} months (minor units, positive).",
            zero=True,
        )
        add(
            f"inflow_count_{w}m",
            "flows",
            _count(f"{within} AND {_IN}"),
            f"Number of inflows over {w} months.",
            zero=True,
        )
        add(
            f"outflow_count_{w}m",
            "flows",
            _count(f"{within} AND {_OUT}"),
            f"Number of outflows over {w} months.",
            zero=True,
        )
    w12 = _within(12)
    add(
        "returned_payments_12m",
        "flows",
        _count(f"{w12} AND returned = 1"),
        "Returned, refused or reversed payments over 12 months.",
        zero=True,
    )
    add(
        "loan_disbursed_12m",
        "flows",
        _sum(f"{w12} AND amount > 0 AND tx_type = 'loan_disbursement'"),
        "Bank loan disbursements received over 12 months.",
        zero=True,
    )
    add(
        "debt_service_12m",
        "flows",
        _sum(f"{w12} AND amount < 0 AND tx_type IN ('loan_repayment', 'interest')", "-amount"),
        "Loan principal and interest paid over 12 months.",
        zero=True,
    )
    add(
        "online_lending_in_12m",
        "flows",
        _sum(f"{w12} AND amount > 0 AND tx_type = 'online_lending'"),
        "Online-lending drawdowns received over 12 months.",
        zero=True,
    )
    add(
        "online_lending_out_12m",
        "flows",
        _sum(f"{w12} AND amount < 0 AND tx_type = 'online_lending'", "-amount"),
        "Online-lending repayments made over 12 months.",
        zero=True,
    )
    for w in (3, 12):
        add(
            f"fixed_costs_{w}m",
            "flows",
            _sum(f"{_within(w)} AND amount < 0 AND tx_type IN ({_FIXED_COSTS})", "-amount"),
            f"Payroll, rent and utilities paid over {w} months (minor units, positive).",
            zero=True,
        )
    for w in (3, 12):
        add(
            f"online_lending_count_{w}m",
            "flows",
            _count(f"{_within(w)} AND amount > 0 AND tx_type = 'online_lending'"),
            f"Online-lending drawdowns over {w} months.",
            zero=True,
        )
    add(
        "round_amount_share_12m",
        "flows",
        _share(f"abs(amount) % {ROUND_AMOUNT_MINOR} = 0", f"{w12} AND {_EXTERNAL} AND amount <> 0"),
        "Share of entries that are non-zero multiples of 10,000 (12 months).",
    )
    add(
        "corrected_share_12m",
        "flows",
        _share("corrected = 1", w12),
        "Share of entries whose amount an accepted anomaly correction replaced (12 months).",
    )
    add(
        "balance_break_share_12m",
        "flows",
        _share("balance_break = 1", w12),
        "Share of entries whose running balance does not follow from the previous one.",
    )
    add(
        "outlier_share_12m",
        "flows",
        _share("outlier = 1", w12),
        "Share of entries flagged as amount outliers (12 months).",
    )
    add(
        "missing_balance_share_12m",
        "flows",
        _share("balance_after IS NULL", w12),
        "Share of entries without a stated balance (12 months).",
    )
    add(
        "missing_counterparty_share_12m",
        "flows",
        _share("no_counterparty = 1", w12),
        "Share of entries without a counterparty name or account (12 months).",
    )
    add(
        "anomaly_score_mean_12m",
        "flows",
        f"avg(CASE WHEN {w12} THEN anomaly_score END)",
        "Mean anomaly score of the entries (12 months; NULL until scored).",
    )
    add(
        "banks_12m",
        "activity",
        f"count(DISTINCT CASE WHEN {w12} THEN bank_id END)",
        "Contributing banks with entries over 12 months.",
        zero=True,
    )
    add(
        "accounts_12m",
        "activity",
        f"count(DISTINCT CASE WHEN {w12} THEN account_key END)",
        "Accounts with entries over 12 months.",
        zero=True,
    )
    add(
        "months_with_data_12m",
        "activity",
        f"count(DISTINCT CASE WHEN {w12} THEN mi END)",
        "Months (of the last 12) with at least one entry.",
        zero=True,
    )
    add(
        "active_days_12m",
        "activity",
        f"count(DISTINCT CASE WHEN {w12} THEN local_day END)",
        "Days with at least one entry (12 months).",
        zero=True,
    )

    # Monthly series over the months since the enterprise's first entry (at most 12).
    add(
        "inflow_trend_12m",
        "monthly",
        "CASE WHEN count(*) >= 6 THEN regr_slope(inflow, -mi) / NULLIF(avg(inflow), 0) END",
        "Least-squares slope of monthly inflow per month, relative to the mean (>= 6 months).",
    )
    add(
        "inflow_cv_12m",
        "monthly",
        "CASE WHEN count(*) >= 3 THEN stddev_samp(inflow) / NULLIF(avg(inflow), 0) END",
        "Coefficient of variation of monthly inflow (volatility).",
    )
    add(
        "net_flow_volatility_12m",
        "monthly",
        "CASE WHEN count(*) >= 3 THEN stddev_samp(inflow - outflow) / NULLIF(avg(inflow), 0) END",
        "Standard deviation of monthly net flow relative to mean monthly inflow.",
    )
    add(
        "inflow_peak_to_mean_12m",
        "monthly",
        "max(inflow) / NULLIF(avg(inflow), 0)",
        "Largest monthly inflow relative to the mean month.",
    )
    add(
        "negative_net_months_12m",
        "monthly",
        _count("inflow < outflow"),
        "Months with more outflow than inflow.",
        zero=True,
    )
    for kind in ("payroll", "tax"):
        add(
            f"{kind}_months_12m",
            "monthly",
            _count(f"{kind} > 0"),
            f"Months with a {kind} payment.",
            zero=True,
        )
        add(
            f"{kind}_regularity_12m",
            "monthly",
            _share(f"{kind} > 0", "1 = 1"),
            f"Share of observed months with a {kind} payment.",
        )
        add(
            f"{kind}_cv_12m",
            "monthly",
            f"CASE WHEN count(*) >= 3 THEN stddev_samp({kind}) / NULLIF(avg({kind}), 0) END",
            f"Coefficient of variation of monthly {kind} payments.",
        )
    add(
        "seasonality_corr_12m",
        "seasonal",
        "CASE WHEN count(*) = 12 AND stddev_samp(inflow) > 0 AND stddev_samp(inflow_last_year) > 0"
        " THEN corr(inflow, inflow_last_year) END",
        "Correlation of monthly inflow with the same months a year earlier (needs 24 months).",
    )
    add(
        "inflow_yoy_3m",
        "seasonal",
        "sum(CASE WHEN mi < 3 THEN inflow ELSE 0 END) "
        "/ NULLIF(sum(CASE WHEN mi < 3 THEN inflow_last_year ELSE 0 END), 0) - 1",
        "Inflow of the last 3 months against the same 3 months a year earlier, minus 1.",
    )

    for role, total in (("customer", "sales_12"), ("supplier", "purchases_12")):
        recent, prior = total.replace("_12", "_recent"), total.replace("_12", "_prior")
        add(
            f"{role}_hhi_12m",
            "counterparties",
            f"sum(CAST({total} AS DOUBLE) * {total}) "
            f"/ NULLIF(power(CAST(sum({total}) AS DOUBLE), 2), 0)",
            f"Herfindahl-Hirschman index of {role} concentration (0..1, 12 months).",
        )
        add(
            f"{role}_top1_share_12m",
            "counterparties",
            _ratio(f"max({total})", f"sum({total})"),
            f"Share of the largest {role} (12 months).",
        )
        add(
            f"{role}s_12m",
            "counterparties",
            _count(f"{total} > 0"),
            f"Distinct {role}s over 12 months.",
            zero=True,
        )
        add(
            f"{role}s_6m",
            "counterparties",
            _count(f"{recent} > 0"),
            f"Distinct {role}s over the last 6 months.",
            zero=True,
        )
        add(
            f"{role}_churn_6m",
            "counterparties",
            _ratio(_count(f"{prior} > 0 AND {recent} = 0"), _count(f"{prior} > 0")),
            f"Share of the {role}s of months 6-11 not seen in months 0-5.",
        )
    add(
        "circular_flow_share_12m",
        "counterparties",
        _ratio("sum(least(in_12, out_12))", "sum(in_12)"),
        "Share of inflow matched by outflow to the same counterparty (round-tripping, 12 months).",
    )

    late = f"lateness > {LATE_PAYMENT_DAYS}"
    for kind in _DUE_KINDS:
        add(
            f"{kind}_late_share_12m",
            "timing",
            _share(late, f"tx_type = '{kind}'"),
            f"Share of the months with a {kind} payment whose payment day is more than "
            f"{LATE_PAYMENT_DAYS} days after the usual day (12 months).",
        )
        add(
            f"{kind}_day_deviation_12m",
            "timing",
            f"avg(CASE WHEN tx_type = '{kind}' THEN abs(lateness) END)",
            f"Mean absolute distance (days) of the {kind} payment day from the usual day "
            "(12 months).",
        )
    add(
        "late_payment_share_12m",
        "timing",
        _share(late, "1 = 1"),
        "Share of the payroll, tax and rent payment months that were late (12 months).",
    )
    add(
        "late_payment_months_3m",
        "timing",
        _count(f"mi < 3 AND {late}"),
        "Payroll, tax and rent payment months that were late, of the last 3 months.",
        zero=True,
    )

    for w in WINDOWS:
        add(
            f"balance_avg_{w}m",
            "balances",
            f"sum(CAST(balance AS DOUBLE) * d{w}) / NULLIF(sum(d{w}), 0)",
            f"Average end-of-day balance over {w} months (minor units).",
        )
    add(
        "balance_min_12m",
        "balances",
        "min(CASE WHEN d12 > 0 THEN balance END)",
        "Lowest end-of-day balance over 12 months.",
    )
    add(
        "balance_last",
        "balances",
        "max(CASE WHEN is_last = 1 THEN balance END)",
        "End-of-day balance on the day before the as-of date.",
    )
    add(
        "negative_balance_days_12m",
        "balances",
        _sum("balance < 0", "d12"),
        "Days with a negative total balance (12 months).",
        zero=True,
    )
    add(
        "low_balance_days_12m",
        "balances",
        _sum("low = 1", "d12"),
        f"Days whose balance covers less than {LOW_BALANCE_DAYS_OF_OUTFLOW} days of average "
        "outflow (12 months).",
        zero=True,
    )
    add(
        "max_drawdown_12m",
        "balances",
        "max(drawdown)",
        "Largest fall of the balance from its running peak, relative to the peak (12 months).",
    )

    add(
        "history_days",
        "life",
        "date_diff('day', first_day, DATE '{as_of}')",
        "Days since the enterprise's first entry in the consortium.",
    )
    add(
        "days_since_last_entry",
        "life",
        "date_diff('day', last_day, DATE '{as_of}')",
        "Days since the enterprise's latest entry.",
    )
    add(
        "foreign_currency_share_12m",
        "life",
        "foreign_share",
        "Share of entries (12 months) in currencies other than the features' currency.",
    )

    for w in WINDOWS:
        add(
            f"net_flow_{w}m",
            "derived",
            f"inflow_{w}m - outflow_{w}m",
            f"Net cash flow over {w} months (minor units).",
            zero=True,
        )
    add(
        "inflow_growth_3m",
        "derived",
        _ratio("inflow_3m", "inflow_6m - inflow_3m") + " - 1",
        "Inflow of months 0-2 against months 3-5, minus 1.",
    )
    add(
        "debt_service_ratio_12m",
        "derived",
        _ratio("debt_service_12m", "inflow_12m - loan_disbursed_12m - online_lending_in_12m"),
        "Loan principal and interest paid per unit of inflow that is not borrowing.",
    )
    add(
        "loan_net_12m",
        "derived",
        "loan_disbursed_12m - debt_service_12m",
        "Loan disbursements minus debt service over 12 months.",
        zero=True,
    )
    add(
        "returned_share_12m",
        "derived",
        _ratio("returned_payments_12m", "outflow_count_12m"),
        "Returned payments per outflow (12 months).",
    )
    add(
        "online_lending_share_12m",
        "derived",
        _ratio("online_lending_in_12m", "inflow_12m"),
        "Share of inflow that is online-lending drawdowns (12 months).",
    )
    add(
        "balance_cover_months_12m",
        "derived",
        _ratio("balance_avg_12m", "outflow_12m / 12.0"),
        "Average balance in months of average outflow.",
    )
    for w in (3, 12):
        add(
            f"net_margin_{w}m",
            "derived",
            _ratio(f"inflow_{w}m - outflow_{w}m", f"inflow_{w}m"),
            f"Net cash flow per unit of inflow over {w} months (cash margin).",
        )
        add(
            f"fixed_cost_ratio_{w}m",
            "derived",
            _ratio(f"fixed_costs_{w}m", f"inflow_{w}m"),
            f"Payroll, rent and utilities per unit of inflow over {w} months (operating "
            "leverage: these costs stay when sales fall).",
        )
    add(
        "inflow_vs_year_3m",
        "derived",
        _ratio("inflow_3m", "inflow_12m / 4.0") + " - 1",
        "Inflow of the last 3 months against a quarter of the 12-month inflow, minus 1.",
    )
    add(
        "balance_trend_3m",
        "derived",
        _ratio("balance_avg_3m", "balance_avg_12m"),
        "Average balance of the last 3 months against the 12-month average.",
    )
    return tuple(out)


FEATURES: tuple[Feature, ...] = _build_features()
"""Every cash-flow feature, in output order."""
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
"""Names of :data:`FEATURES`."""
SUMMARY_COLUMNS: tuple[str, ...] = (
    "data_entries",
    "data_corrected_entries",
    "data_banks",
    "data_first_day",
    "data_last_day",
)
"""Columns beside the features that describe the data used (not model inputs): entries in the
features' currency read for the enterprise (24 months), how many carry a correction, banks,
and the local days of its first and latest entries."""


def month_start(as_of: date, months: int) -> date:
    """``as_of`` minus ``months`` calendar months (the day clipped to the month's length)."""
    index = as_of.year * 12 + as_of.month - 1 - months
    year, month = divmod(index, 12)
    day = min(as_of.day, calendar.monthrange(year, month + 1)[1])
    return date(year, month + 1, day)


def months_before(as_of: date, count: int = HISTORY_MONTHS) -> list[date]:
    """Window boundaries ``[as_of - 1 month, as_of - 2 months, ..., as_of - count months]``."""
    return [month_start(as_of, k) for k in range(1, count + 1)]


def cutoff_instant(day: date, timezone: str) -> datetime:
    """The UTC instant of local midnight starting ``day`` in ``timezone``."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def _timestamp(value: datetime) -> str:
    return f"TIMESTAMPTZ '{value.strftime('%Y-%m-%d %H:%M:%S')}+00:00'"


def _day(value: date) -> str:
    return f"DATE '{value.isoformat()}'"


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def check_enterprises(enterprises: Sequence[str]) -> tuple[str, ...]:
    """Return the ids if each is a valid unified social credit code, else raise InputError."""
    for i, code in enumerate(enterprises):
        if not isinstance(code, str) or not is_valid_credit_code(code):
            raise InputError(
                f"not a unified social credit code: {code!r}", line=i + 1, field="enterprise_id"
            )
    return tuple(enterprises)


def cashflow_sql(
    as_of: date,
    *,
    timezone: str = "Asia/Shanghai",
    currency: str = "CNY",
    enterprises: Sequence[str] | None = None,
    features: Collection[str] | None = None,
) -> str:
    """The query computing :data:`FEATURES` and :data:`SUMMARY_COLUMNS` as of ``as_of``.

    One row per enterprise of the population (see the module rules), restricted to
    ``enterprises`` when given; columns ``enterprise_id``, the features (only ``features``,
    in :data:`FEATURES` order, when given: stages no wanted feature needs are left out of
    the query), the summary columns.
    """
    if not isinstance(as_of, date) or isinstance(as_of, datetime):
        raise InputError(f"as_of must be a date, got {as_of!r}", field="as_of")
    try:
        ZoneInfo(timezone)
    except (KeyError, ValueError):
        raise InputError(f"unknown time zone {timezone!r}", field="timezone") from None
    if len(currency) != 3 or not currency.isalpha():
        raise InputError(f"not an ISO 4217 currency code: {currency!r}", field="currency")
    bounds = months_before(as_of)
    cutoff = cutoff_instant(as_of, timezone)
    start = cutoff_instant(bounds[-1], timezone)
    year_start = cutoff_instant(bounds[11], timezone)
    restrict = ""
    if enterprises is not None:
        codes = check_enterprises(enterprises)
        listed = ", ".join(_text(c) for c in codes) if codes else "NULL"
        restrict = f" AND t.enterprise_id IN ({listed})"
    # Month boundaries are local midnights: compare instants (no per-row time-zone work).
    month_index = " ".join(
        f"WHEN booked_at >= {_timestamp(cutoff_instant(b, timezone))} THEN {k}"
        for k, b in enumerate(bounds[:-1])
    )
    local_day = f"CAST(t.booked_at AT TIME ZONE {_text(timezone)} AS DATE)"
    months = " UNION ALL ".join(f"SELECT {k} AS mi" for k in range(HISTORY_MONTHS))
    window_days = {
        w: f"greatest(0, date_diff('day', greatest(seg_start, {_day(bounds[w - 1])}), "
        f"least(seg_end, {_day(as_of)})))"
        for w in WINDOWS
    }
    by_stage = {stage: [f for f in FEATURES if f.stage == stage] for stage in _STAGES}

    def columns(stage: str) -> str:
        return ",\n    ".join(
            f'{f.sql.format(as_of=as_of.isoformat())} AS "{f.name}"' for f in by_stage[stage]
        )

    ctes = f"""
fb_tx AS (
  SELECT enterprise_id, bank_id, account_key, tx_id, booked_at, local_day, amount,
    balance_after, tx_type, cp_key, corrected, returned, balance_break, outlier,
    no_counterparty, anomaly_score,
    CASE {month_index} ELSE {HISTORY_MONTHS - 1} END AS mi
  FROM (
    SELECT t.enterprise_id, t.bank_id, t.bank_id || '/' || t.account_id AS account_key,
      t.tx_id, t.booked_at, {local_day} AS local_day,
      CAST(coalesce(t.corrected_amount_minor, t.amount_minor) AS BIGINT) AS amount,
      t.balance_after_minor AS balance_after, t.tx_type,
      coalesce(t.counterparty_id, t.counterparty_name_norm, t.counterparty_account) AS cp_key,
      CASE WHEN t.correction_id IS NOT NULL THEN 1 ELSE 0 END AS corrected,
      CASE WHEN array_contains(t.quality_flags, 'returned_payment') THEN 1 ELSE 0 END
        AS returned,
      CASE WHEN array_contains(t.quality_flags, 'balance_break') THEN 1 ELSE 0 END
        AS balance_break,
      CASE WHEN array_contains(t.quality_flags, 'outlier') THEN 1 ELSE 0 END AS outlier,
      CASE WHEN t.counterparty_name IS NULL AND t.counterparty_account IS NULL THEN 1 ELSE 0 END
        AS no_counterparty,
      t.anomaly_score
    FROM transactions t
    WHERE t.enterprise_id IS NOT NULL AND t.currency = {_text(currency)}
      AND t.booked_at >= {_timestamp(start)} AND t.booked_at < {_timestamp(cutoff)}{restrict}
  ) base
),
fb_life AS (
  SELECT enterprise_id,
    CAST(min(booked_at) AT TIME ZONE {_text(timezone)} AS DATE) AS first_day,
    CAST(max(booked_at) AT TIME ZONE {_text(timezone)} AS DATE) AS last_day,
    CAST(sum(CASE WHEN booked_at >= {_timestamp(year_start)} AND currency <> {_text(currency)}
                  THEN 1 ELSE 0 END) AS DOUBLE)
      / NULLIF(sum(CASE WHEN booked_at >= {_timestamp(year_start)} THEN 1 ELSE 0 END), 0)
      AS foreign_share
  FROM (
    SELECT t.enterprise_id, t.currency, t.booked_at
    FROM transactions t
    WHERE t.enterprise_id IS NOT NULL AND t.booked_at < {_timestamp(cutoff)}{restrict}
  ) base
  GROUP BY enterprise_id
),
fb_flows AS (
  SELECT enterprise_id,
    {columns("flows")},
    count(*) AS data_entries,
    CAST(sum(corrected) AS BIGINT) AS data_corrected_entries
  FROM fb_tx
  GROUP BY enterprise_id
),
fb_days AS (
  SELECT enterprise_id, bank_id, account_key, local_day, mi
  FROM fb_tx
  GROUP BY enterprise_id, bank_id, account_key, local_day, mi
),
fb_activity AS (
  SELECT enterprise_id,
    {columns("activity")},
    count(DISTINCT bank_id) AS data_banks
  FROM fb_days
  GROUP BY enterprise_id
),
fb_month AS (
  SELECT enterprise_id, mi,
    sum(CASE WHEN {_IN} THEN amount ELSE 0 END) AS inflow,
    sum(CASE WHEN {_OUT} THEN -amount ELSE 0 END) AS outflow,
    sum(CASE WHEN amount < 0 AND tx_type = 'payroll' THEN -amount ELSE 0 END) AS payroll,
    sum(CASE WHEN amount < 0 AND tx_type = 'tax' THEN -amount ELSE 0 END) AS tax
  FROM fb_tx
  GROUP BY enterprise_id, mi
),
fb_grid AS (
  SELECT f.enterprise_id, m.mi
  FROM (SELECT enterprise_id, max(mi) AS first_mi FROM fb_month GROUP BY enterprise_id) f
  CROSS JOIN ({months}) m
  WHERE m.mi <= f.first_mi
),
fb_series AS (
  SELECT g.enterprise_id, g.mi,
    CAST(coalesce(m.inflow, 0) AS DOUBLE) AS inflow,
    CAST(coalesce(m.outflow, 0) AS DOUBLE) AS outflow,
    CAST(coalesce(m.payroll, 0) AS DOUBLE) AS payroll,
    CAST(coalesce(m.tax, 0) AS DOUBLE) AS tax
  FROM fb_grid g
  LEFT JOIN fb_month m ON m.enterprise_id = g.enterprise_id AND m.mi = g.mi
),
fb_monthly AS (
  SELECT enterprise_id,
    {columns("monthly")}
  FROM fb_series
  WHERE mi < 12
  GROUP BY enterprise_id
),
fb_seasonal AS (
  SELECT enterprise_id,
    {columns("seasonal")}
  FROM (
    SELECT a.enterprise_id, a.mi, a.inflow, b.inflow AS inflow_last_year
    FROM fb_series a
    JOIN fb_series b ON b.enterprise_id = a.enterprise_id AND b.mi = a.mi + 12
    WHERE a.mi < 12
  ) pairs
  GROUP BY enterprise_id
),
fb_cp AS (
  SELECT enterprise_id, cp_key,
    sum(CASE WHEN mi < 12 AND amount > 0 AND tx_type = 'sales_receipt' THEN amount ELSE 0 END)
      AS sales_12,
    sum(CASE WHEN mi < 6 AND amount > 0 AND tx_type = 'sales_receipt' THEN amount ELSE 0 END)
      AS sales_recent,
    sum(CASE WHEN mi >= 6 AND mi < 12 AND amount > 0 AND tx_type = 'sales_receipt'
             THEN amount ELSE 0 END) AS sales_prior,
    sum(CASE WHEN mi < 12 AND amount < 0 AND tx_type = 'supplier_payment' THEN -amount
             ELSE 0 END) AS purchases_12,
    sum(CASE WHEN mi < 6 AND amount < 0 AND tx_type = 'supplier_payment' THEN -amount
             ELSE 0 END) AS purchases_recent,
    sum(CASE WHEN mi >= 6 AND mi < 12 AND amount < 0 AND tx_type = 'supplier_payment'
             THEN -amount ELSE 0 END) AS purchases_prior,
    sum(CASE WHEN mi < 12 AND amount > 0 THEN amount ELSE 0 END) AS in_12,
    sum(CASE WHEN mi < 12 AND amount < 0 THEN -amount ELSE 0 END) AS out_12
  FROM fb_tx
  WHERE cp_key IS NOT NULL AND {_EXTERNAL}
  GROUP BY enterprise_id, cp_key
),
fb_counterparties AS (
  SELECT enterprise_id,
    {columns("counterparties")}
  FROM fb_cp
  GROUP BY enterprise_id
),
fb_due AS (
  SELECT enterprise_id, tx_type, mi, pay_day
  FROM (
    SELECT enterprise_id, tx_type, mi, CAST(EXTRACT(DAY FROM local_day) AS INTEGER) AS pay_day,
      row_number() OVER (PARTITION BY enterprise_id, tx_type, mi
                         ORDER BY amount, booked_at, tx_id) AS rn
    FROM fb_tx
    WHERE mi < 12 AND amount < 0 AND tx_type IN ({", ".join(_text(k) for k in _DUE_KINDS)})
  ) ranked
  WHERE rn = 1
),
fb_timing AS (
  SELECT enterprise_id,
    {columns("timing")}
  FROM (
    SELECT d.enterprise_id, d.tx_type, d.mi, d.pay_day - u.usual_day AS lateness
    FROM fb_due d
    JOIN (
      SELECT enterprise_id, tx_type, median(pay_day) AS usual_day
      FROM fb_due
      GROUP BY enterprise_id, tx_type
    ) u ON u.enterprise_id = d.enterprise_id AND u.tx_type = d.tx_type
  ) due
  GROUP BY enterprise_id
),
fb_eod AS (
  SELECT enterprise_id, account_key, local_day, balance_after AS balance
  FROM (
    SELECT enterprise_id, account_key, local_day, balance_after,
      row_number() OVER (PARTITION BY account_key, local_day
                         ORDER BY booked_at DESC, tx_id DESC) AS rn
    FROM fb_tx
    WHERE balance_after IS NOT NULL
  ) ranked
  WHERE rn = 1
),
fb_delta AS (
  SELECT enterprise_id, local_day,
    CAST(sum(balance - coalesce(previous, 0)) AS BIGINT) AS delta
  FROM (
    SELECT enterprise_id, local_day, balance,
      lag(balance) OVER (PARTITION BY account_key ORDER BY local_day) AS previous
    FROM fb_eod
  ) changes
  GROUP BY enterprise_id, local_day
),
fb_seg AS (
  SELECT enterprise_id, seg_start, seg_end, balance,
    CASE WHEN seg_end = {_day(as_of)} THEN 1 ELSE 0 END AS is_last,
    {", ".join(f"{sql} AS d{w}" for w, sql in window_days.items())}
  FROM (
    SELECT enterprise_id, local_day AS seg_start,
      coalesce(lead(local_day) OVER (PARTITION BY enterprise_id ORDER BY local_day),
               {_day(as_of)}) AS seg_end,
      CAST(sum(delta) OVER (PARTITION BY enterprise_id ORDER BY local_day
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS balance
    FROM fb_delta
  ) running
),
fb_peak AS (
  SELECT s.enterprise_id, s.seg_start, s.balance, s.is_last, s.d3, s.d6, s.d12,
    s.balance < f.outflow_12m * {LOW_BALANCE_DAYS_OF_OUTFLOW} / 365.0 AS low_flag,
    max(s.balance) OVER (PARTITION BY s.enterprise_id ORDER BY s.seg_start
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS peak
  FROM fb_seg s
  LEFT JOIN fb_flows f ON f.enterprise_id = s.enterprise_id
  WHERE s.d12 > 0
),
fb_balances AS (
  SELECT enterprise_id,
    {columns("balances")}
  FROM (
    SELECT enterprise_id, balance, is_last, d3, d6, d12,
      CASE WHEN low_flag THEN 1 ELSE 0 END AS low,
      CASE WHEN peak > 0 THEN CAST(peak - balance AS DOUBLE) / peak END AS drawdown
    FROM fb_peak
  ) b
  GROUP BY enterprise_id
),
fb_lifetime AS (
  SELECT enterprise_id,
    {columns("life")}
  FROM fb_life
)"""
    table_of = {
        "flows": "fl",
        "activity": "ac",
        "monthly": "mo",
        "seasonal": "se",
        "counterparties": "cp",
        "timing": "ti",
        "balances": "ba",
        "life": "li",
    }

    def value(feature: Feature) -> str:
        column = f'{table_of[feature.stage]}."{feature.name}"'
        return f"coalesce({column}, 0)" if feature.zero_if_absent else column

    wanted = _wanted(features)
    resolved = {f.name: value(f) for f in FEATURES if f.stage != "derived"}
    stages = {"flows", "activity", "life"}  # the data summary and the population
    selected: list[str] = []
    for feature in FEATURES:
        if feature.name not in wanted:
            continue
        if feature.stage == "derived":
            expression = feature.sql
            for name in sorted(resolved, key=len, reverse=True):
                replaced = _replace_word(expression, name, resolved[name])
                if replaced != expression:
                    stages.add(next(f.stage for f in FEATURES if f.name == name))
                expression = replaced
            expression = f"coalesce({expression}, 0)" if feature.zero_if_absent else expression
        else:
            expression = resolved[feature.name]
            stages.add(feature.stage)
        selected.append(f'{expression} AS "{feature.name}"')
    summary = [
        "coalesce(fl.data_entries, 0) AS data_entries",
        "coalesce(fl.data_corrected_entries, 0) AS data_corrected_entries",
        "coalesce(ac.data_banks, 0) AS data_banks",
        "l.first_day AS data_first_day",
        "l.last_day AS data_last_day",
    ]
    select_list = ",\n  ".join(["l.enterprise_id", *selected, *summary])
    blocks = dict(re.findall(r"^(fb_\w+) AS \((.*?)^\)", ctes, flags=re.S | re.M))
    needed: set[str] = set()
    pending = [_STAGE_CTE[stage] for stage in stages]
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending += _CTE_NEEDS[name]
    kept = ",\n".join(f"{name} AS ({blocks[name]})" for name in blocks if name in needed)
    joins = "\n".join(
        f"LEFT JOIN {_STAGE_CTE[stage]} {alias} ON {alias}.enterprise_id = l.enterprise_id"
        for stage, alias in table_of.items()
        if stage in stages
    )
    return (
        f"WITH {kept}\nSELECT\n  {select_list}\nFROM fb_life l\n{joins}\nORDER BY l.enterprise_id"
    )


_STAGE_CTE = {
    "flows": "fb_flows",
    "activity": "fb_activity",
    "monthly": "fb_monthly",
    "seasonal": "fb_seasonal",
    "counterparties": "fb_counterparties",
    "timing": "fb_timing",
    "balances": "fb_balances",
    "life": "fb_lifetime",
}
_CTE_NEEDS: dict[str, list[str]] = {
    "fb_tx": [],
    "fb_life": [],
    "fb_flows": ["fb_tx"],
    "fb_days": ["fb_tx"],
    "fb_activity": ["fb_days"],
    "fb_month": ["fb_tx"],
    "fb_grid": ["fb_month"],
    "fb_series": ["fb_grid", "fb_month"],
    "fb_monthly": ["fb_series"],
    "fb_seasonal": ["fb_series"],
    "fb_cp": ["fb_tx"],
    "fb_counterparties": ["fb_cp"],
    "fb_due": ["fb_tx"],
    "fb_timing": ["fb_due"],
    "fb_eod": ["fb_tx"],
    "fb_delta": ["fb_eod"],
    "fb_seg": ["fb_delta"],
    "fb_peak": ["fb_seg", "fb_flows"],
    "fb_balances": ["fb_peak"],
    "fb_lifetime": ["fb_life"],
}
"""Which CTEs each CTE of the feature query reads (to leave out what no wanted feature needs)."""


def _wanted(features: Collection[str] | None) -> set[str]:
    if features is None:
        return set(FEATURE_NAMES)
    unknown = sorted(set(features) - set(FEATURE_NAMES))
    if unknown:
        raise InputError(f"unknown cash-flow feature(s) {unknown}", field="features")
    return set(features)


def _replace_word(expression: str, word: str, replacement: str) -> str:
    """Replace whole-word occurrences of ``word`` (a feature name) in ``expression``."""
    return re.sub(rf"(?<![\w.\"]){re.escape(word)}(?![\w\"])", replacement, expression)


def entries_digest_sql(
    as_of: date, *, timezone: str = "Asia/Shanghai", enterprises: Sequence[str] | None = None
) -> str:
    """Per enterprise, cheap aggregates that change whenever its data before ``as_of`` does:
    entries, effective-amount total, latest ingest, corrections, resolved counterparties,
    flags and anomaly scores (integers, so the digest does not depend on summation order)."""
    cutoff = cutoff_instant(as_of, timezone)
    restrict = ""
    if enterprises is not None:
        codes = check_enterprises(enterprises)
        restrict = " AND enterprise_id IN (" + (", ".join(_text(c) for c in codes) or "NULL") + ")"
    return f"""SELECT enterprise_id,
  count(*) AS entries,
  CAST(sum(coalesce(corrected_amount_minor, amount_minor)) AS VARCHAR) AS total,
  max(ingest_id) AS latest_ingest,
  count(correction_id) AS corrections,
  max(correction_id) AS latest_correction,
  count(counterparty_id) AS resolved,
  CAST(sum(cardinality(quality_flags)) AS BIGINT) AS flags,
  CAST(sum(CAST(round(coalesce(anomaly_score, 0) * 1000000) AS BIGINT)) AS VARCHAR)
    AS anomaly
FROM transactions
WHERE enterprise_id IS NOT NULL AND booked_at < {_timestamp(cutoff)}{restrict}
GROUP BY enterprise_id
ORDER BY enterprise_id"""
