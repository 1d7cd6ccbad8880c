"""Tables of identity resolution and freshness, on the shared service-database ``Base``.

Rules:
- :class:`IdentityRecord` is one record the platform holds about some enterprise, from a bank
  (an account in a bank's account register) or a public source (the business registry,
  administrative penalties, quality inspections, online-lending accounts, court judgments).
  ``(source, source_ref)`` identifies it, so loading a source again updates rather than
  duplicates. Phones are kept only as the vault's keyed HMAC, accounts only as the warehouse
  pseudonym.
- :class:`IdentityLink` says what the model concluded about one record for one enterprise:
  its attribution probability and whether it is ``attached``, a ``candidate`` to confirm, or
  ``rejected`` by the enterprise (never attached again automatically). A link is *invalid*
  while its information is stale (``invalid_since``); ``verified_at`` is when the enterprise's
  own information last confirmed it.
- :class:`EnterpriseFinancials` keeps every declaration of key financial figures (append-only;
  the latest declaration counts); money in integer minor units.
- :class:`UpdateRequest` asks the enterprise to update one kind of its information
  (``profile`` or ``financial``); ``items`` lists the stale records that caused it.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flowbureau.storage.database import Base, UTCDateTime

__all__ = [
    "EnterpriseFinancials",
    "IdentityLink",
    "IdentityRecord",
    "UpdateRequest",
]


def _new_id() -> str:
    return str(uuid.uuid4())


class IdentityRecord(Base):
    """A record about an enterprise from a bank or a public source, with its identifiers."""

    __tablename__ = "identity_records"
    __table_args__ = (sa.UniqueConstraint("source", "source_ref"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_new_id)
    source: Mapped[str] = mapped_column(sa.String(32))
    source_ref: Mapped[str] = mapped_column(sa.String(200))
    record_type: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str | None] = mapped_column(sa.String(200))
    name_norm: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    name_key: Mapped[str | None] = mapped_column(sa.String(16), index=True)
    credit_code: Mapped[str | None] = mapped_column(sa.String(18), index=True)
    phone_lookup: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    account_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    legal_representative: Mapped[str | None] = mapped_column(sa.String(100))
    record_date: Mapped[date | None] = mapped_column(sa.Date())
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON())
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdentityLink(Base):
    """The attribution of one record to one enterprise, and its validity."""

    __tablename__ = "identity_links"
    __table_args__ = (sa.UniqueConstraint("enterprise_id", "record_id"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_new_id)
    enterprise_id: Mapped[str] = mapped_column(
        sa.ForeignKey("enterprises.id", ondelete="CASCADE"), index=True
    )
    record_id: Mapped[str] = mapped_column(
        sa.ForeignKey("identity_records.id", ondelete="CASCADE"), index=True
    )
    probability: Mapped[float] = mapped_column(sa.Float())
    status: Mapped[str] = mapped_column(sa.String(16))
    model_version: Mapped[str] = mapped_column(sa.String(40))
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime())
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    invalid_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    invalid_reason: Mapped[str | None] = mapped_column(sa.String(300))


class EnterpriseFinancials(Base):
    """One declaration of an enterprise's key financial figures for a period."""

    __tablename__ = "enterprise_financials"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_new_id)
    enterprise_id: Mapped[str] = mapped_column(
        sa.ForeignKey("enterprises.id", ondelete="CASCADE"), index=True
    )
    period_end: Mapped[date] = mapped_column(sa.Date())
    currency: Mapped[str] = mapped_column(sa.String(3))
    revenue_minor: Mapped[int] = mapped_column(sa.BigInteger())
    total_assets_minor: Mapped[int] = mapped_column(sa.BigInteger())
    total_liabilities_minor: Mapped[int] = mapped_column(sa.BigInteger())
    net_profit_minor: Mapped[int] = mapped_column(sa.BigInteger())
    declared_at: Mapped[datetime] = mapped_column(UTCDateTime())
    declared_by: Mapped[str] = mapped_column(sa.String(36))


class UpdateRequest(Base):
    """A request to the enterprise to update stale information, until it does."""

    __tablename__ = "update_requests"
    __table_args__ = (sa.Index("ix_update_requests_enterprise_status", "enterprise_id", "status"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=_new_id)
    enterprise_id: Mapped[str] = mapped_column(sa.ForeignKey("enterprises.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    items: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    status: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(sa.String(36))
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON())
