"""No look-ahead: what happens later in an account never changes its earlier features or scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import Prepared
from flowbureau.anomaly.features import FEATURE_NAMES, build_features
from flowbureau.anomaly.preprocessing import order_ledger, preprocess

DAY_US = 86_400 * 1_000_000


def longest_account(frame: pd.DataFrame) -> tuple[str, int]:
    counts = frame.groupby("sequence_id").size()
    account = str(counts.idxmax())
    return account, int(counts.max()) // 2


def featurise(raw: pd.DataFrame) -> pd.DataFrame:
    return build_features(
        preprocess(order_ledger(raw.drop(columns=["sequence_id", "position"]))).frame
    )


def earlier(features: pd.DataFrame, account: str, cut: int) -> pd.DataFrame:
    rows = features[(features["sequence_id"] == account) & (features["position"] < cut)]
    return rows.set_index("tx_id")[list(FEATURE_NAMES)].sort_index()


def test_features_are_finite_and_complete(prepared: Prepared) -> None:
    matrix = prepared.features[list(FEATURE_NAMES)].to_numpy()
    assert np.isfinite(matrix).all()
    assert len(prepared.features) == len(prepared.raw)


def test_changing_later_entries_changes_no_earlier_feature_or_score(
    prepared: Prepared, tiny_model
) -> None:
    raw = prepared.raw
    account, cut = longest_account(raw)
    changed = raw.copy()
    later = (changed["sequence_id"] == account) & (changed["position"] >= cut)
    changed.loc[later, "amount_minor"] = changed.loc[later, "amount_minor"] * 7
    changed.loc[later, "counterparty_account"] = "someone-new"
    changed.loc[later, "description_raw"] = "changed"
    changed.loc[later, "balance_after_minor"] = 1
    changed.loc[later, "tx_type"] = "other"
    before, after = featurise(raw), featurise(changed)
    assert later.sum() > 10
    pd.testing.assert_frame_equal(earlier(before, account, cut), earlier(after, account, cut))
    # the later rows did change, so the comparison above can fail
    assert not earlier(before, account, 10**9).equals(earlier(after, account, 10**9))

    scores_before = pd.Series(tiny_model.decision_function(before), index=before["tx_id"])
    scores_after = pd.Series(tiny_model.decision_function(after), index=after["tx_id"])
    keep = earlier(before, account, cut).index
    # the same sequence lengths give the same batches, so the arithmetic is identical
    assert (scores_before[keep] == scores_after[keep]).all()
    moved = earlier(before, account, 10**9).index.difference(keep)
    assert (scores_before[moved] != scores_after[moved]).any()


def test_removing_or_adding_later_entries_changes_no_earlier_feature_or_score(
    prepared: Prepared, tiny_model
) -> None:
    raw = prepared.raw
    account, cut = longest_account(raw)
    mine = raw["sequence_id"] == account
    truncated = raw[~mine | (raw["position"] < cut)]
    extra = raw[mine].tail(5).copy()
    extra["tx_id"] = [f"new-{i}" for i in range(len(extra))]
    extra["booked_us"] = extra["booked_us"] + 40 * DAY_US
    extra["period_day"] = extra["period_day"] + 40
    extra["statement_id"] = "a-later-statement"
    extended = pd.concat([raw, extra], ignore_index=True)
    base, short, long = featurise(raw), featurise(truncated), featurise(extended)
    for other in (short, long):
        pd.testing.assert_frame_equal(earlier(base, account, cut), earlier(other, account, cut))
    scores = {
        name: pd.Series(tiny_model.decision_function(f), index=f["tx_id"])
        for name, f in (("base", base), ("short", short), ("long", long))
    }
    keep = earlier(base, account, cut).index
    # a different sequence length can change how sequences are batched and padded; the
    # recurrence is the same, so only float rounding of the batched products may differ
    for name in ("short", "long"):
        np.testing.assert_allclose(scores[name][keep], scores["base"][keep], rtol=0, atol=1e-6)


@pytest.mark.parametrize("column", ["amount_minor", "booked_us"])
def test_the_comparison_sees_a_change_to_an_earlier_entry(prepared: Prepared, column: str) -> None:
    """The check above is not vacuous: changing an earlier entry does change its features."""
    raw = prepared.raw
    account, cut = longest_account(raw)
    changed = raw.copy()
    target = (changed["sequence_id"] == account) & (changed["position"] == cut - 1)
    changed.loc[target, column] = changed.loc[target, column] * 3
    assert not earlier(featurise(raw), account, cut).equals(
        earlier(featurise(changed), account, cut)
    )
