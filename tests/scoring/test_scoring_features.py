"""Cash-flow features as of a date: exact values on hand-built entries, and no look-ahead."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scoring_data import code, tx, view_table

from flowbureau.errors import InputError
from flowbureau.scoring.features import (
    FEATURE_NAMES,
    SUMMARY_COLUMNS,
    cashflow_sql,
    cutoff_instant,
    entries_digest_sql,
    month_start,
)
from flowbureau.storage.engine import create_engine

AS_OF = date(2025, 7, 1)
E = code(1)
F = code(2)


def at(day: date, hour: int = 2) -> datetime:
    """A booking time on ``day`` (02:00 UTC = 10:00 in Shanghai)."""
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def features(rows: list[dict[str, object]], as_of: date = AS_OF, **kw: object) -> pd.DataFrame:
    with create_engine("duckdb") as engine:
        engine.register("transactions", view_table(rows))
        table = engine.query(cashflow_sql(as_of, **kw))  # type: ignore[arg-type]
    return table.to_pandas().set_index("enterprise_id")


def test_month_start_clips_to_the_shorter_month() -> None:
    assert month_start(date(2025, 3, 31), 1) == date(2025, 2, 28)
    assert month_start(date(2024, 3, 31), 1) == date(2024, 2, 29)
    assert month_start(date(2025, 1, 15), 13) == date(2023, 12, 15)
    assert month_start(date(2025, 1, 15), -1) == date(2025, 2, 15)


def test_flow_totals_counts_and_windows() -> None:
    rows = [
        tx("a", E, at(date(2025, 6, 20)), 1_000_00),  # month 0
        tx("b", E, at(date(2025, 5, 10)), 2_000_00, bank_id="bank-b", account_id="b-1"),
        tx("c", E, at(date(2025, 2, 10)), 4_000_00),  # month 4: in 6m, not 3m
        tx("d", E, at(date(2024, 8, 10)), 8_000_00),  # month 10: in 12m only
        tx("e", E, at(date(2024, 6, 10)), 16_000_00),  # month 12: outside 12m
        tx("f", E, at(date(2025, 6, 21)), -300_00),
        tx("g", E, at(date(2025, 6, 22)), -50_00, tx_type="internal_transfer"),  # excluded
        tx("h", E, at(date(2025, 6, 23)), 70_00, tx_type="internal_transfer"),  # excluded
        tx("late", E, at(date(2025, 7, 1)), 999_00),  # on the as-of day: not used
    ]
    row = features(rows).loc[E]
    assert row["inflow_3m"] == 3_000_00
    assert row["inflow_6m"] == 7_000_00
    assert row["inflow_12m"] == 15_000_00
    assert row["outflow_3m"] == 300_00
    assert row["inflow_count_3m"] == 2
    assert row["inflow_count_12m"] == 4
    assert row["outflow_count_12m"] == 1
    assert row["net_flow_3m"] == 2_700_00
    assert row["banks_12m"] == 2
    assert row["accounts_12m"] == 2
    assert row["months_with_data_12m"] == 4
    assert row["inflow_growth_3m"] == pytest.approx(3_000_00 / 4_000_00 - 1)
    assert row["data_entries"] == 8
    assert row["history_days"] == (AS_OF - date(2024, 6, 10)).days
    assert row["days_since_last_entry"] == (AS_OF - date(2025, 6, 23)).days


def test_the_as_of_day_is_a_local_day() -> None:
    # 2025-06-30 16:30 UTC is 2025-07-01 00:30 in Shanghai: on the as-of day, so not used;
    # 15:30 UTC is 23:30 the day before: used.
    rows = [
        tx("in", E, datetime(2025, 6, 30, 15, 30, tzinfo=UTC), 100),
        tx("out", E, datetime(2025, 6, 30, 16, 30, tzinfo=UTC), 10_000),
    ]
    assert features(rows).loc[E, "inflow_3m"] == 100
    assert features(rows, timezone="UTC").loc[E, "inflow_3m"] == 10_100
    assert cutoff_instant(AS_OF, "Asia/Shanghai") == datetime(2025, 6, 30, 16, tzinfo=UTC)


def test_effective_amounts_use_corrections_and_are_counted() -> None:
    rows = [
        tx(
            "typo",
            E,
            at(date(2025, 6, 1)),
            1_000_000,
            corrected_amount_minor=10_000,
            correction_id="corr-1",
        ),
        tx("ok", E, at(date(2025, 6, 2)), 5_000),
    ]
    row = features(rows).loc[E]
    assert row["inflow_3m"] == 15_000
    assert row["data_corrected_entries"] == 1
    assert row["corrected_share_12m"] == pytest.approx(0.5)


def test_lending_returned_payments_round_amounts_and_payroll() -> None:
    rows = [
        tx("loan", E, at(date(2025, 3, 1)), 50_000_000, tx_type="loan_disbursement"),
        tx("rep", E, at(date(2025, 4, 1)), -2_000_000, tx_type="loan_repayment"),
        tx("int", E, at(date(2025, 4, 1), 3), -100_000, tx_type="interest"),
        tx("ol", E, at(date(2025, 6, 5)), 3_000_000, tx_type="online_lending"),
        tx("olr", E, at(date(2025, 6, 25)), -310_000, tx_type="online_lending"),
        tx("sale", E, at(date(2025, 5, 5)), 7_000_000),
        tx("ret", E, at(date(2025, 5, 6)), 123_456, quality_flags=["returned_payment"]),
        tx("pay1", E, at(date(2025, 5, 10)), -1_234_567, tx_type="payroll"),
        tx("pay2", E, at(date(2025, 6, 10)), -1_234_567, tx_type="payroll"),
    ]
    row = features(rows).loc[E]
    assert row["loan_disbursed_12m"] == 50_000_000
    assert row["debt_service_12m"] == 2_100_000
    assert row["online_lending_in_12m"] == 3_000_000
    assert row["online_lending_out_12m"] == 310_000
    assert row["online_lending_count_3m"] == 1
    inflow = 50_000_000 + 3_000_000 + 7_000_000 + 123_456
    assert row["inflow_12m"] == inflow
    assert row["debt_service_ratio_12m"] == pytest.approx(2_100_000 / (inflow - 53_000_000))
    assert row["online_lending_share_12m"] == pytest.approx(3_000_000 / inflow)
    assert row["returned_payments_12m"] == 1
    # non-zero multiples of 1,000,000 minor units: loan, rep, ol, sale (4 of 9)
    assert row["round_amount_share_12m"] == pytest.approx(4 / 9)
    assert row["payroll_months_12m"] == 2
    # the enterprise's months run from its first entry (month 3 back) to month 0: 4 months
    assert row["payroll_regularity_12m"] == pytest.approx(2 / 4)


def test_concentration_churn_and_round_tripping() -> None:
    day = date(2025, 6, 1)
    old = date(2024, 10, 1)  # month 8: the earlier half-year
    rows = [
        tx("s1", E, at(day), 600, counterparty_name_norm="a"),
        tx("s2", E, at(day), 300, counterparty_name_norm="b"),
        tx("s3", E, at(day), 100, counterparty_name_norm="c"),
        tx("s4", E, at(old), 100, counterparty_name_norm="gone"),
        tx("s5", E, at(old), 100, counterparty_name_norm="a"),
        tx("p1", E, at(day), -400, counterparty_name_norm="a", tx_type="other"),
    ]
    row = features(rows).loc[E]
    total = 600 + 300 + 100 + 100 + 100
    shares = np.array([700, 300, 100, 100]) / total
    assert row["customer_hhi_12m"] == pytest.approx(float((shares**2).sum()))
    assert row["customer_top1_share_12m"] == pytest.approx(700 / total)
    assert row["customers_12m"] == 4
    assert row["customers_6m"] == 3
    assert row["customer_churn_6m"] == pytest.approx(1 / 2)  # of {gone, a}, 'gone' left
    # counterparty 'a' received 400 and paid 700: min = 400 of 1200 inflow
    assert row["circular_flow_share_12m"] == pytest.approx(400 / total)


def test_balances_carry_forward_and_sum_over_accounts() -> None:
    as_of = date(2025, 1, 11)
    rows = [
        # account 1: 100 on Jan 1 (two entries that day: the later one counts), -50 on Jan 6
        tx("x1", E, at(date(2025, 1, 1), 1), 10, balance_after_minor=90, account_id="1"),
        tx("x2", E, at(date(2025, 1, 1), 5), 10, balance_after_minor=100, account_id="1"),
        tx("x3", E, at(date(2025, 1, 6)), -150, balance_after_minor=-50, account_id="1"),
        # account 2 at another bank: 300 from Jan 4; an entry without a balance changes nothing
        tx(
            "y1",
            E,
            at(date(2025, 1, 4)),
            300,
            balance_after_minor=300,
            account_id="2",
            bank_id="bank-b",
        ),
        tx("y2", E, at(date(2025, 1, 8)), 5, account_id="2", bank_id="bank-b"),
    ]
    row = features(rows, as_of=as_of).loc[E]
    # days: Jan 1-3 = 100, Jan 4-5 = 400, Jan 6-10 = 250 (10 days in all)
    assert row["balance_avg_3m"] == pytest.approx((3 * 100 + 2 * 400 + 5 * 250) / 10)
    assert row["balance_last"] == 250
    assert row["balance_min_12m"] == 100
    assert row["negative_balance_days_12m"] == 0
    assert row["max_drawdown_12m"] == pytest.approx((400 - 250) / 400)


def test_a_day_s_balance_ties_on_the_booking_time_go_to_the_highest_tx_id() -> None:
    as_of = date(2025, 1, 11)
    same = at(date(2025, 1, 2), 3)
    rows = [
        tx("t-b", E, same, 10, balance_after_minor=700, account_id="1"),
        tx("t-a", E, same, 10, balance_after_minor=500, account_id="1"),
        tx("t-c", E, same, 10, account_id="1"),  # states no balance: never the day's balance
    ]
    row = features(rows, as_of=as_of).loc[E]
    assert row["balance_last"] == 700
    assert row["balance_min_12m"] == 700


def test_margins_fixed_costs_and_recent_against_the_year() -> None:
    rows = [
        tx("s1", E, at(date(2025, 6, 10)), 1_000_00, tx_type="sales_receipt"),  # month 0
        tx("s2", E, at(date(2024, 9, 10)), 3_000_00, tx_type="sales_receipt"),  # month 9
        tx("p1", E, at(date(2025, 6, 11)), -200_00, tx_type="payroll"),
        tx("r1", E, at(date(2025, 5, 11)), -100_00, tx_type="rent"),
        tx("u1", E, at(date(2024, 9, 12)), -50_00, tx_type="utilities"),
        tx("g1", E, at(date(2025, 6, 12)), -400_00, tx_type="supplier_payment"),
        tx("i1", E, at(date(2025, 6, 13)), -999_00, tx_type="internal_transfer"),  # excluded
        tx("b1", E, at(date(2025, 6, 1)), 0, balance_after_minor=100, account_id="1"),
    ]
    row = features(rows).loc[E]
    assert row["fixed_costs_3m"] == 300_00
    assert row["fixed_costs_12m"] == 350_00
    assert row["net_margin_3m"] == pytest.approx((1_000_00 - 700_00) / 1_000_00)
    assert row["net_margin_12m"] == pytest.approx((4_000_00 - 750_00) / 4_000_00)
    assert row["fixed_cost_ratio_3m"] == pytest.approx(300_00 / 1_000_00)
    assert row["fixed_cost_ratio_12m"] == pytest.approx(350_00 / 4_000_00)
    assert row["inflow_vs_year_3m"] == pytest.approx(1_000_00 / (4_000_00 / 4) - 1)
    assert row["balance_trend_3m"] == pytest.approx(1.0)  # one balance, the same everywhere
    quiet = features([tx("z", F, at(date(2025, 6, 10)), -5_00, tx_type="rent")]).loc[F]
    assert np.isnan(quiet["net_margin_3m"])  # no inflow: no margin
    assert np.isnan(quiet["fixed_cost_ratio_3m"])
    assert quiet["fixed_costs_3m"] == 5_00


def test_payment_timing_against_the_usual_day() -> None:
    def month(m: int, day: int) -> date:  # day ``day`` of month ``m`` back from AS_OF
        first = month_start(AS_OF, m + 1)
        return date(first.year, first.month, day)

    rows = [tx("sale", E, at(month(0, 1)), 9_000_00), tx("sale", F, at(month(0, 1)), 5_00)]
    # salaries on the 10th, May's paid on the 20th; the smaller social insurance debit on the
    # 3rd and a year-old late salary (month 12) are not payment days
    for m, day in enumerate([10, 20, 10, 10, 10, 10]):
        rows.append(tx(f"sal{m}", E, at(month(m, day)), -1_000_00, tx_type="payroll"))
        rows.append(tx(f"si{m}", E, at(month(m, 3)), -300_00, tx_type="payroll"))
    rows.append(tx("old", E, at(month(12, 28)), -1_000_00, tx_type="payroll"))
    # taxes on the 15th, 12th, 12th, 11th: 3 days after the usual 12th is not late yet; in
    # month 3 two equal debits tie and the earlier one (the 11th, not the 25th) counts
    for m, day in enumerate([15, 12, 12, 11]):
        rows.append(tx(f"vat{m}", E, at(month(m, day)), -200_00, tx_type="tax"))
    rows.append(tx("cit3", E, at(month(3, 25)), -200_00, tx_type="tax"))
    rows.append(tx("rent", E, at(month(2, 1)), -500_00, tx_type="rent"))
    frame = features(rows)
    row = frame.loc[E]
    assert row["payroll_late_share_12m"] == pytest.approx(1 / 6)
    assert row["payroll_day_deviation_12m"] == pytest.approx(10 / 6)
    assert row["tax_late_share_12m"] == 0.0
    assert row["tax_day_deviation_12m"] == pytest.approx((3 + 0 + 0 + 1) / 4)
    assert row["rent_late_share_12m"] == 0.0
    assert row["rent_day_deviation_12m"] == 0.0
    assert row["late_payment_share_12m"] == pytest.approx(1 / 11)
    assert row["late_payment_months_3m"] == 1
    quiet = frame.loc[F]  # no payroll, tax or rent: no payment day to be late against
    assert np.isnan(quiet["payroll_late_share_12m"])
    assert np.isnan(quiet["late_payment_share_12m"])
    assert quiet["late_payment_months_3m"] == 0


def test_every_feature_column_is_an_integer_or_a_double() -> None:
    rows = [
        tx("x1", E, at(date(2025, 1, 1)), 1000, balance_after_minor=1000),
        tx("x2", E, at(date(2025, 1, 5)), -600, balance_after_minor=400, tx_type="payroll"),
    ]
    with create_engine("duckdb") as engine:
        engine.register("transactions", view_table(rows))
        schema = engine.query(cashflow_sql(date(2025, 2, 1))).schema
    for name in FEATURE_NAMES:
        kind = schema.field(name).type
        assert kind in (pa.int64(), pa.float64()), (name, kind)


def test_negative_and_low_balance_days() -> None:
    as_of = date(2025, 1, 11)
    rows = [
        tx("x1", E, at(date(2025, 1, 1)), 1000, balance_after_minor=1000),
        tx("x2", E, at(date(2025, 1, 3)), -400, balance_after_minor=600),
        tx("x3", E, at(date(2025, 1, 5)), -36_100, balance_after_minor=-500),
    ]
    row = features(rows, as_of=as_of).loc[E]
    assert row["negative_balance_days_12m"] == 6  # Jan 5 .. Jan 10
    # low = below 7 days of average outflow: 36,500 / 365 * 7 = 700: Jan 3 .. Jan 10
    assert row["low_balance_days_12m"] == 8


def test_population_other_currencies_and_null_statistics() -> None:
    rows = [
        tx("usd", F, at(date(2025, 6, 1)), 500, currency="USD"),
        tx("cny", E, at(date(2025, 6, 1)), 500),
        tx("usd2", E, at(date(2025, 6, 2)), 500, currency="USD"),
        tx("none", None, at(date(2025, 6, 2)), 500),
    ]
    frame = features(rows)
    assert sorted(frame.index) == sorted([E, F])
    assert frame.loc[F, "inflow_12m"] == 0  # only USD entries: counted, not summed
    assert frame.loc[F, "foreign_currency_share_12m"] == 1.0
    assert frame.loc[E, "foreign_currency_share_12m"] == 0.5
    assert np.isnan(frame.loc[F, "customer_hhi_12m"])
    assert np.isnan(frame.loc[E, "seasonality_corr_12m"])  # needs 24 months
    assert list(frame.columns) == [*FEATURE_NAMES, *SUMMARY_COLUMNS]


def test_seasonality_needs_two_years_and_finds_a_repeating_pattern() -> None:
    rows = []
    for m in range(24):
        first = month_start(AS_OF, m + 1)
        amount = 1000 * (1 + (first.month in (11, 12)))  # a year-end peak
        rows.append(tx(f"s{m}", E, at(first), amount + 10 * m))
    row = features(rows).loc[E]
    assert row["seasonality_corr_12m"] > 0.9
    assert row["inflow_yoy_3m"] == pytest.approx(
        sum(1000 + 10 * m for m in range(3)) / sum(1000 + 10 * m for m in range(12, 15)) - 1
    )


def test_restriction_to_enterprises_and_bad_arguments() -> None:
    rows = [tx("a", E, at(date(2025, 6, 1)), 5), tx("b", F, at(date(2025, 6, 1)), 7)]
    assert list(features(rows, enterprises=[F]).index) == [F]
    with pytest.raises(InputError) as err:
        cashflow_sql(AS_OF, enterprises=["not-a-code"])
    assert err.value.field == "enterprise_id"
    with pytest.raises(InputError):
        cashflow_sql(datetime(2025, 1, 1), timezone="UTC")  # type: ignore[arg-type]
    with pytest.raises(InputError) as err:
        cashflow_sql(AS_OF, timezone="Mars/Olympus")
    assert err.value.field == "timezone"


def _random_rows(seed: int, n: int = 400) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    kinds = [
        "sales_receipt",
        "supplier_payment",
        "payroll",
        "tax",
        "loan_repayment",
        "online_lending",
        "internal_transfer",
        "interest",
    ]
    rows = []
    balance = {E: 0, F: 0}
    start = datetime(2023, 5, 1, tzinfo=UTC)
    for k in range(n):
        who = E if rng.random() < 0.6 else F
        amount = int(rng.integers(-500_000, 500_000))
        balance[who] += amount
        rows.append(
            tx(
                f"r{seed}-{k}",
                who,
                start + timedelta(hours=int(rng.integers(0, 24 * 800))),
                amount,
                bank_id=str(rng.choice(["b1", "b2"])),
                tx_type=str(rng.choice(kinds)),
                counterparty_name_norm=f"cp{int(rng.integers(0, 6))}",
                balance_after_minor=None if rng.random() < 0.1 else balance[who],
                quality_flags=[str(rng.choice(["returned_payment", "outlier"]))]
                if rng.random() < 0.1
                else [],
                corrected_amount_minor=amount // 10 if rng.random() < 0.05 else None,
                correction_id="c" if rng.random() < 0.05 else None,
            )
        )
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_look_ahead(seed: int) -> None:
    """Adding or altering entries booked on or after D changes no feature as of D."""
    as_of = date(2024, 11, 15)
    cutoff = cutoff_instant(as_of, "Asia/Shanghai")
    rows = _random_rows(seed)
    before = features(rows, as_of=as_of)
    rng = np.random.default_rng(seed + 100)
    altered = []
    changed = 0
    for row in rows:
        if row["booked_at"] >= cutoff:  # type: ignore[operator]
            changed += 1
            altered.append(
                {
                    **row,
                    "amount_minor": int(rng.integers(-(10**9), 10**9)),
                    "tx_type": "online_lending",
                    "balance_after_minor": -(10**9),
                    "quality_flags": ["returned_payment"],
                }
            )
        else:
            altered.append(row)
    assert changed > 50  # the random rows do reach past D
    altered += [
        tx("future-1", E, cutoff, 10**12),  # exactly at local midnight of D
        tx("future-2", code(3), cutoff + timedelta(days=40), 10**6),  # a new enterprise
    ]
    after = features(altered, as_of=as_of)
    pd.testing.assert_frame_equal(before, after)
    with create_engine("duckdb") as engine:
        engine.register("transactions", view_table(rows))
        digest = engine.query(entries_digest_sql(as_of)).to_pylist()
        engine.register("transactions", view_table(altered))
        assert engine.query(entries_digest_sql(as_of)).to_pylist() == digest
