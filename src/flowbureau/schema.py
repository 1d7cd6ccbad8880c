"""Canonical schemas, money and code types shared by every stage.

Rules (see ARCHITECTURE.md, "Canonical transaction"):
- Money is never a float. Amounts are ``int`` minor units (``amount_minor``), signed: positive
  is an inflow to the account, negative an outflow. The currency's ISO 4217 exponent says how
  many minor units make a major unit; an amount finer than that is an input error, not rounded.
- Timestamps are time-zone aware and stored in UTC; dates without a time are ``date``.
- One booked entry as one bank saw it is one row. The same payment seen by the payer's and the
  payee's bank is two rows linked by ``payment_link_id``; neither is deleted.
- Rows written at ingest are immutable. Later stages (payment links, anomaly scores and
  corrections, resolved counterparties, extra flags) live in side tables that the
  ``transactions`` view joins in; the view has :data:`TRANSACTION_SCHEMA`.
"""

from __future__ import annotations

import enum
import functools
import re
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from importlib import resources

import pyarrow as pa
from stdnum.cn import uscc as _uscc
from stdnum.exceptions import ValidationError as _StdnumValidationError

from flowbureau.errors import FlowbureauError

__all__ = [
    "ACCOUNT_SCHEMA",
    "CURRENCY_EXPONENTS",
    "DUPLICATE_SCHEMA",
    "OUTLIER_SCHEMA",
    "PAYMENT_LINK_SCHEMA",
    "QUARANTINE_SCHEMA",
    "RAW_ENTRY_SCHEMA",
    "SOURCE_FILE_SCHEMA",
    "STATEMENT_SCHEMA",
    "STORED_TRANSACTION_SCHEMA",
    "TRANSACTION_SCHEMA",
    "InvalidCodeError",
    "MoneyError",
    "TxType",
    "currency_exponent",
    "format_minor",
    "is_valid_credit_code",
    "parse_amount",
    "to_minor",
    "validate_credit_code",
]


class MoneyError(FlowbureauError, ValueError):
    """An amount cannot be represented exactly in its currency's minor units."""


class InvalidCodeError(FlowbureauError, ValueError):
    """A code (currency, unified social credit code, ...) fails validation."""


def _load_currency_exponents() -> dict[str, int]:
    text = resources.files("flowbureau.data").joinpath("iso4217.csv").read_text("utf-8")
    table: dict[str, int] = {}
    for row in text.splitlines()[1:]:
        if row and not row.startswith("#"):
            code, exponent = row.split(",")[:2]
            table[code] = int(exponent)
    return table


CURRENCY_EXPONENTS: dict[str, int] = _load_currency_exponents()
"""ISO 4217 active currency codes and their minor-unit exponents (``data/iso4217.csv``)."""


def currency_exponent(currency: str) -> int:
    """Return the ISO 4217 minor-unit exponent of ``currency`` (e.g. 2 for CNY, 0 for JPY)."""
    try:
        return CURRENCY_EXPONENTS[currency.upper()]
    except KeyError:
        raise InvalidCodeError(f"unknown ISO 4217 currency code {currency!r}") from None


_AMOUNT_CLEAN = re.compile(r"[\s,'_\u00a0]")


def parse_amount(text: str, *, decimal_comma: bool = False) -> Decimal:
    """Parse a printed amount into a ``Decimal``.

    Accepts thousands separators (``1,234.56``), a leading sign, full-width digits and, with
    ``decimal_comma``, the SWIFT style ``1234,56``. Raises :class:`MoneyError` otherwise.
    """
    raw = text.strip().translate(_FULLWIDTH_DIGITS)
    if decimal_comma:
        raw = raw.replace(".", "").replace(",", ".")
    cleaned = _AMOUNT_CLEAN.sub("", raw)
    if cleaned.endswith("-"):  # trailing minus, as some bank exports print debits
        cleaned = "-" + cleaned[:-1]
    if cleaned.startswith("(") and cleaned.endswith(")"):
        cleaned = "-" + cleaned[1:-1]
    if cleaned.endswith("."):
        cleaned += "0"
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise MoneyError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise MoneyError(f"not a finite amount: {text!r}")
    return value


_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９．，－＋", "0123456789.,-+")


def to_minor(amount: Decimal | int | str, currency: str) -> int:
    """Convert a major-unit amount to integer minor units of ``currency``, exactly.

    Raises :class:`MoneyError` when the amount has more decimals than the currency allows:
    silently rounding money would change what the bank reported.
    """
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    exponent = currency_exponent(currency)
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value(rounding=ROUND_DOWN):
        raise MoneyError(f"amount {value} has more than {exponent} decimals allowed for {currency}")
    return int(scaled)


def format_minor(amount_minor: int, currency: str) -> str:
    """Render minor units as a plain decimal string in major units (``12345, CNY -> 123.45``)."""
    exponent = currency_exponent(currency)
    return str(Decimal(amount_minor).scaleb(-exponent)) if exponent else str(amount_minor)


def is_valid_credit_code(code: str) -> bool:
    """True when ``code`` is an 18-character unified social credit code with a valid check digit."""
    try:
        _uscc.validate(code)
    except _StdnumValidationError:
        return False
    return True


@functools.lru_cache(maxsize=1 << 16)  # every open-API read validates its path's code
def validate_credit_code(code: str) -> str:
    """Return the compact form of a unified social credit code (GB 32100-2015), or raise."""
    try:
        return str(_uscc.validate(code))
    except _StdnumValidationError as exc:
        raise InvalidCodeError(f"invalid unified social credit code {code!r}: {exc}") from None


class TxType(enum.StrEnum):
    """Standard transaction categories (``tx_type``); rules in ``cleaning`` assign them."""

    SALES_RECEIPT = "sales_receipt"
    SUPPLIER_PAYMENT = "supplier_payment"
    PAYROLL = "payroll"
    TAX = "tax"
    UTILITIES = "utilities"
    RENT = "rent"
    LOAN_DISBURSEMENT = "loan_disbursement"
    LOAN_REPAYMENT = "loan_repayment"
    ONLINE_LENDING = "online_lending"
    INTEREST = "interest"
    FEES = "fees"
    CASH = "cash"
    INTERNAL_TRANSFER = "internal_transfer"
    OTHER = "other"


UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

RAW_ENTRY_SCHEMA = pa.schema(
    [
        pa.field("account_number", pa.string()),
        pa.field("booked_local", pa.timestamp("us"), nullable=False),
        pa.field("booked_offset_minutes", pa.int16()),
        pa.field("value_date", pa.date32()),
        pa.field("amount_minor", pa.int64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("balance_after_minor", pa.int64()),
        pa.field("counterparty_name", pa.string()),
        pa.field("counterparty_account", pa.string()),
        pa.field("counterparty_bank", pa.string()),
        pa.field("description", pa.string()),
        pa.field("reference", pa.string()),
        pa.field("end_to_end_id", pa.string()),
        pa.field("tx_code", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("location", pa.string(), nullable=False),
        pa.field("raw_text", pa.string()),
    ]
)
"""What a statement reader emits per entry, before the pipeline assigns ids.

``booked_local`` is the booking time as printed (naive); ``booked_offset_minutes`` is its UTC
offset when the source states one, else null and the bank's configured time zone applies.
``account_number`` is the clear number (the pipeline pseudonymises it). ``status`` is ``BOOK``
for booked entries; anything else (``PDNG``, ``INFO``) is reported, never stored.
``location`` is a 1-based line number (text formats) or an XML path (camt), ``raw_text`` the
source text of the entry.
"""

STORED_TRANSACTION_SCHEMA = pa.schema(
    [
        pa.field("tx_id", pa.string(), nullable=False),
        pa.field("bank_id", pa.string(), nullable=False),
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("enterprise_id", pa.string()),
        pa.field("statement_id", pa.string(), nullable=False),
        pa.field("booked_at", UTC_TIMESTAMP, nullable=False),
        pa.field("value_date", pa.date32()),
        pa.field("amount_minor", pa.int64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("balance_after_minor", pa.int64()),
        pa.field("counterparty_name", pa.string()),
        pa.field("counterparty_name_norm", pa.string()),
        pa.field("counterparty_account", pa.string()),
        pa.field("counterparty_bank", pa.string()),
        pa.field("tx_type", pa.string(), nullable=False),
        pa.field("tx_code", pa.string()),
        pa.field("reference", pa.string()),
        pa.field("end_to_end_id", pa.string()),
        pa.field("description_raw", pa.string()),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_location", pa.string(), nullable=False),
        pa.field("file_sha256", pa.string(), nullable=False),
        pa.field("ingest_id", pa.string(), nullable=False),
        pa.field("quality_flags", pa.list_(pa.string()), nullable=False),
    ]
)
"""Columns written once, at ingest, to the Parquet warehouse (immutable).

``account_id`` and ``counterparty_account`` are keyed-HMAC pseudonyms of the account numbers
(the same key for both, so a payer's ``counterparty_account`` equals the payee's
``account_id``); the clear numbers are only in the encrypted vault.
"""

TRANSACTION_SCHEMA = pa.schema(
    [
        *STORED_TRANSACTION_SCHEMA,
        pa.field("counterparty_id", pa.string()),
        pa.field("payment_link_id", pa.string()),
        pa.field("anomaly_score", pa.float64()),
        pa.field("corrected_amount_minor", pa.int64()),
        pa.field("correction_id", pa.string()),
    ]
)
"""The canonical transaction as the ``transactions`` view exposes it: stored columns plus the
annotations later stages keep in side tables (resolved counterparty, cross-bank payment link,
anomaly score, active correction)."""

STATEMENT_SCHEMA = pa.schema(
    [
        pa.field("statement_id", pa.string(), nullable=False),
        pa.field("bank_id", pa.string(), nullable=False),
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("enterprise_id", pa.string()),
        pa.field("owner_name", pa.string()),
        pa.field("currency", pa.string()),
        pa.field("opening_balance_minor", pa.int64()),
        pa.field("closing_balance_minor", pa.int64()),
        pa.field("period_start", pa.date32()),
        pa.field("period_end", pa.date32()),
        pa.field("entry_count", pa.int64(), nullable=False),
        pa.field("pending_count", pa.int64(), nullable=False),
        pa.field("entries_sum_minor", pa.int64(), nullable=False),
        pa.field("reconciled", pa.bool_()),
        pa.field("reconciliation_diff_minor", pa.int64()),
        pa.field("format", pa.string(), nullable=False),
        pa.field("profile", pa.string()),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_location", pa.string(), nullable=False),
        pa.field("file_sha256", pa.string(), nullable=False),
        pa.field("ingest_id", pa.string(), nullable=False),
        pa.field("ingested_at", UTC_TIMESTAMP, nullable=False),
    ]
)
"""One row per statement read. ``reconciled`` is null when the file states no balances;
``reconciliation_diff_minor`` = closing - (opening + sum of booked entries)."""

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("bank_id", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_location", pa.string(), nullable=False),
        pa.field("file_sha256", pa.string(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw_text", pa.string()),
        pa.field("ingest_id", pa.string(), nullable=False),
        pa.field("quarantined_at", UTC_TIMESTAMP, nullable=False),
    ]
)
"""Records that could not be admitted (missing required fields, unrepresentable amounts),
with the reason and enough lineage to find and fix them at the source."""

ACCOUNT_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("bank_id", pa.string(), nullable=False),
        pa.field("enterprise_id", pa.string()),
        pa.field("owner_name", pa.string()),
        pa.field("owner_name_norm", pa.string()),
        pa.field("currency", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_location", pa.string(), nullable=False),
        pa.field("file_sha256", pa.string(), nullable=False),
        pa.field("ingest_id", pa.string(), nullable=False),
        pa.field("recorded_at", UTC_TIMESTAMP, nullable=False),
    ]
)
"""What is known about an account (pseudonymous ``account_id``): its bank, owner enterprise,
name and currency. ``source`` is ``register`` (a bank's account register, authoritative)
or ``statement`` (facts printed on a statement). The ``accounts`` view keeps the latest row per
account, register rows first."""

SOURCE_FILE_SCHEMA = pa.schema(
    [
        pa.field("file_sha256", pa.string(), nullable=False),
        pa.field("bank_id", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("format", pa.string()),
        pa.field("profile", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("statements", pa.int64(), nullable=False),
        pa.field("records", pa.int64(), nullable=False),
        pa.field("new_records", pa.int64(), nullable=False),
        pa.field("duplicates", pa.int64(), nullable=False),
        pa.field("quarantined", pa.int64(), nullable=False),
        pa.field("pending", pa.int64(), nullable=False),
        pa.field("ingest_id", pa.string(), nullable=False),
        pa.field("ingested_at", UTC_TIMESTAMP, nullable=False),
    ]
)
"""One row per file an ingest run met (the ``sources`` view). ``status`` is ``ingested`` or
``duplicate_file`` (its SHA-256 was already ingested; nothing of it was stored again).
``records`` = ``new_records`` + ``duplicates`` + ``quarantined`` (booked entries only)."""

DUPLICATE_SCHEMA = pa.schema(
    [
        pa.field("tx_id", pa.string(), nullable=False),
        pa.field("bank_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_location", pa.string(), nullable=False),
        pa.field("file_sha256", pa.string(), nullable=False),
        pa.field("ingest_id", pa.string(), nullable=False),
    ]
)
"""Entries not stored because an entry with the same ``tx_id`` was already stored (``kind``
``existing``: overlapping statement periods) or came earlier in the same batch (``in_batch``).
Whole duplicate files are counted in ``sources`` instead."""

PAYMENT_LINK_SCHEMA = pa.schema(
    [
        pa.field("tx_id", pa.string(), nullable=False),
        pa.field("payment_link_id", pa.string(), nullable=False),
        pa.field("linked_tx_id", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("matched_by", pa.string(), nullable=False),
        pa.field("match_score", pa.int32(), nullable=False),
        pa.field("day_gap", pa.int32(), nullable=False),
        pa.field("ingest_id", pa.string(), nullable=False),
    ]
)
"""The ``payment_links`` annotation: two rows per link, one for the payer's debit
(``role`` = ``payer``) and one for the payee's credit (``payee``), each naming the other."""

OUTLIER_SCHEMA = pa.schema(
    [
        pa.field("tx_id", pa.string(), nullable=False),
        pa.field("robust_z", pa.float64(), nullable=False),
        pa.field("quality_flags", pa.list_(pa.string()), nullable=False),
    ]
)
"""The ``outliers`` annotation: entries whose log-amount is far from their account's usual
amounts in the same direction; ``quality_flags`` (``["outlier"]``) joins the view's flags."""
