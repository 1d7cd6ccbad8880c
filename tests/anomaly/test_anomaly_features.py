"""No look-ahead in the features: what happens later in an account never changes its earlier
features, nor the scores of the (default) causal model; the bidirectional model's earlier scores
can change (it reads each entry with the entries after it)."""

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


def changed_later(raw: pd.DataFrame, account: str, cut: int) -> tuple[pd.DataFrame, pd.Series]:
    """``raw`` with the entries of ``account`` from position ``cut`` on rewritten."""
    changed = raw.copy()
    later = (changed["sequence_id"] == account) & (changed["position"] >= cut)
    changed.loc[later, "amount_minor"] = changed.loc[later, "amount_minor"] * 7
    changed.loc[later, "counterparty_account"] = "someone-new"
    changed.loc[later, "description_raw"] = "changed"
    changed.loc[later, "balance_after_minor"] = 1
    changed.loc[later, "tx_type"] = "other"
    return changed, later


def test_changing_later_entries_changes_no_earlier_feature_or_causal_score(
    prepared: Prepared, causal_model
) -> None:
    raw = prepared.raw
    account, cut = longest_account(raw)
    changed, later = changed_later(raw, account, cut)
    before, after = featurise(raw), featurise(changed)
    assert later.sum() > 10
    pd.testing.assert_frame_equal(earlier(before, account, cut), earlier(after, account, cut))
    # the later rows did change, so the comparison above can fail
    assert not earlier(before, account, 10**9).equals(earlier(after, account, 10**9))

    scores_before = pd.Series(causal_model.decision_function(before), index=before["tx_id"])
    scores_after = pd.Series(causal_model.decision_function(after), index=after["tx_id"])
    keep = earlier(before, account, cut).index
    # the same sequence lengths give the same batches, so the arithmetic is identical
    assert (scores_before[keep] == scores_after[keep]).all()
    moved = earlier(before, account, 10**9).index.difference(keep)
    assert (scores_before[moved] != scores_after[moved]).any()


def test_removing_or_adding_later_entries_changes_no_earlier_feature_or_causal_score(
    prepared: Prepared, causal_model
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
        name: pd.Series(causal_model.decision_function(f), index=f["tx_id"])
        for name, f in (("base", base), ("short", short), ("long", long))
    }
    keep = earlier(base, account, cut).index
    # a different sequence length can change how sequences are batched and padded; the
    # recurrence is the same, so only float rounding of the batched products may differ
    for name in ("short", "long"):
        np.testing.assert_allclose(scores[name][keep], scores["base"][keep], rtol=0, atol=1e-6)


def test_a_later_entry_can_change_an_earlier_score_of_the_bidirectional_model(
    prepared: Prepared, tiny_model
) -> None:
    """The bidirectional model reads each entry with the entries after it: changing or adding
    later entries moves the scores of earlier entries (whose features are unchanged), most
    of all the entries just before the change, and leaves other accounts' scores alone."""
    raw = prepared.raw
    account, cut = longest_account(raw)
    changed, _ = changed_later(raw, account, cut)
    extra = raw[raw["sequence_id"] == account].tail(5).copy()
    extra["tx_id"] = [f"new-{i}" for i in range(len(extra))]
    extra["booked_us"] = extra["booked_us"] + 40 * DAY_US
    extra["period_day"] = extra["period_day"] + 40
    extra["statement_id"] = "a-later-statement"
    extended = pd.concat([raw, extra], ignore_index=True)
    base = featurise(raw)
    base_scores = pd.Series(tiny_model.decision_function(base), index=base["tx_id"])
    others = base.loc[base["sequence_id"] != account, "tx_id"]
    mine = base["sequence_id"] == account
    first = base.loc[mine & (base["position"] < 5), "tx_id"]
    last = int(base.loc[mine, "position"].max())
    # the last entry before the change: position cut - 1 when later entries change, the
    # account's latest entry when new ones arrive
    for variant, boundary in ((changed, cut - 1), (extended, last)):
        features = featurise(variant)
        pd.testing.assert_frame_equal(earlier(base, account, cut), earlier(features, account, cut))
        scores = pd.Series(tiny_model.decision_function(features), index=features["tx_id"])
        before_change = base.loc[mine & (base["position"] <= boundary), "tx_id"]
        moved = (scores[before_change] - base_scores[before_change]).abs()
        assert (moved > 1e-6).any()
        edge = base.loc[mine & (base["position"] == boundary), "tx_id"]
        print(
            f"moved: next to the change {float(moved[edge].max()):.2e}, "
            f"first entries {float(moved[first].max()):.2e}"
        )
        assert float(moved[edge].max()) > float(moved[first].max())
        np.testing.assert_allclose(scores[others], base_scores[others], rtol=0, atol=1e-6)


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
