"""Where an adopted site threshold came from (``source``): NULL for the threshold proposed from the site's reads
by the shipped rule (every adoption before this revision), else a one-line description such as
"EM prior-shift adaptation (312 films)".

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

One nullable column added in place (no batch copy: the audit triggers stay, nothing is rewritten).
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("site_thresholds", sa.Column("source", sa.String(80)))


def downgrade() -> None:
    with op.batch_alter_table("site_thresholds") as batch:
        batch.drop_column("source")
