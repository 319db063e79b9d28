"""Initial schema: enterprises, licences, keys, batteries, events, the Merkle log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("enterprise_id", sa.String(length=18), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_enterprise_id"), ["enterprise_id"], unique=False)

    op.create_table(
        "batteries",
        sa.Column("code", sa.String(length=24), nullable=False),
        sa.Column("level", sa.String(length=6), nullable=False),
        sa.Column("chemistry", sa.String(length=20), nullable=False),
        sa.Column("manufacturer", sa.String(length=3), nullable=False),
        sa.Column("producer", sa.String(length=18), nullable=False),
        sa.Column("stage", sa.String(length=12), nullable=False),
        sa.Column("holder", sa.String(length=18), nullable=True),
        sa.Column("in_transit_to", sa.String(length=18), nullable=True),
        sa.Column("vin", sa.String(length=17), nullable=True),
        sa.Column("system", sa.String(length=200), nullable=True),
        sa.Column("application", sa.String(length=40), nullable=True),
        sa.Column("parent", sa.String(length=24), nullable=True),
        sa.Column("attached", sa.Boolean(), nullable=False),
        sa.Column("second_life", sa.Boolean(), nullable=False),
        sa.Column("stage_before_missing", sa.String(length=12), nullable=True),
        sa.Column("grade", sa.String(length=12), nullable=True),
        sa.Column("soh_percent", sa.Float(), nullable=True),
        sa.Column("installer", sa.String(length=18), nullable=True),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.Column("capacity_kwh", sa.Float(), nullable=True),
        sa.Column("mass_kg", sa.Float(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.Column("last_event_time", sa.DateTime(), nullable=False),
        sa.Column("last_event_id", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_batteries")),
    )
    with op.batch_alter_table("batteries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batteries_holder"), ["holder"], unique=False)
        batch_op.create_index(batch_op.f("ix_batteries_in_transit_to"), ["in_transit_to"], unique=False)
        batch_op.create_index(batch_op.f("ix_batteries_parent"), ["parent"], unique=False)
        batch_op.create_index(batch_op.f("ix_batteries_producer"), ["producer"], unique=False)
        batch_op.create_index(batch_op.f("ix_batteries_stage"), ["stage"], unique=False)
        batch_op.create_index(batch_op.f("ix_batteries_vin"), ["vin"], unique=False)

    op.create_table(
        "battery_links",
        sa.Column("parent", sa.String(length=24), nullable=False),
        sa.Column("child", sa.String(length=24), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("parent", "child", "kind", name=op.f("pk_battery_links")),
    )
    with op.batch_alter_table("battery_links", schema=None) as batch_op:
        batch_op.create_index("ix_battery_links_child", ["child"], unique=False)

    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_checkpoints")),
    )
    op.create_table(
        "enterprises",
        sa.Column("id", sa.String(length=18), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("network_of", sa.String(length=18), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enterprises")),
    )
    with op.batch_alter_table("enterprises", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enterprises_network_of"), ["network_of"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("battery", sa.String(length=24), nullable=True),
        sa.Column("vin", sa.String(length=17), nullable=True),
        sa.Column("time_text", sa.String(length=40), nullable=False),
        sa.Column("time_utc", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=18), nullable=False),
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.Column("undo", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("log_index", name=op.f("uq_events_log_index")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_actor"), ["actor"], unique=False)
        batch_op.create_index("ix_events_battery_time", ["battery", "time_utc"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_vin"), ["vin"], unique=False)

    op.create_table(
        "licences",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("enterprise_id", sa.String(length=18), nullable=False),
        sa.Column("scope", sa.String(length=20), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=False),
        sa.Column("region", sa.String(length=6), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_licences")),
    )
    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_licences_enterprise_id"), ["enterprise_id"], unique=False)

    op.create_table(
        "log_entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_log_entries")),
    )
    op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_head")),
    )
    op.create_table(
        "log_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_log_nodes")),
    )
    op.create_table(
        "manufacturer_codes",
        sa.Column("code", sa.String(length=3), nullable=False),
        sa.Column("enterprise_id", sa.String(length=18), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_manufacturer_codes")),
    )
    with op.batch_alter_table("manufacturer_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_manufacturer_codes_enterprise_id"), ["enterprise_id"], unique=False
        )

    op.create_table(
        "retractions",
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("retracted_by", sa.String(length=36), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_retractions")),
    )
    op.create_table(
        "security_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("enterprise_id", sa.String(length=18), nullable=True),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("event_type", sa.String(length=40), nullable=True),
        sa.Column("battery", sa.String(length=64), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_events")),
    )
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_security_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_security_events_battery"), ["battery"], unique=False)
        batch_op.create_index(batch_op.f("ix_security_events_enterprise_id"), ["enterprise_id"], unique=False)

    op.create_table(
        "vehicles",
        sa.Column("vin", sa.String(length=17), nullable=False),
        sa.Column("automaker", sa.String(length=18), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("last_event_id", sa.String(length=36), nullable=False),
        sa.Column("sold_at", sa.DateTime(), nullable=True),
        sa.Column("scrapped_at", sa.DateTime(), nullable=True),
        sa.Column("scrapped_by", sa.String(length=18), nullable=True),
        sa.PrimaryKeyConstraint("vin", name=op.f("pk_vehicles")),
    )
    with op.batch_alter_table("vehicles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_vehicles_automaker"), ["automaker"], unique=False)
    op.create_table(
        "log_keys",
        sa.Column("verifier_key", sa.String(length=300), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("retired_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("verifier_key", name=op.f("pk_log_keys")),
    )


def downgrade() -> None:
    op.drop_table("log_keys")
    with op.batch_alter_table("vehicles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vehicles_automaker"))

    op.drop_table("vehicles")
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_security_events_enterprise_id"))
        batch_op.drop_index(batch_op.f("ix_security_events_battery"))
        batch_op.drop_index(batch_op.f("ix_security_events_at"))

    op.drop_table("security_events")
    op.drop_table("retractions")
    with op.batch_alter_table("manufacturer_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_manufacturer_codes_enterprise_id"))

    op.drop_table("manufacturer_codes")
    op.drop_table("log_nodes")
    op.drop_table("log_head")
    op.drop_table("log_entries")
    with op.batch_alter_table("licences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_licences_enterprise_id"))

    op.drop_table("licences")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_vin"))
        batch_op.drop_index("ix_events_battery_time")
        batch_op.drop_index(batch_op.f("ix_events_actor"))

    op.drop_table("events")
    with op.batch_alter_table("enterprises", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enterprises_network_of"))

    op.drop_table("enterprises")
    op.drop_table("checkpoints")
    with op.batch_alter_table("battery_links", schema=None) as batch_op:
        batch_op.drop_index("ix_battery_links_child")

    op.drop_table("battery_links")
    with op.batch_alter_table("batteries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batteries_vin"))
        batch_op.drop_index(batch_op.f("ix_batteries_stage"))
        batch_op.drop_index(batch_op.f("ix_batteries_producer"))
        batch_op.drop_index(batch_op.f("ix_batteries_parent"))
        batch_op.drop_index(batch_op.f("ix_batteries_in_transit_to"))
        batch_op.drop_index(batch_op.f("ix_batteries_holder"))

    op.drop_table("batteries")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_enterprise_id"))

    op.drop_table("api_keys")
