"""Quality flags: what a cleaning step found or did to one stored record.

Rules:
- A flag never removes or changes a record; it is a word in the record's ``quality_flags``.
  Flags set at ingest are stored with the record; flags found later (``outlier``) come from an
  annotation and are appended in the ``transactions`` view.
- Records that cannot be stored at all are not flagged but quarantined, with a reason.
- The table of flags in docs/pipeline.md is this enum, value for value.
"""

from __future__ import annotations

import enum

__all__ = ["QualityFlag"]


class QualityFlag(enum.StrEnum):
    """Values of ``quality_flags``."""

    ENTERPRISE_UNKNOWN = "enterprise_unknown"
    """No account register entry and no valid credit code on the statement: ``enterprise_id``
    is null."""
    TIMEZONE_ASSUMED = "timezone_assumed"
    """The source gave no UTC offset; the booking time was read in ``settings.timezone``."""
    RETURNED_PAYMENT = "returned_payment"
    """A returned, refused or reversed payment (退票, 退汇, 冲正, 退回, RETURN, R-codes)."""
    BALANCE_BREAK = "balance_break"
    """The running balance after this entry is not the previous balance plus this amount."""
    STATEMENT_UNRECONCILED = "statement_unreconciled"
    """The entry's statement does not reconcile: closing != opening + sum of entries."""
    OUTLIER = "outlier"
    """The amount is far from the account's usual amounts in the same direction (annotation)."""
