"""Monitoring: alerts and rollups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("condition_key", sa.String(length=200), nullable=True),
        sa.Column("battery", sa.String(length=64), nullable=True),
        sa.Column("vin", sa.String(length=17), nullable=True),
        sa.Column("enterprise_id", sa.String(length=18), nullable=True),
        sa.Column("counterparty", sa.String(length=18), nullable=True),
        sa.Column("province", sa.String(length=2), nullable=True),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=True),
        sa.Column("deadline_basis", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=18), nullable=True),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(length=18), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("condition_key", name=op.f("uq_alerts_condition_key")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_battery"), ["battery"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_counterparty"), ["counterparty"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_enterprise_id"), ["enterprise_id"], unique=False)
        batch_op.create_index("ix_alerts_status_rule", ["status", "rule"], unique=False)
        batch_op.create_index(batch_op.f("ix_alerts_vin"), ["vin"], unique=False)

    op.create_table(
        "alert_watches",
        sa.Column("battery", sa.String(length=24), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("condition_key", sa.String(length=200), nullable=False),
        sa.Column("vin", sa.String(length=17), nullable=True),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=False),
        sa.Column("deadline_basis", sa.String(length=16), nullable=False),
        sa.Column("enterprise_id", sa.String(length=18), nullable=True),
        sa.Column("counterparty", sa.String(length=18), nullable=True),
        sa.Column("producer", sa.String(length=18), nullable=True),
        sa.Column("installer", sa.String(length=18), nullable=True),
        sa.Column("province", sa.String(length=2), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("alerted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("battery", "rule", name=op.f("pk_alert_watches")),
    )
    with op.batch_alter_table("alert_watches", schema=None) as batch_op:
        batch_op.create_index("ix_alert_watches_alerted_deadline", ["alerted", "deadline"], unique=False)

    op.create_table(
        "monitor_state",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_monitor_state")),
    )

    op.create_table(
        "stat_rollup",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("province", sa.String(length=2), nullable=False),
        sa.Column("chemistry", sa.String(length=20), nullable=False),
        sa.Column("producer", sa.String(length=18), nullable=False),
        sa.Column("level", sa.String(length=6), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("batteries", sa.BigInteger(), nullable=False),
        sa.Column("mass_g", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "year", "province", "chemistry", "producer", "level", "metric", name=op.f("pk_stat_rollup")
        ),
    )

    op.create_table(
        "producer_rollup",
        sa.Column("enterprise_id", sa.String(length=18), nullable=False),
        sa.Column("responsibility", sa.String(length=16), nullable=False),
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("retired", sa.BigInteger(), nullable=False),
        sa.Column("retired_g", sa.BigInteger(), nullable=False),
        sa.Column("collected_in_time", sa.BigInteger(), nullable=False),
        sa.Column("collected_late", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("enterprise_id", "responsibility", "year", name=op.f("pk_producer_rollup")),
    )

    op.create_table(
        "recovery_rollup",
        sa.Column("recycler", sa.String(length=18), nullable=False),
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("metal", sa.String(length=4), nullable=False),
        sa.Column("batteries", sa.BigInteger(), nullable=False),
        sa.Column("contained_g", sa.BigInteger(), nullable=False),
        sa.Column("recovered_g", sa.BigInteger(), nullable=False),
        sa.Column("unmatched_g", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("recycler", "year", "metal", name=op.f("pk_recovery_rollup")),
    )


def downgrade() -> None:
    op.drop_table("recovery_rollup")
    op.drop_table("producer_rollup")
    op.drop_table("stat_rollup")
    op.drop_table("monitor_state")
    with op.batch_alter_table("alert_watches", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_watches_alerted_deadline")

    op.drop_table("alert_watches")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_vin"))
        batch_op.drop_index("ix_alerts_status_rule")
        batch_op.drop_index(batch_op.f("ix_alerts_enterprise_id"))
        batch_op.drop_index(batch_op.f("ix_alerts_counterparty"))
        batch_op.drop_index(batch_op.f("ix_alerts_battery"))

    op.drop_table("alerts")
