"""Cross-bank payment links: candidates, one-to-one matching, the annotation rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from flowbureau.cleaning import links
from flowbureau.storage.duckdb_engine import DuckDBEngine

RUN = "ing-new"
T0 = datetime(2024, 3, 1, 2, 0, tzinfo=UTC)


def tx(
    tx_id: str,
    account: str,
    amount: int,
    day: float,
    *,
    cp_account: str | None = None,
    cp_name: str | None = None,
    run: str = RUN,
) -> dict[str, Any]:
    return {
        "tx_id": tx_id,
        "account_id": account,
        "booked_at": T0 + timedelta(days=day),
        "amount_minor": amount,
        "currency": "CNY",
        "counterparty_account": cp_account,
        "counterparty_name_norm": cp_name,
        "end_to_end_id": None,
        "ingest_id": run,
    }


ACCOUNTS = [("A", "甲公司"), ("B", "乙公司"), ("C", "丙公司")]


def run_links(
    rows: list[dict[str, Any]], linked: tuple[str, ...] = (), *, keep_candidates: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with DuckDBEngine() as engine:
        engine.register(
            "stored_transactions",
            pa.Table.from_pylist(
                rows,
                schema=pa.schema(
                    [
                        ("tx_id", pa.string()),
                        ("account_id", pa.string()),
                        ("booked_at", pa.timestamp("us", tz="UTC")),
                        ("amount_minor", pa.int64()),
                        ("currency", pa.string()),
                        ("counterparty_account", pa.string()),
                        ("counterparty_name_norm", pa.string()),
                        ("end_to_end_id", pa.string()),
                        ("ingest_id", pa.string()),
                    ]
                ),
            ),
        )
        engine.register(
            "accounts",
            pa.table(
                {
                    "account_id": [a for a, _ in ACCOUNTS],
                    "owner_name_norm": [n for _, n in ACCOUNTS],
                }
            ),
        )
        engine.register("payment_links", pa.table({"tx_id": pa.array(linked, pa.string())}))
        for statement in links.candidates_sql(
            ingest_id=RUN, window_days=3, timezone="Asia/Shanghai"
        ):
            engine.execute(statement)
        candidates = engine.query("SELECT * FROM link_cand").to_pylist() if keep_candidates else []
        for _ in range(links.MAX_ROUNDS):
            for statement in links.ROUND_SQL:
                engine.execute(statement)
            if not engine.query("SELECT count(*) FROM link_round").column(0)[0].as_py():
                break
        annotation = engine.query(links.annotation_sql(ingest_id=RUN)).to_pylist()
    return annotation, candidates


def pairs(rows: list[dict[str, Any]], **kwargs: Any) -> set[tuple[str, str]]:
    annotation, _ = run_links(rows, **kwargs)
    return {(r["tx_id"], r["linked_tx_id"]) for r in annotation if r["role"] == "payer"}


def test_a_payment_seen_by_both_banks_is_linked_once_with_both_rows_kept() -> None:
    rows = [tx("d", "A", -500, 0, cp_account="B"), tx("c", "B", 500, 1, cp_account="A")]
    annotation, _ = run_links(rows)
    assert {r["role"]: r["tx_id"] for r in annotation} == {"payer": "d", "payee": "c"}
    assert len({r["payment_link_id"] for r in annotation}) == 1
    assert annotation[0]["matched_by"] == "account"
    assert annotation[0]["match_score"] == 4
    assert annotation[0]["day_gap"] == 1


def test_matching_is_one_to_one_and_prefers_the_closest_date() -> None:
    rows = [
        tx("d1", "A", -100, 0, cp_account="B"),
        tx("d2", "A", -100, 4, cp_account="B"),
        tx("c1", "B", 100, 1, cp_account="A"),
        tx("c2", "B", 100, 5, cp_account="A"),
        tx("c3", "B", 100, 2.9, cp_account="A"),  # within the window of d1 and d2, farther
    ]
    assert pairs(rows) == {("d1", "c1"), ("d2", "c2")}


@pytest.mark.parametrize(
    ("credit", "linked"),
    [
        (tx("c", "B", 100, 4, cp_account="A"), False),  # 4 days: outside the window
        (tx("c", "B", 101, 1, cp_account="A"), False),  # amount differs
        (tx("c", "A", 100, 1, cp_account="A"), False),  # same account
        (tx("c", "B", 100, -2, cp_account="A"), True),  # credit booked first: allowed
        (tx("c", "B", 100, 1, cp_name="甲公司"), True),  # one account match suffices
    ],
)
def test_candidate_conditions(credit: dict[str, Any], linked: bool) -> None:
    rows = [tx("d", "A", -100, 0, cp_account=credit["account_id"] if linked else "B"), credit]
    assert bool(pairs(rows)) is linked


def test_names_must_agree_both_ways_without_accounts() -> None:
    both = [tx("d", "A", -100, 0, cp_name="乙公司"), tx("c", "B", 100, 0, cp_name="甲公司")]
    one = [tx("d", "A", -100, 0, cp_name="乙公司"), tx("c", "B", 100, 0, cp_name="某人")]
    annotation, _ = run_links(both)
    assert annotation[0]["matched_by"] == "name"
    assert pairs(one) == set()


def test_existing_links_and_old_pairs_are_left_alone() -> None:
    rows = [tx("d", "A", -100, 0, cp_account="B"), tx("c", "B", 100, 0, cp_account="A")]
    assert pairs(rows, linked=("c",)) == set()
    old = [tx("d", "A", -100, 0, cp_account="B", run="old"), tx("c", "B", 100, 0, run="old")]
    assert pairs(old) == set()


def test_mutual_best_rounds_equal_the_greedy_matching() -> None:
    rng = random.Random(11)
    rows = []
    for i in range(150):
        payer, payee = rng.sample(["A", "B", "C"], 2)
        amount = rng.choice([100, 200, 300])
        rows.append(tx(f"d{i}", payer, -amount, rng.uniform(0, 20), cp_account=payee))
        rows.append(tx(f"c{i}", payee, amount, rng.uniform(0, 20), cp_account=payer))
    annotation, candidates = run_links(rows, keep_candidates=True)
    assert len(candidates) > 300  # heavily ambiguous
    order = sorted(
        candidates,
        key=lambda c: (c["day_gap"], -c["score"], c["time_gap"], c["payee_tx"], c["payer_tx"]),
    )
    greedy: set[tuple[str, str]] = set()
    used: set[str] = set()
    for c in order:
        if c["payer_tx"] not in used and c["payee_tx"] not in used:
            greedy.add((c["payer_tx"], c["payee_tx"]))
            used |= {c["payer_tx"], c["payee_tx"]}
    got = {(r["tx_id"], r["linked_tx_id"]) for r in annotation if r["role"] == "payer"}
    assert got == greedy
