"""A site's reads of films (one row per reader, film and model version, with every save kept in a history) and
the site thresholds adopted from them (who, when, n, old and new; ended by a revert or a later adoption).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Only new tables: the quiz and the audit trail are not touched (no batch copy, so the audit triggers stay).
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_reads",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("reader", sa.String(80), nullable=False),
        sa.Column("film_sha256", sa.String(64), nullable=False),
        sa.Column("model", sa.String(40), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("p_pneumonia", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("ood_distance", sa.Float),
        sa.Column("read", sa.String(9), nullable=False),
        sa.Column("reference", sa.String(9)),
        sa.Column("reference_source", sa.String(20)),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("reader", "film_sha256", "model_sha256", name="site_read_once"),
        sa.CheckConstraint("read IN ('NORMAL', 'PNEUMONIA', 'UNSURE')", name="site_read_known"),
        sa.CheckConstraint("reference IS NULL OR reference IN ('NORMAL', 'PNEUMONIA')", name="site_reference_known"),
        sa.CheckConstraint("(reference IS NULL) = (reference_source IS NULL)", name="site_reference_has_source"),
    )
    op.create_table(
        "site_read_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("read_id", sa.Integer, sa.ForeignKey("site_reads.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read", sa.String(9), nullable=False),
        sa.Column("reference", sa.String(9)),
        sa.Column("reference_source", sa.String(20)),
    )
    op.create_table(
        "site_thresholds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(40), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("old_threshold", sa.Float, nullable=False),
        sa.Column("new_threshold", sa.Float, nullable=False),
        sa.Column("n_reads", sa.Integer, nullable=False),
        sa.Column("n_normal", sa.Integer, nullable=False),
        sa.Column("n_pneumonia", sa.Integer, nullable=False),
        sa.Column("adopted_by", sa.String(80), nullable=False),
        sa.Column("adopted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("ended_by", sa.String(80)),
        sa.Column("end_reason", sa.String(10)),
        sa.CheckConstraint("end_reason IS NULL OR end_reason IN ('reverted', 'replaced')",
                           name="site_threshold_end_known"),
    )
    active = sa.text("ended_at IS NULL")
    op.create_index("site_threshold_active", "site_thresholds", ["model_sha256"], unique=True,
                    sqlite_where=active, postgresql_where=active)


def downgrade() -> None:
    for table in ("site_thresholds", "site_read_history", "site_reads"):
        op.drop_table(table)
