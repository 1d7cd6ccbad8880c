"""Score history and alerts: every evaluation of an enterprise, and downgrade / PD-jump alerts.

Revision ID: 0002_scoring
Revises: 0001_service
Create Date: 2026-11-22 23:59:32.772287
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import flowbureau.storage.database

revision: str = "0002_scoring"
down_revision: str | Sequence[str] | None = "0001_service"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "score_evaluations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("enterprise_id", sa.String(length=18), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column(
            "computed_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("pd", sa.Float(), nullable=False),
        sa.Column("grade", sa.String(length=16), nullable=False),
        sa.Column("grade_rank", sa.Integer(), nullable=False),
        sa.Column("challenger_score", sa.Integer(), nullable=True),
        sa.Column("challenger_pd", sa.Float(), nullable=True),
        sa.Column("challenger_grade", sa.String(length=16), nullable=True),
        sa.Column("case_pd", sa.Float(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("cases", sa.JSON(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("data_summary", sa.JSON(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("data_fingerprint", sa.String(length=64), nullable=False),
        sa.CheckConstraint("pd >= 0 AND pd <= 1", name=op.f("ck_score_evaluations_pd_range")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_evaluations")),
    )
    with op.batch_alter_table("score_evaluations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_score_evaluations_as_of_model",
            ["as_of", "model_name", "model_version"],
            unique=False,
        )
        batch_op.create_index(
            "ix_score_evaluations_enterprise_as_of",
            ["enterprise_id", "as_of", "computed_at"],
            unique=False,
        )

    op.create_table(
        "score_alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("enterprise_id", sa.String(length=18), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("evaluation_id", sa.String(length=36), nullable=False),
        sa.Column("previous_evaluation_id", sa.String(length=36), nullable=False),
        sa.Column("previous_grade", sa.String(length=16), nullable=False),
        sa.Column("grade", sa.String(length=16), nullable=False),
        sa.Column("previous_pd", sa.Float(), nullable=False),
        sa.Column("pd", sa.Float(), nullable=False),
        sa.Column(
            "created_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "acknowledged_at", flowbureau.storage.database.UTCDateTime(timezone=True), nullable=True
        ),
        sa.CheckConstraint("kind IN ('downgrade', 'pd_jump')", name=op.f("ck_score_alerts_kind")),
        sa.ForeignKeyConstraint(
            ["evaluation_id"],
            ["score_evaluations.id"],
            name=op.f("fk_score_alerts_evaluation_id_score_evaluations"),
        ),
        sa.ForeignKeyConstraint(
            ["previous_evaluation_id"],
            ["score_evaluations.id"],
            name=op.f("fk_score_alerts_previous_evaluation_id_score_evaluations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_alerts")),
    )
    with op.batch_alter_table("score_alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_score_alerts_enterprise_created", ["enterprise_id", "created_at"], unique=False
        )


def downgrade() -> None:
    """Undo this revision."""
    with op.batch_alter_table("score_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_score_alerts_enterprise_created")

    op.drop_table("score_alerts")
    with op.batch_alter_table("score_evaluations", schema=None) as batch_op:
        batch_op.drop_index("ix_score_evaluations_enterprise_as_of")
        batch_op.drop_index("ix_score_evaluations_as_of_model")

    op.drop_table("score_evaluations")
