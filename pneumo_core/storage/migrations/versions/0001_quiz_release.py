"""The schema of the release before Alembic: the reader quiz, quiz_schema version 1.

Revision ID: 0001
Revises:
Create Date: 2026-11-20

Spelled out, not taken from pneumo_core.storage.schema: this revision must stay what that release made.
"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = op.create_table(
        "quiz_schema",
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "quiz_quizzes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("code", sa.String(6), nullable=False, unique=True),
        sa.Column("key_salt", sa.LargeBinary(16), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("source", sa.String(1000), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("n_films", sa.Integer, nullable=False),
        sa.Column("time_limit_s", sa.Integer),
        sa.Column("threshold_finetuned", sa.Float),
        sa.Column("threshold_frozen", sa.Float),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "quiz_films",
        sa.Column("quiz_id", sa.Integer, sa.ForeignKey("quiz_quizzes.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(1000), nullable=False),
        sa.Column("example", sa.String(40), nullable=False),
        sa.Column("truth", sa.String(9), nullable=False),
        sa.Column("subtype", sa.String(20), nullable=False),
        sa.Column("p_finetuned", sa.Float),
        sa.Column("p_frozen", sa.Float),
    )
    op.create_table(
        "quiz_readers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("quiz_id", sa.Integer, sa.ForeignKey("quiz_quizzes.id"), nullable=False),
        sa.Column("nickname", sa.String(40), nullable=False),
        sa.Column("nickname_key", sa.String(160), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("quiz_id", "nickname_key"),
    )
    op.create_table(
        "quiz_answers",
        sa.Column("reader_id", sa.Integer, sa.ForeignKey("quiz_readers.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("answer", sa.String(9), nullable=False),
        sa.Column("confidence", sa.Integer, nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("confidence BETWEEN 1 AND 5", name="confidence_1_to_5"),
        sa.CheckConstraint("answer IN ('NORMAL', 'PNEUMONIA')", name="answer_is_a_class"),
    )
    op.bulk_insert(schema, [{"version": 1, "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    for table in ("quiz_answers", "quiz_readers", "quiz_films", "quiz_quizzes", "quiz_schema"):
        op.drop_table(table)
