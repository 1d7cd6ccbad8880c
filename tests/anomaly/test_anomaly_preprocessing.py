"""Ledger order, fills and rule flags on hand-made frames and on the synthetic consortium."""

from __future__ import annotations

import numpy as np
from anomaly_rows import DAY_US, frame_of, row, with_balances

from conftest import Consortium, Prepared
from flowbureau.anomaly.evaluation import attach_truth, load_truth
from flowbureau.anomaly.preprocessing import fill_missing, preprocess, rule_flags


def test_a_statement_printed_newest_first_is_read_backwards() -> None:
    rows = [row(i, location_index=10 - i, source_location=str(10 - i)) for i in range(5)]
    rows += [row(i, statement_id="s2", period_day=19800, location_index=i + 1) for i in range(5, 8)]
    frame = frame_of(rows)
    assert list(frame["tx_id"]) == [f"t{i:03d}" for i in range(8)]
    assert list(frame["position"]) == list(range(8))


def test_a_missing_balance_is_filled_when_both_neighbours_agree() -> None:
    rows = with_balances([row(i, amount_minor=-1000 * (i + 1)) for i in range(4)])
    rows[1]["has_balance"] = False
    rows[1]["balance_after_minor"] = 0
    filled, fills = fill_missing(frame_of(rows))
    assert filled.loc[1, "balance_after_minor"] == 1_000_000 - 1000 - 2000
    assert bool(filled.loc[1, "balance_filled"])
    assert list(fills["method"]) == ["balance_continuity_previous_and_next"]


def test_a_missing_balance_is_not_filled_when_the_neighbours_disagree() -> None:
    rows = with_balances([row(i, amount_minor=-1000) for i in range(3)])
    rows[1].update(has_balance=False, balance_after_minor=0, amount_minor=-10_000)  # a slip
    filled, fills = fill_missing(frame_of(rows))
    assert not filled["balance_filled"].any()
    assert fills.empty


def test_a_missing_counterparty_name_comes_from_the_accounts_history() -> None:
    rows = [row(i) for i in range(3)] + [row(3, counterparty_name="乙公司")]
    rows.append(row(4, counterparty_name=None, counterparty_name_norm=None))
    filled, fills = fill_missing(frame_of(rows))
    assert filled.loc[4, "counterparty_name"] == "甲公司"
    assert fills.loc[0, "evidence"].startswith("3 of 4 entries")


def test_decimal_slips_are_proved_by_the_balance_and_by_the_reconciliation() -> None:
    rows = with_balances([row(i, amount_minor=-12_340) for i in range(4)])
    rows[2]["amount_minor"] = -123_400  # written ten times too large; the balance is true
    flags = rule_flags(frame_of(rows))
    slip = flags[flags["rule"] == "balance_decimal_slip"]
    assert list(slip["tx_id"]) == ["t002"]
    assert slip["suggested_amount_minor"].iloc[0] == -12_340

    no_balance = [row(i, amount_minor=-5_000, statement_diff_minor=4_950_000) for i in range(3)]
    no_balance[1]["amount_minor"] = -5_000_000  # statement is off by -(5 000 000 - 50 000)
    no_balance[0]["amount_minor"] = -50_000
    flags = rule_flags(frame_of(no_balance))
    slip = flags[flags["rule"] == "statement_decimal_slip"]
    assert list(slip["tx_id"]) == ["t001"]
    assert slip["anomaly_type"].iloc[0] == "typo_x100"
    assert slip["suggested_amount_minor"].iloc[0] == -50_000


def test_date_gaps_duplicates_and_round_bursts_are_flagged() -> None:
    rows = [row(i, has_value_date=True) for i in range(3)]
    rows[1]["value_day"] += 3
    rows.append(row(3, booked_us=row(2)["booked_us"] + DAY_US // 2, has_value_date=False))
    rows += [
        row(i, amount_minor=-5_000_000, counterparty_account=f"p{i}", booked_us=row(5)["booked_us"])
        for i in range(4, 10)
    ]
    flags = rule_flags(frame_of(rows))
    by_rule = flags.groupby("rule")["tx_id"].apply(set).to_dict()
    assert by_rule["value_date_gap"] == {"t001"}
    assert "t003" in by_rule["near_duplicate"]
    assert by_rule["round_burst"] == {f"t{i:03d}" for i in range(4, 10)}


def test_a_three_way_cycle_is_flagged_on_both_sides_of_every_leg() -> None:
    legs = [("A", "B", 0), ("B", "C", 1), ("C", "A", 2)]
    rows = []
    for k, (payer, payee, day) in enumerate(legs):
        common = {"cp_member": True, "booked_us": row(day)["booked_us"]}
        rows.append(
            row(
                2 * k,
                account_id=payer,
                counterparty_account=payee,
                amount_minor=-1_000_000 + k,
                **common,
            )
        )
        rows.append(
            row(
                2 * k + 1,
                account_id=payee,
                counterparty_account=payer,
                amount_minor=1_000_000 - k,
                **common,
            )
        )
    flags = rule_flags(frame_of(rows))
    assert set(flags.loc[flags["rule"] == "circular_flow", "tx_id"]) == {
        f"t{i:03d}" for i in range(6)
    }


def test_rules_and_fills_against_the_planted_truth(
    consortium: Consortium, prepared: Prepared
) -> None:
    pre = preprocess(prepared.raw)
    truth = attach_truth(pre.frame, load_truth(consortium.truth))
    by_tx = truth.set_index("tx_id")
    slips = pre.flags[pre.flags["rule"].isin(["balance_decimal_slip", "statement_decimal_slip"])]
    true_amount = by_tx.loc[slips["tx_id"], "true_amount_minor"].to_numpy()
    exact = np.mean(slips["suggested_amount_minor"].to_numpy() == true_amount)
    print(f"{len(slips)} decimal-slip proofs, {exact:.3f} exact")
    assert len(slips) > 0
    assert (slips["suggested_amount_minor"].to_numpy() == true_amount).all()
    names = pre.fills[pre.fills["field"] == "counterparty_name"]
    expected = by_tx.loc[names["tx_id"]]
    right = (names["value"].to_numpy() == expected["true_counterparty_name"].to_numpy()) | (
        names["value"].to_numpy() == expected["true_counterparty_ascii"].to_numpy()
    )
    print(f"{len(names)} counterparty names filled, {right.mean():.3f} right")
    assert len(names) > 0
    assert right.mean() >= 0.9
