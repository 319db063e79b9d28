"""Statistics by province from one index: ``stat_rollup`` indexed by level, year, province and
metric with its two counters, so the dashboard's statistics by province read the index alone on
SQLite instead of looking every row up from the primary key.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stat_rollup", schema=None) as batch_op:
        batch_op.create_index(
            "ix_stat_rollup_by_province",
            ["level", "year", "province", "metric", "batteries", "mass_g"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("stat_rollup", schema=None) as batch_op:
        batch_op.drop_index("ix_stat_rollup_by_province")
