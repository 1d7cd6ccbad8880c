"""Annotations: side tables keyed by ``tx_id`` that later stages write about stored records.

Rules:
- Stored transactions are immutable. Everything learnt about a record after ingest (its
  cross-bank payment link, its outlier flag, its anomaly score and correction, its resolved
  counterparty) is an *annotation*: a table with a ``tx_id`` column and the columns of its
  :class:`AnnotationSpec` schema, exactly.
- An annotation is written in *scopes* (e.g. one per bank, per ingest run or per model
  version, chosen by the writer). ``WarehouseWriter.replace_annotation(name, scope, rows)``
  replaces one scope atomically; a ``tx_id`` may appear in only one scope of an annotation
  and must name a stored transaction.
- The ``transactions`` view left-joins every annotation that supplies a column of
  :data:`~flowbureau.schema.TRANSACTION_SCHEMA` (``view_columns``); an annotation with a
  ``quality_flags`` column has those flags appended to the record's own. Every annotation is
  also a view of its own name with all its columns.

Adding an annotation: define its schema (``tx_id`` first), add an :class:`AnnotationSpec` to
:data:`ANNOTATIONS`, and, if the ``transactions`` view should show one of its columns, add
that column to ``TRANSACTION_SCHEMA`` and name it in ``view_columns``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from flowbureau.schema import (
    OUTLIER_SCHEMA,
    PAYMENT_LINK_SCHEMA,
    STORED_TRANSACTION_SCHEMA,
    TRANSACTION_SCHEMA,
)

__all__ = ["ANNOTATIONS", "AnnotationSpec", "view_column_sources"]


@dataclass(frozen=True, slots=True)
class AnnotationSpec:
    """One annotation: its name (also its view's), exact schema and the view columns it fills."""

    name: str
    schema: pa.Schema
    view_columns: tuple[str, ...] = ()

    @property
    def adds_flags(self) -> bool:
        """True when its ``quality_flags`` are appended to the record's flags in the view."""
        return "quality_flags" in self.schema.names


ANNOTATIONS: dict[str, AnnotationSpec] = {
    spec.name: spec
    for spec in (
        AnnotationSpec("payment_links", PAYMENT_LINK_SCHEMA, ("payment_link_id",)),
        AnnotationSpec("outliers", OUTLIER_SCHEMA),
        AnnotationSpec(
            "counterparties",
            pa.schema(
                [
                    pa.field("tx_id", pa.string(), nullable=False),
                    pa.field("counterparty_id", pa.string(), nullable=False),
                ]
            ),
            ("counterparty_id",),
        ),
        AnnotationSpec(
            "anomaly_scores",
            pa.schema(
                [
                    pa.field("tx_id", pa.string(), nullable=False),
                    pa.field("anomaly_score", pa.float64(), nullable=False),
                ]
            ),
            ("anomaly_score",),
        ),
        AnnotationSpec(
            "corrections",
            pa.schema(
                [
                    pa.field("tx_id", pa.string(), nullable=False),
                    pa.field("corrected_amount_minor", pa.int64(), nullable=False),
                    pa.field("correction_id", pa.string(), nullable=False),
                ]
            ),
            ("corrected_amount_minor", "correction_id"),
        ),
        AnnotationSpec(
            "anomaly_flags",
            pa.schema(
                [
                    pa.field("tx_id", pa.string(), nullable=False),
                    pa.field("anomaly_type", pa.string()),
                    pa.field("type_probability", pa.float64()),
                    pa.field("predicted_amount_minor", pa.int64()),
                    pa.field("rules", pa.list_(pa.string()), nullable=False),
                    pa.field("model_version", pa.string()),
                    pa.field("run_id", pa.string(), nullable=False),
                    pa.field("quality_flags", pa.list_(pa.string()), nullable=False),
                ]
            ),
        ),
    )
}
"""Every annotation the warehouse knows, by name."""


def view_column_sources() -> dict[str, str]:
    """Map each annotated column of ``TRANSACTION_SCHEMA`` to the annotation supplying it.

    Raises ``ValueError`` if a column has no supplier, two suppliers, or a supplier whose
    type differs from the schema's: the ``transactions`` view could not be built.
    """
    stored = set(STORED_TRANSACTION_SCHEMA.names)
    sources: dict[str, str] = {}
    for spec in ANNOTATIONS.values():
        if spec.schema.names[0] != "tx_id":
            raise ValueError(f"annotation {spec.name!r}: first column must be tx_id")
        for column in spec.view_columns:
            if column in sources:
                raise ValueError(f"column {column!r} supplied by {sources[column]} and {spec.name}")
            wanted = TRANSACTION_SCHEMA.field(column).type
            if spec.schema.field(column).type != wanted:
                raise ValueError(f"annotation {spec.name!r}: {column} must be {wanted}")
            sources[column] = spec.name
    missing = [n for n in TRANSACTION_SCHEMA.names if n not in stored and n not in sources]
    if missing:
        raise ValueError(f"no annotation supplies transactions column(s) {missing}")
    return sources
