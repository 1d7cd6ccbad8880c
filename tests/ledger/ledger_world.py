"""An installation (service database + warehouse + keys) fed through the ledger's one path in.

``contribute`` does what the ingest pipeline's commit step does with a batch: the embedded bank
node and platform admit it, its rows are staged in the warehouse, and the warehouse publishes
together with the log append.
"""

from __future__ import annotations

import pyarrow as pa

from flowbureau.config import get_settings
from flowbureau.ledger.embedded import open_ledger
from flowbureau.ledger.intake import EmbeddedIngest, LedgerSummary, contribution_parts
from flowbureau.ledger.sample import sample_batch
from flowbureau.storage.warehouse import Warehouse, new_batch_id


def contribute(batches: list[tuple[str, pa.Table, pa.Table]]) -> LedgerSummary:
    """Store ``(bank, records, statements)`` batches as one run of the current installation."""
    settings = get_settings()
    ledger = open_ledger(settings)
    warehouse = Warehouse(settings.warehouse_dir, settings.warehouse)
    with warehouse.writer() as writer:
        sink = EmbeddedIngest(ledger)
        for bank_id, records, statements in batches:
            batch_id = new_batch_id()
            rows, stated = sink.contribute(
                writer, bank_id=bank_id, batch_id=batch_id, records=records, statements=statements
            )
            parts = contribution_parts(bank_id=bank_id, records=rows, statements=stated)
            writer.stage_batch(batch_id, parts)
        return sink.publish(writer)


def small_world() -> list[pa.Table]:
    """Three banks' batches in two runs; returns the records contributed."""
    first = [
        ("BANK01", *sample_batch("BANK01", records=40, accounts=2, seed=1)),
        ("BANK02", *sample_batch("BANK02", records=25, accounts=2, seed=2)),
    ]
    second = [("BANK03", *sample_batch("BANK03", records=30, accounts=3, seed=3))]
    contribute(first)
    contribute(second)
    return [b[1] for b in (*first, *second)]
