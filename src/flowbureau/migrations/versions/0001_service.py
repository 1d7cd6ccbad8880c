"""Service tables: accounts, enterprises, applications, consents, idempotency, audit log.

Revision ID: 0001_service
Revises:
Create Date: 2026-11-22 23:16:26.360055
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import flowbureau.storage.database

revision: str = "0001_service"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    # The chain starts at the genesis hash; appends update this one row (see service.audit).
    op.bulk_insert(
        sa.table(
            "audit_head",
            sa.column("id", sa.Integer()),
            sa.column("seq", sa.BigInteger()),
            sa.column("hash", sa.String()),
        ),
        [{"id": 1, "seq": 0, "hash": "0" * 64}],
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=36), nullable=True),
        sa.Column("role", sa.String(length=32), nullable=True),
        sa.Column("institution_id", sa.String(length=36), nullable=True),
        sa.Column("enterprise_id", sa.String(length=36), nullable=True),
        sa.Column("credit_code", sa.String(length=18), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=True),
        sa.Column("consent_id", sa.String(length=36), nullable=True),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("resource", sa.String(length=500), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_credit_code"), ["credit_code"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_log_enterprise_id"), ["enterprise_id"], unique=False
        )

    op.create_table(
        "enterprises",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("credit_code", sa.String(length=18), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("industry_code", sa.String(length=5), nullable=True),
        sa.Column("registration_date", sa.Date(), nullable=True),
        sa.Column("registered_capital_minor", sa.BigInteger(), nullable=True),
        sa.Column("registered_capital_currency", sa.String(length=3), nullable=True),
        sa.Column("legal_representative", sa.String(length=100), nullable=True),
        sa.Column("address", sa.String(length=300), nullable=True),
        sa.Column("contact_name", sa.String(length=100), nullable=True),
        sa.Column("contact_phone_enc", sa.LargeBinary(), nullable=True),
        sa.Column(
            "created_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enterprises")),
        sa.UniqueConstraint("credit_code", name=op.f("uq_enterprises_credit_code")),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("principal", sa.String(length=80), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=False),
        sa.Column(
            "created_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("principal", "key", name=op.f("uq_idempotency_keys_principal_key")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "institutions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_institutions")),
        sa.UniqueConstraint("name", name=op.f("uq_institutions_name")),
    )
    op.create_table(
        "sms_codes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("phone_lookup", sa.String(length=64), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum(
                "register",
                "login",
                name="otp_purpose",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("code_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "consumed_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_codes")),
    )
    with op.batch_alter_table("sms_codes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sms_codes_phone_purpose", ["phone_lookup", "purpose"], unique=False
        )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("institution_id", sa.String(length=36), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "revoked_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("rotated_from", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_api_keys_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_api_keys_key_id")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_keys_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "enterprise_bank_accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("enterprise_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("bank_name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("account_enc", sa.LargeBinary(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("account_last4", sa.String(length=4), nullable=False),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_enterprise_bank_accounts_enterprise_id_enterprises"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enterprise_bank_accounts")),
        sa.UniqueConstraint(
            "enterprise_id",
            "account_id",
            name=op.f("uq_enterprise_bank_accounts_enterprise_id_account_id"),
        ),
    )
    with op.batch_alter_table("enterprise_bank_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_enterprise_bank_accounts_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_enterprise_bank_accounts_enterprise_id"), ["enterprise_id"], unique=False
        )

    op.create_table(
        "users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "enterprise",
                "analyst",
                "api_client",
                "operator",
                "auditor",
                name="user_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("phone_lookup", sa.String(length=64), nullable=False),
        sa.Column("phone_enc", sa.LargeBinary(), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("display_name", sa.String(length=100), nullable=True),
        sa.Column("institution_id", sa.String(length=36), nullable=True),
        sa.Column("enterprise_id", sa.String(length=36), nullable=True),
        sa.Column(
            "created_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "disabled_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.CheckConstraint(
            "(role <> 'analyst') OR (institution_id IS NOT NULL)",
            name=op.f("ck_users_analyst_institution"),
        ),
        sa.CheckConstraint(
            "(role <> 'enterprise') OR (enterprise_id IS NOT NULL)",
            name=op.f("ck_users_enterprise_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"], ["enterprises.id"], name=op.f("fk_users_enterprise_id_enterprises")
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_users_institution_id_institutions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("phone_lookup", name=op.f("uq_users_phone_lookup")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_enterprise_id"), ["enterprise_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_users_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "applications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("enterprise_id", sa.String(length=36), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "submitted",
                "evaluating",
                "evaluated",
                name="app_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("status_reason", sa.String(length=300), nullable=True),
        sa.Column("requested_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("term_months", sa.Integer(), nullable=True),
        sa.Column("loan_purpose", sa.String(length=300), nullable=True),
        sa.Column("evaluation", sa.JSON(), nullable=True),
        sa.Column(
            "created_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "submitted_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "evaluated_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_applications_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_applications_enterprise_id_enterprises"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_applications")),
    )
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_applications_enterprise_id"), ["enterprise_id"], unique=False
        )

    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column(
            "created_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expires_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "revoked_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("revoke_reason", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_auth_sessions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
    )
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "consents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("enterprise_id", sa.String(length=36), nullable=False),
        sa.Column("institution_id", sa.String(length=36), nullable=False),
        sa.Column(
            "purpose",
            sa.Enum(
                "pre_loan_review",
                "post_loan_monitoring",
                name="consent_purpose",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column(
            "expires_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "created_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("created_by", sa.String(length=36), nullable=False),
        sa.Column(
            "revoked_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("revoked_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_consents_created_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprises.id"],
            name=op.f("fk_consents_enterprise_id_enterprises"),
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_consents_institution_id_institutions"),
        ),
        sa.ForeignKeyConstraint(
            ["revoked_by"], ["users.id"], name=op.f("fk_consents_revoked_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consents_enterprise_institution", ["enterprise_id", "institution_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consents_institution_id"), ["institution_id"], unique=False
        )

    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "issued_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("used_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["auth_sessions.id"],
            name=op.f("fk_refresh_tokens_session_id_auth_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_refresh_tokens_session_id"), ["session_id"], unique=False
        )


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refresh_tokens_session_id"))

    op.drop_table("refresh_tokens")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consents_institution_id"))
        batch_op.drop_index("ix_consents_enterprise_institution")

    op.drop_table("consents")
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_sessions_user_id"))

    op.drop_table("auth_sessions")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_applications_enterprise_id"))

    op.drop_table("applications")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_institution_id"))
        batch_op.drop_index(batch_op.f("ix_users_enterprise_id"))

    op.drop_table("users")
    with op.batch_alter_table("enterprise_bank_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enterprise_bank_accounts_enterprise_id"))
        batch_op.drop_index(batch_op.f("ix_enterprise_bank_accounts_account_id"))

    op.drop_table("enterprise_bank_accounts")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_institution_id"))

    op.drop_table("api_keys")
    with op.batch_alter_table("sms_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_sms_codes_phone_purpose")

    op.drop_table("sms_codes")
    op.drop_table("institutions")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_expires_at"))

    op.drop_table("idempotency_keys")
    op.drop_table("enterprises")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_enterprise_id"))
        batch_op.drop_index(batch_op.f("ix_audit_log_credit_code"))
        batch_op.drop_index(batch_op.f("ix_audit_log_actor_id"))

    op.drop_table("audit_log")
    op.drop_table("audit_head")
