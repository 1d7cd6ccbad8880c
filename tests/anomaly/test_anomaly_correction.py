"""Corrections and feedback through the warehouse view: recorded, explained, reversible."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Consortium
from flowbureau.anomaly.correction import (
    CorrectionProposal,
    apply_corrections,
    corrections,
    publish_view,
    revert_correction,
)
from flowbureau.anomaly.evaluation import load_truth
from flowbureau.anomaly.feedback import (
    confirm_flag,
    current_labels,
    label_transaction,
    reject_flag,
)
from flowbureau.anomaly.model import save_version
from flowbureau.anomaly.pipeline import (
    account_report,
    models_dir,
    run_detection,
    training_data,
)
from flowbureau.anomaly.store import AnomalyStore
from flowbureau.config import get_settings
from flowbureau.errors import ConflictError, InputError, NotFoundError
from flowbureau.storage.warehouse import Warehouse


def view(sql: str) -> list[dict[str, object]]:
    with Warehouse.default().connect() as engine:
        return engine.query(sql).to_pylist()


@pytest.fixture
def detected(data_dir: Path, tiny_model) -> object:
    save_version(tiny_model, models_dir(get_settings()))
    return run_detection(confidence=0.9)


def test_a_run_scores_everything_and_applies_only_proven_or_confident_corrections(
    detected, consortium: Consortium
) -> None:
    rows = view(
        "SELECT tx_id, bank_id, reference, amount_minor, corrected_amount_minor, correction_id, "
        "anomaly_score, quality_flags FROM transactions"
    )
    assert all(r["anomaly_score"] is not None for r in rows)
    corrected = [r for r in rows if r["correction_id"] is not None]
    assert len(corrected) == detected.corrections_applied > 0
    assert all("corrected" in r["quality_flags"] for r in corrected)
    assert not any("corrected" in r["quality_flags"] for r in rows if r["correction_id"] is None)
    truth = load_truth(consortium.truth).set_index(["bank_id", "reference"])
    right = sum(
        truth.loc[(r["bank_id"], r["reference"]), "true_amount_minor"]
        == r["corrected_amount_minor"]
        for r in corrected
    )
    print(f"{detected.corrections_applied} corrections applied, {right} equal the truth")
    assert right == len(corrected)
    records = corrections(AnomalyStore.default())
    assert {c.correction_id for c in records} == {r["correction_id"] for r in corrected}
    assert all(c.reason and c.confidence >= 0.9 and c.run_id == detected.run_id for c in records)


def test_a_reverted_correction_restores_the_original_and_is_not_reapplied(detected) -> None:
    store = AnomalyStore.default()
    first_segment = store.segments("corrections")[0][1]
    before = first_segment.read_bytes()
    target = corrections(store)[0]
    reverted = revert_correction(target.correction_id, actor="ana", note="checked the paper slip")
    assert reverted.status == "reverted"
    assert reverted.revert_note == "checked the paper slip"
    (row,) = view(
        "SELECT amount_minor, corrected_amount_minor, correction_id, quality_flags "
        f"FROM transactions WHERE tx_id = '{target.tx_id}'"
    )
    assert row["amount_minor"] == target.original_minor
    assert row["corrected_amount_minor"] is None
    assert row["correction_id"] is None
    assert "corrected" not in row["quality_flags"]
    events = store.read("corrections").to_pylist()
    assert [e["event"] for e in events if e["correction_id"] == target.correction_id] == [
        "apply",
        "revert",
    ]
    assert first_segment.read_bytes() == before  # append-only: nothing rewritten
    with pytest.raises(ConflictError):
        revert_correction(target.correction_id, actor="ana")
    again = run_detection(confidence=0.9)
    assert again.corrections_applied == 0  # nothing new, and the reverted one stays reverted
    (row,) = view(f"SELECT correction_id FROM transactions WHERE tx_id = '{target.tx_id}'")
    assert row["correction_id"] is None


def test_only_proposals_reaching_the_bar_are_applied(data_dir: Path) -> None:
    (a, b) = view("SELECT tx_id, account_id, amount_minor FROM transactions LIMIT 2")

    def proposal(r: dict[str, object], confidence: float) -> CorrectionProposal:
        amount = int(r["amount_minor"])  # type: ignore[call-overload]
        return CorrectionProposal(
            tx_id=str(r["tx_id"]),
            account_id=str(r["account_id"]),
            original_minor=amount,
            corrected_minor=amount // 10,
            anomaly_type="typo_x10",
            reason="test",
            source="model",
            model_version="v0001",
            confidence=confidence,
        )

    applied = apply_corrections([proposal(a, 0.95), proposal(b, 0.5)], confidence=0.9, actor="test")
    assert [c.tx_id for c in applied] == [a["tx_id"]]
    with pytest.raises(InputError) as error:
        apply_corrections([], confidence=0.9, actor=" ")
    assert error.value.field == "actor"
    total = view(
        "SELECT sum(amount_minor) AS booked, "
        "sum(coalesce(corrected_amount_minor, amount_minor)) AS effective FROM transactions"
    )[0]
    # scoring's effective amount: the corrected value where a correction is in effect
    assert (
        total["booked"] - total["effective"]
        == int(a["amount_minor"]) - int(a["amount_minor"]) // 10
    )  # type: ignore[call-overload]
    publish_view()  # re-projecting from the log changes nothing
    assert view("SELECT count(correction_id) AS n FROM transactions")[0]["n"] == 1


def slip_proposal(
    r: dict[str, object], divisor: int, *, source: str = "model", confidence: float = 0.995
) -> CorrectionProposal:
    """A decimal-slip proposal for row ``r`` (``tx_id``, ``account_id``, ``amount_minor``)."""
    amount = int(r["amount_minor"])  # type: ignore[call-overload]
    return CorrectionProposal(
        tx_id=str(r["tx_id"]),
        account_id=str(r["account_id"]),
        original_minor=amount,
        corrected_minor=amount // divisor,
        anomaly_type="typo_x10" if divisor == 10 else "typo_x100",
        reason="test",
        source=source,
        model_version="v0001",
        confidence=confidence,
    )


def test_a_revert_or_an_analyst_label_is_not_undone_by_another_proposal(data_dir: Path) -> None:
    (a, b) = view("SELECT tx_id, account_id, amount_minor FROM transactions LIMIT 2")
    (first,) = apply_corrections([slip_proposal(a, 10)], confidence=0.99, actor="run")
    revert_correction(first.correction_id, actor="ana", note="the amount is right")
    # a later run (the model now reading more entries) proposes another value: not applied
    assert apply_corrections([slip_proposal(a, 100)], confidence=0.99, actor="run") == []
    assert apply_corrections([slip_proposal(a, 10)], confidence=0.99, actor="run") == []
    # an analyst's label reopens the entry for that type only
    label_transaction(tx_id=str(a["tx_id"]), label="typo_x100", analyst="ana")
    assert apply_corrections([slip_proposal(a, 10)], confidence=0.99, actor="run") == []
    (second,) = apply_corrections([slip_proposal(a, 100)], confidence=0.99, actor="run")
    assert second.corrected_minor == int(a["amount_minor"]) // 100  # type: ignore[call-overload]
    # an entry the analyst labelled something other than a slip is never corrected
    label_transaction(tx_id=str(b["tx_id"]), label="outlier", analyst="ana")
    for source in ("model", "rule"):
        assert (
            apply_corrections([slip_proposal(b, 10, source=source)], confidence=0.99, actor="run")
            == []
        )


def test_a_later_run_keeps_a_correction_it_no_longer_proposes_and_says_so(
    data_dir: Path, tiny_model
) -> None:
    save_version(tiny_model, models_dir(get_settings()))
    # a correction an earlier run applied, which the current model does not propose
    (row,) = view(
        "SELECT tx_id, account_id, amount_minor FROM transactions "
        "WHERE amount_minor % 100 = 0 AND amount_minor <> 0 ORDER BY tx_id LIMIT 1"
    )
    (earlier,) = apply_corrections([slip_proposal(row, 100)], confidence=0.99, actor="run")
    report = run_detection(confidence=0.9)
    assert report.corrections_unsupported >= 1
    info = AnomalyStore.default().run_info(report.run_id)
    assert earlier.correction_id in info["unsupported_corrections"]
    (shown,) = view(
        f"SELECT correction_id, corrected_amount_minor FROM transactions "
        f"WHERE tx_id = '{row['tx_id']}'"
    )
    assert shown["correction_id"] == earlier.correction_id  # still in effect
    entry = next(
        e for e in account_report(str(row["account_id"])).entries if e["tx_id"] == row["tx_id"]
    )
    assert entry["corrections"][0]["unsupported_by_latest_run"] is True
    # the next run over the same entries backs what the first run applied, not the other one
    again = run_detection(confidence=0.9)
    listed = set(AnomalyStore.default().run_info(again.run_id)["unsupported_corrections"])
    applied = {c.correction_id for c in corrections(AnomalyStore.default())} - {
        earlier.correction_id
    }
    assert applied
    assert not applied & listed
    assert listed == {earlier.correction_id}
    assert again.corrections_unsupported == 1


def test_analysts_confirm_reject_and_label_and_labels_feed_training(
    detected, consortium: Consortium
) -> None:
    store = AnomalyStore.default()
    corrected = corrections(store)
    confirmed, rejected = corrected[0], corrected[1]
    label = confirm_flag(tx_id=confirmed.tx_id, analyst="ana")
    assert label.verdict == "confirm"
    assert label.label in {"typo_x10", "typo_x100"}
    reject_flag(tx_id=rejected.tx_id, analyst="bo", note="the customer confirmed the amount")
    states = {c.correction_id: c for c in corrections(store)}
    assert states[confirmed.correction_id].status == "accepted"
    assert states[rejected.correction_id].status == "reverted"
    unflagged = view(
        "SELECT tx_id FROM transactions WHERE NOT list_contains(quality_flags, "
        "'anomaly_suspected') AND NOT list_contains(quality_flags, 'anomaly_rule') LIMIT 1"
    )[0]["tx_id"]
    with pytest.raises(ConflictError):
        confirm_flag(tx_id=str(unflagged), analyst="ana")
    label_transaction(tx_id=str(unflagged), label="round_burst", analyst="ana")
    with pytest.raises(InputError) as error:
        label_transaction(tx_id=str(unflagged), label="weird", analyst="ana")
    assert error.value.field == "label"
    with pytest.raises(NotFoundError):
        label_transaction(tx_id="no-such-tx", label="normal", analyst="ana")
    labels = current_labels(store).set_index("tx_id")["label"]
    assert labels[rejected.tx_id] == "normal"
    assert labels[str(unflagged)] == "round_burst"
    settings = get_settings()
    with Warehouse.default().connect() as engine:
        features, y, analyst = training_data(
            engine,
            ground_truth=consortium.truth,
            duplicate_rate=0.0,
            seed=0,
            timezone=settings.timezone,
            store=store,
        )
    by_tx = dict(zip(features["tx_id"], y, strict=True))
    assert analyst == 3
    assert by_tx[rejected.tx_id] == "normal"  # the analyst overrides the ground truth
    assert by_tx[str(unflagged)] == "round_burst"
    report = account_report(rejected.account_id)
    entry = next(e for e in report.entries if e["tx_id"] == rejected.tx_id)
    assert entry["corrections"][0]["status"] == "reverted"
    assert entry["labels"][0]["note"] == "the customer confirmed the amount"
