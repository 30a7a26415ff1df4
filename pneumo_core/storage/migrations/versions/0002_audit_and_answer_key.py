"""The audit trail (append-only), the quiz's reveal policy and each reader's recorded film order.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-20

Quizzes made before this revision keep revealing the truth when the reader ends ("at_end"), and their readers
keep the quiz's order (order_seed NULL). quiz_schema goes to 2 so that the release before Alembic refuses this
database rather than ignore the reveal policy. The triggers refuse UPDATE and DELETE on audit_events (and
TRUNCATE on PostgreSQL); a future migration that copies that table (SQLite batch mode) must make them again.
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY = "audit_events is append-only"  # pneumo_core.storage.database matches this text


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("role", sa.String(80), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("study_refs", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(10), nullable=False),
        sa.CheckConstraint("action IN ('pacs_search', 'pacs_retrieve', 'pacs_store')", name="audit_action_known"),
        sa.CheckConstraint("outcome IN ('ok', 'error', 'refused')", name="audit_outcome_known"),
        sa.CheckConstraint("count >= 0", name="audit_count_not_negative"),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_events_no_{verb.lower()} BEFORE {verb} ON audit_events "
                       f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END")
    elif dialect == "postgresql":
        op.execute("CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$")
        op.execute("CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events "
                   "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()")
        op.execute("CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()")

    with op.batch_alter_table("quiz_quizzes") as batch:
        batch.add_column(sa.Column("reveal", sa.String(8), nullable=False, server_default="at_end"))
    with op.batch_alter_table("quiz_readers") as batch:
        batch.add_column(sa.Column("order_seed", sa.Integer))
        batch.add_column(sa.Column("film_order", sa.Text))
    op.execute("UPDATE quiz_schema SET version = 2")


def downgrade() -> None:
    op.execute("UPDATE quiz_schema SET version = 1")
    with op.batch_alter_table("quiz_readers") as batch:
        batch.drop_column("film_order")
        batch.drop_column("order_seed")
    with op.batch_alter_table("quiz_quizzes") as batch:
        batch.drop_column("reveal")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_events")  # its triggers go with it
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        op.drop_table("audit_events")
