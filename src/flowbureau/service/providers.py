"""Where the service gets enterprises' scores, reports and transaction summaries from.

Rules:
- The service depends on two narrow protocols, injected per request
  (:mod:`flowbureau.service.deps`): :class:`EnterpriseDataProvider` answers the open API's
  reads and :class:`Evaluator` evaluates applications. The scoring and warehouse engines
  implement them; routes never reach into those engines.
- A provider answers ``None`` when it has nothing (no model yet, no transactions yet); the API
  then says so with a problem response. Nothing here ever invents a score.
- Callers have already checked role policy and consent
  (:func:`flowbureau.service.consent.require_access`); providers do no authorisation.
- :class:`ServiceDatabaseProvider` works with the service database alone: it knows enterprises
  from their profiles, has no scores and no transactions. :class:`WarehouseProvider` (the
  default) adds transaction summaries from the warehouse, whose ``enterprise_id`` is the
  unified social credit code; it has no scores until the scoring engine plugs in.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from flowbureau.errors import NotFoundError
from flowbureau.schema import format_minor
from flowbureau.service.models import Enterprise

if TYPE_CHECKING:
    from flowbureau.storage.warehouse import Warehouse

__all__ = [
    "CurrencyTotals",
    "EnterpriseDataProvider",
    "EnterpriseSummary",
    "Evaluator",
    "MonthlyFlow",
    "NotYetAvailableError",
    "ProviderEvaluator",
    "PublicRecordView",
    "ReasonView",
    "ReportView",
    "ScoreView",
    "ServiceDatabaseProvider",
    "SimilarCaseView",
    "TransactionsSummaryView",
    "WarehouseProvider",
]


PUBLIC_RECORD_TYPES = ("penalty", "inspection", "online_lending", "judgment")
"""Record types a report lists as public records."""


class NotYetAvailableError(NotFoundError):
    """The enterprise's data of this kind has not been produced yet (no score, no flows)."""


class EnterpriseSummary(BaseModel):
    """An enterprise as a search result: identity only."""

    model_config = ConfigDict(frozen=True)

    credit_code: str
    name: str | None
    industry_code: str | None


class ReasonView(BaseModel):
    """One reason code behind a score, most influential first."""

    model_config = ConfigDict(frozen=True)

    code: str
    description: str
    points: int | None = Field(default=None, description="Scorecard points this reason cost.")


class SimilarCaseView(BaseModel):
    """A past evaluation similar to this one, with what became of that enterprise."""

    model_config = ConfigDict(frozen=True)

    case_id: str
    similarity: float = Field(ge=0, le=1)
    outcome: int | None = Field(description="1 defaulted, 0 performed, null not known yet.")
    evaluated_at: datetime
    outcome_at: datetime | None = None


class ScoreView(BaseModel):
    """An enterprise's credit score as of a date, with its reasons and the model that made it."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    credit_code: str
    as_of: date
    pd: float = Field(ge=0, le=1, description="Calibrated probability of default (12 months).")
    score: int
    grade: str
    reasons: list[ReasonView]
    model_version: str
    computed_at: datetime
    similar_cases: list[SimilarCaseView] = Field(
        default_factory=list, description="Most similar past cases (case-based reasoning)."
    )
    case_pd: float | None = Field(
        default=None, ge=0, le=1, description="PD predicted from the similar cases."
    )
    uses_corrected_values: bool | None = Field(
        default=None,
        description="Whether the inputs used anomaly-corrected amounts (null: not stated).",
    )
    corrected_entries: int | None = Field(
        default=None, ge=0, description="Entries whose corrected amount the inputs used."
    )
    sources: list[str] = Field(
        default_factory=list, description="Data sources the evaluation used."
    )


class CurrencyTotals(BaseModel):
    """Booked entries in one currency, in its minor units."""

    model_config = ConfigDict(frozen=True)

    currency: str
    transactions: int
    inflow_minor: int = Field(ge=0, description="Sum of credits.")
    outflow_minor: int = Field(ge=0, description="Sum of debits, as a positive magnitude.")
    net_minor: int = Field(description="inflow_minor - outflow_minor.")


class MonthlyFlow(BaseModel):
    """One calendar month of an enterprise's booked flows in one currency."""

    model_config = ConfigDict(frozen=True)

    month: date = Field(description="First day of the month (consortium time zone).")
    currency: str
    inflow_minor: int = Field(ge=0)
    outflow_minor: int = Field(ge=0)
    net_minor: int
    closing_balance_minor: int | None = Field(
        description="Sum over accounts of the last reported balance of the month "
        "(null when a bank reported no balances)."
    )


class TransactionsSummaryView(BaseModel):
    """An enterprise's booked transactions up to a date, as the contributing banks reported them."""

    model_config = ConfigDict(frozen=True)

    credit_code: str
    as_of: date
    first_booked_at: datetime
    last_booked_at: datetime
    transactions: int
    banks: int = Field(description="Contributing banks the transactions come from.")
    accounts: int
    totals: list[CurrencyTotals] = Field(description="One entry per currency.")
    monthly: list[MonthlyFlow] = Field(
        default_factory=list,
        description="The 12 calendar months up to the latest entry, oldest first.",
    )


class PublicRecordView(BaseModel):
    """A public record attached to the enterprise by identity resolution."""

    model_config = ConfigDict(frozen=True)

    record_type: str = Field(description="penalty, inspection, online_lending, judgment, ...")
    record_date: date | None
    source: str
    details: dict[str, str | int | float | None]
    attribution_probability: float = Field(ge=0, le=1)
    stale: bool = Field(description="Older than the freshness policy allows; being updated.")


class ReportView(BaseModel):
    """A credit report as JSON: identity, registration facts, score and transaction summary."""

    model_config = ConfigDict(frozen=True)

    credit_code: str
    name: str | None
    industry_code: str | None
    registration_date: date | None
    registered_capital: str | None = Field(description="Decimal amount in major units.")
    registered_capital_currency: str | None
    legal_representative: str | None
    as_of: date
    score: ScoreView | None = Field(description="null while no model has scored it.")
    transactions: TransactionsSummaryView | None = Field(
        description="null while no bank has contributed its statements."
    )
    public_records: list[PublicRecordView] = Field(
        default_factory=list, description="Public records attached to the enterprise."
    )


class EnterpriseDataProvider(Protocol):
    """Reads of enterprise data for the open API (already authorised by the caller)."""

    def search(self, q: str, *, within: Collection[str], limit: int) -> Sequence[EnterpriseSummary]:
        """Enterprises whose name or credit code contains ``q``, among ``within`` codes."""

    def score(self, credit_code: str, as_of: date) -> ScoreView | None:
        """The score as of ``as_of``, or ``None`` when none has been computed."""

    def report(self, credit_code: str, as_of: date) -> ReportView | None:
        """The report as of ``as_of``, or ``None`` when the enterprise is unknown."""

    def transactions_summary(self, credit_code: str, as_of: date) -> TransactionsSummaryView | None:
        """Transaction totals up to ``as_of``, or ``None`` when there are none."""


class Evaluator(Protocol):
    """Evaluates a credit application: a score as of a date, or ``None`` when it cannot yet."""

    def evaluate(self, *, credit_code: str, as_of: date) -> ScoreView | None:
        """Score the enterprise, or ``None`` (the application then stays submitted)."""


class ServiceDatabaseProvider:
    """Answers from the service database only: enterprises' profiles; no scores, no flows."""

    def __init__(self, db: Session) -> None:
        self._db = db

    def search(self, q: str, *, within: Collection[str], limit: int) -> Sequence[EnterpriseSummary]:
        """Profiles whose name or credit code contains ``q`` (case-insensitive)."""
        if not within:
            return []
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = self._db.execute(
            sa.select(Enterprise)
            .where(
                Enterprise.credit_code.in_(list(within)),
                sa.or_(
                    Enterprise.name.ilike(pattern, escape="\\"),
                    Enterprise.credit_code.ilike(pattern, escape="\\"),
                ),
            )
            .order_by(Enterprise.name, Enterprise.credit_code)
            .limit(limit)
        ).scalars()
        return [
            EnterpriseSummary(
                credit_code=str(e.credit_code), name=e.name, industry_code=e.industry_code
            )
            for e in rows
        ]

    def score(self, credit_code: str, as_of: date) -> ScoreView | None:
        """No scoring engine is connected to this provider: always ``None``."""
        return None

    def transactions_summary(self, credit_code: str, as_of: date) -> TransactionsSummaryView | None:
        """No warehouse is connected to this provider: always ``None``."""
        return None

    def report(self, credit_code: str, as_of: date) -> ReportView | None:
        """The registration facts from the profile, with score and flows when known."""
        enterprise = self._db.execute(
            sa.select(Enterprise).where(Enterprise.credit_code == credit_code)
        ).scalar_one_or_none()
        if enterprise is None:
            return None
        capital = enterprise.registered_capital_minor
        currency = enterprise.registered_capital_currency
        return ReportView(
            credit_code=credit_code,
            name=enterprise.name,
            industry_code=enterprise.industry_code,
            registration_date=enterprise.registration_date,
            registered_capital=None
            if capital is None or currency is None
            else format_minor(capital, currency),
            registered_capital_currency=currency,
            legal_representative=enterprise.legal_representative,
            as_of=as_of,
            score=self.score(credit_code, as_of),
            transactions=self.transactions_summary(credit_code, as_of),
            public_records=self.public_records(enterprise.id, as_of),
        )

    def public_records(self, enterprise_id: str, as_of: date) -> list[PublicRecordView]:
        """Public records attached to the enterprise (identity resolution), dated by ``as_of``."""
        from flowbureau.identity.models import IdentityLink, IdentityRecord

        rows = self._db.execute(
            sa.select(IdentityLink, IdentityRecord)
            .join(IdentityRecord, IdentityRecord.id == IdentityLink.record_id)
            .where(
                IdentityLink.enterprise_id == enterprise_id,
                IdentityLink.status == "attached",
                IdentityRecord.record_type.in_(PUBLIC_RECORD_TYPES),
                sa.or_(IdentityRecord.record_date.is_(None), IdentityRecord.record_date <= as_of),
            )
            .order_by(IdentityRecord.record_date.desc(), IdentityRecord.id)
        ).all()
        return [
            PublicRecordView(
                record_type=record.record_type,
                record_date=record.record_date,
                source=record.source,
                details=dict(record.details),
                attribution_probability=link.probability,
                stale=link.invalid_since is not None,
            )
            for link, record in rows
        ]


class ProviderEvaluator:
    """Evaluates applications with a provider's score (``None`` while it has no model)."""

    def __init__(self, provider: EnterpriseDataProvider) -> None:
        self._provider = provider

    def evaluate(self, *, credit_code: str, as_of: date) -> ScoreView | None:
        """The provider's score as of ``as_of``."""
        return self._provider.score(credit_code, as_of)


_SUMMARY_SQL = """
SELECT currency,
       count(*) AS transactions,
       CAST(coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0) AS BIGINT) AS inflow,
       CAST(coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0) AS BIGINT) AS outflow
FROM transactions
WHERE enterprise_id = ? AND booked_at < ?
GROUP BY currency
ORDER BY currency
"""

_SPAN_SQL = """
SELECT count(*) AS transactions, count(DISTINCT bank_id) AS banks,
       count(DISTINCT account_id) AS accounts, min(booked_at) AS first, max(booked_at) AS last
FROM transactions
WHERE enterprise_id = ? AND booked_at < ?
"""


_MONTHLY_SQL = """
WITH e AS (
    SELECT m.month, t.currency, t.account_id, t.booked_at, t.amount_minor, t.balance_after_minor
    FROM transactions t JOIN __months m ON t.booked_at >= m.starts AND t.booked_at < m.ends
    WHERE t.enterprise_id = ?
),
flows AS (
    SELECT month, currency,
           CAST(coalesce(sum(amount_minor) FILTER (WHERE amount_minor > 0), 0) AS BIGINT) AS inflow,
           CAST(coalesce(-sum(amount_minor) FILTER (WHERE amount_minor < 0), 0) AS BIGINT)
               AS outflow
    FROM e GROUP BY month, currency
),
last_balance AS (
    SELECT month, currency, account_id, arg_max(balance_after_minor, booked_at) AS balance
    FROM e WHERE balance_after_minor IS NOT NULL GROUP BY month, currency, account_id
),
grid AS (
    SELECT f.month, a.currency, a.account_id
    FROM (SELECT DISTINCT month FROM flows) f
    CROSS JOIN (SELECT DISTINCT currency, account_id FROM last_balance) a
),
carried AS (
    SELECT g.month, g.currency,
           last_value(l.balance IGNORE NULLS) OVER (
               PARTITION BY g.currency, g.account_id ORDER BY g.month
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS balance
    FROM grid g LEFT JOIN last_balance l USING (month, currency, account_id)
),
balances AS (
    SELECT month, currency, CAST(sum(balance) AS BIGINT) AS balance, count(balance) AS reported
    FROM carried GROUP BY month, currency
)
SELECT f.month, f.currency, f.inflow, f.outflow,
       CASE WHEN b.reported > 0 THEN b.balance END AS balance
FROM flows f LEFT JOIN balances b USING (month, currency)
ORDER BY f.currency, f.month
"""


def month_bounds(
    as_of: date, zone: ZoneInfo, months: int = 12
) -> list[tuple[date, datetime, datetime]]:
    """``(month start, first instant, end instant)`` of the ``months`` calendar months ending
    with the month of ``as_of`` (the last one cut at the end of ``as_of``), in UTC instants of
    local midnights of ``zone``."""
    firsts: list[date] = []
    year, month = as_of.year, as_of.month
    for _ in range(months):
        firsts.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    firsts.reverse()
    cutoff = datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    bounds = []
    for k, first in enumerate(firsts):
        start = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
        end = (
            cutoff
            if k == len(firsts) - 1
            else datetime.combine(firsts[k + 1], time(0), tzinfo=zone).astimezone(UTC)
        )
        bounds.append((first, start, end))
    return bounds


class WarehouseProvider(ServiceDatabaseProvider):
    """Profiles from the service database, transaction summaries from the warehouse.

    ``as_of`` is a calendar day in ``timezone`` (the consortium's local time): entries booked
    before the following local midnight count. Amounts are the booked ones, as each bank
    reported them; corrections proposed later do not change them. The monthly series covers the
    12 calendar months ending with the month of the latest entry up to ``as_of``; a month's
    closing balance sums, over the enterprise's accounts in that currency, the last balance a
    bank reported up to that month within those 12 months.
    """

    def __init__(self, db: Session, warehouse: Warehouse, timezone: str) -> None:
        super().__init__(db)
        self._warehouse = warehouse
        self._zone = ZoneInfo(timezone)

    def transactions_summary(self, credit_code: str, as_of: date) -> TransactionsSummaryView | None:
        """Totals per currency of the entries booked up to the end of ``as_of``."""
        cutoff = datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=self._zone)
        params = [credit_code, cutoff.astimezone(UTC)]
        with self._warehouse.connect() as engine:
            span = engine.query(_SPAN_SQL, params).to_pylist()[0]
            if not span["transactions"]:
                return None
            totals = engine.query(_SUMMARY_SQL, params).to_pylist()
            last_day = span["last"].astimezone(self._zone).date()
            monthly = self._monthly(engine, credit_code, min(as_of, last_day))
        return TransactionsSummaryView(
            credit_code=credit_code,
            as_of=as_of,
            first_booked_at=span["first"],
            last_booked_at=span["last"],
            transactions=span["transactions"],
            banks=span["banks"],
            accounts=span["accounts"],
            totals=[
                CurrencyTotals(
                    currency=row["currency"],
                    transactions=row["transactions"],
                    inflow_minor=row["inflow"],
                    outflow_minor=row["outflow"],
                    net_minor=row["inflow"] - row["outflow"],
                )
                for row in totals
            ],
            monthly=monthly,
        )

    def _monthly(self, engine: Any, credit_code: str, last_day: date) -> list[MonthlyFlow]:
        import pyarrow as pa

        bounds = month_bounds(last_day, self._zone)
        months = pa.table(
            {
                "month": pa.array([b[0] for b in bounds], pa.date32()),
                "starts": pa.array([b[1] for b in bounds], pa.timestamp("us", tz="UTC")),
                "ends": pa.array([b[2] for b in bounds], pa.timestamp("us", tz="UTC")),
            }
        )
        engine.register("__months", months)
        try:
            rows = engine.query(_MONTHLY_SQL, [credit_code]).to_pylist()
        finally:
            engine.unregister("__months")
        return [
            MonthlyFlow(
                month=row["month"],
                currency=row["currency"],
                inflow_minor=row["inflow"],
                outflow_minor=row["outflow"],
                net_minor=row["inflow"] - row["outflow"],
                closing_balance_minor=row["balance"],
            )
            for row in rows
        ]
