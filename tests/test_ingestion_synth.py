"""The pipeline measured against the synthetic consortium's ground truth.

One small consortium (5 banks in their native formats: GB18030 CSV, MT940, camt.053) is
generated and ingested once for the module; each test joins the warehouse with
``ground_truth/`` on (bank_id, reference) and prints the figure it asserts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowbureau.config import get_settings
from flowbureau.ingestion import IngestReport, ingest
from flowbureau.storage.engine import Engine
from flowbureau.storage.warehouse import Warehouse
from flowbureau.synth import generate

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Ingested:
    """The generated consortium, its truth directory and the warehouse it was ingested into."""

    truth: Path
    warehouse: Warehouse
    report: IngestReport


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    root = tmp_path_factory.mktemp("synth")
    summary = generate(root / "consortium", enterprises=30, banks=5, months=4, seed=11)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLOWBUREAU_ENV", "test")
        patch.setenv("FLOWBUREAU_DATA_DIR", str(root / "data"))
        get_settings.cache_clear()
        report = ingest([summary.banks_dir])
        warehouse = Warehouse.default()
    get_settings.cache_clear()
    return Ingested(summary.ground_truth_dir, warehouse, report)


def connect(ingested: Ingested) -> Engine:
    engine = ingested.warehouse.connect()
    for name in ("transactions", "payment_links", "file_pairs", "problems"):
        engine.create_view(
            f"truth_{name}",
            f"SELECT * FROM read_parquet('{ingested.truth / (name + '.parquet')}')",
        )
    return engine


def one(engine: Engine, sql: str) -> dict[str, Any]:
    row: dict[str, Any] = engine.query(sql).to_pylist()[0]
    return row


def test_every_true_entry_is_stored_once_or_quarantined(ingested: Ingested) -> None:
    with connect(ingested) as engine:
        counts = one(
            engine,
            """
            SELECT (SELECT count(*) FROM truth_transactions) AS truth,
                   (SELECT count(*) FROM transactions) AS stored,
                   (SELECT count(*) FROM (SELECT bank_id, reference FROM transactions
                                          GROUP BY ALL HAVING count(*) > 1)) AS stored_twice,
                   (SELECT count(*) FROM transactions s ANTI JOIN truth_transactions t
                      ON t.bank_id = s.bank_id AND t.reference = s.reference) AS invented,
                   (SELECT count(*) FROM truth_transactions t ANTI JOIN transactions s
                      ON t.bank_id = s.bank_id AND t.reference = s.reference
                      WHERE NOT EXISTS (SELECT 1 FROM quarantine q
                                        WHERE contains(q.raw_text, t.reference))) AS lost
            """,
        )
    print(counts)
    assert counts["stored_twice"] == 0
    assert counts["invented"] == 0
    assert counts["lost"] == 0


def test_quarantine_holds_exactly_the_entries_with_missing_dates(ingested: Ingested) -> None:
    # matched on the entry's bank reference, which its raw text carries: an entry of an
    # overlapping re-export is quarantined once per file it appears in
    with connect(ingested) as engine:
        counts = one(
            engine,
            """
            WITH t AS (SELECT reference FROM truth_problems WHERE type = 'missing_date')
            SELECT (SELECT count(*) FROM t) AS planted,
                   (SELECT count(*) FROM quarantine) AS quarantined,
                   (SELECT count(*) FROM quarantine q
                      WHERE EXISTS (SELECT 1 FROM t WHERE contains(q.raw_text, t.reference)))
                     AS explained,
                   (SELECT count(*) FROM t
                      WHERE EXISTS (SELECT 1 FROM quarantine q
                                    WHERE contains(q.raw_text, t.reference))) AS caught
            """,
        )
    print(counts)
    assert counts["planted"] > 0
    assert counts["caught"] == counts["planted"]
    assert counts["explained"] == counts["quarantined"]


def test_duplicate_files_and_overlapping_exports_are_found(ingested: Ingested) -> None:
    with connect(ingested) as engine:
        counts = one(
            engine,
            """
            SELECT (SELECT sum(shared_entries) FROM truth_file_pairs) AS expected,
                   (SELECT count(*) FROM (SELECT bank_id, reference FROM transactions
                                          GROUP BY ALL HAVING count(*) > 1)) AS missed,
                   (SELECT count(*) FROM truth_transactions t
                      ANTI JOIN transactions s ON t.bank_id = s.bank_id
                                              AND t.reference = s.reference
                      WHERE coalesce(t.problem, '') <> 'missing_date') AS wrongly_dropped
            """,
        )
    detected = ingested.report.duplicates
    precision = (detected - counts["wrongly_dropped"]) / detected
    recall = (counts["expected"] - counts["missed"]) / counts["expected"]
    print(
        f"duplicates: expected {counts['expected']}, detected {detected}, "
        f"precision {precision:.3f}, recall {recall:.3f}"
    )
    assert counts["expected"] > 0
    assert precision >= 0.95
    assert recall >= 0.95


def test_cross_bank_payment_links(ingested: Ingested) -> None:
    with connect(ingested) as engine:
        counts = one(
            engine,
            """
            WITH ours AS (
                SELECT p.bank_id AS pb, p.reference AS pr, c.bank_id AS cb, c.reference AS cr
                FROM payment_links l
                JOIN transactions p ON p.tx_id = l.tx_id
                JOIN transactions c ON c.tx_id = l.linked_tx_id
                WHERE l.role = 'payer'
            ),
            truth AS (SELECT * FROM truth_payment_links
                      WHERE payer_amount_minor = payee_amount_minor)
            SELECT (SELECT count(*) FROM ours) AS ours,
                   (SELECT count(*) FROM truth) AS truth,
                   (SELECT count(*) FROM truth_payment_links) AS truth_all,
                   (SELECT count(*) FROM ours o JOIN truth t
                      ON o.pb = t.payer_bank_id AND o.pr = t.payer_reference
                     AND o.cb = t.payee_bank_id AND o.cr = t.payee_reference) AS correct
            """,
        )
    precision = counts["correct"] / counts["ours"]
    recall = counts["correct"] / counts["truth"]
    print(
        f"payment links: ours {counts['ours']}, true same-currency {counts['truth']} "
        f"(all {counts['truth_all']}), precision {precision:.3f}, recall {recall:.3f}, "
        f"recall incl. FX conversions {counts['correct'] / counts['truth_all']:.3f}"
    )
    assert counts["ours"] == ingested.report.payment_links
    assert precision >= 0.95
    assert recall >= 0.95


def test_categories_match_the_truth(ingested: Ingested) -> None:
    with connect(ingested) as engine:
        rows = engine.query(
            """
            SELECT t.tx_type AS truth, s.tx_type AS got, count(*) AS n
            FROM transactions s JOIN truth_transactions t
              ON t.bank_id = s.bank_id AND t.reference = s.reference
            GROUP BY ALL
            """
        ).to_pylist()
    total = sum(r["n"] for r in rows)
    right = sum(r["n"] for r in rows if r["truth"] == r["got"])
    print(f"categorisation accuracy {right / total:.4f} over {total} entries")
    print("confusions:", [r for r in rows if r["truth"] != r["got"]])
    assert right / total >= 0.95


def test_enterprises_come_from_the_registers(ingested: Ingested) -> None:
    with connect(ingested) as engine:
        counts = one(
            engine,
            """
            SELECT count(*) AS n,
                   count(*) FILTER (WHERE s.enterprise_id = t.enterprise_id) AS same,
                   count(*) FILTER (WHERE list_contains(s.quality_flags, 'enterprise_unknown'))
                     AS unknown
            FROM transactions s JOIN truth_transactions t
              ON t.bank_id = s.bank_id AND t.reference = s.reference
            """,
        )
    print(counts)
    assert counts["same"] == counts["n"]
    assert counts["unknown"] == 0
