"""Circularity: recyclers' balances of recovered material, for recycled-content declarations.

Creates ``material_balances`` and fills it from the ``recycled`` events already accepted (and not
retracted), recording in each such event's undo record the balance change a retraction reverses.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_MATERIAL_KEY = re.compile(r"^[a-z][a-z0-9_]*_kg$")
_MG_PER_KG = 1_000_000

_events = sa.table(
    "events",
    sa.column("id", sa.String),
    sa.column("type", sa.String),
    sa.column("actor", sa.String),
    sa.column("data", sa.JSON),
    sa.column("undo", sa.JSON),
)
_retractions = sa.table("retractions", sa.column("event_id", sa.String))


def upgrade() -> None:
    balances = op.create_table(
        "material_balances",
        sa.Column("recycler", sa.String(length=18), nullable=False),
        sa.Column("material", sa.String(length=32), nullable=False),
        sa.Column("recovered_mg", sa.BigInteger(), nullable=False),
        sa.Column("declared_mg", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("recycler", "material", name=op.f("pk_material_balances")),
    )
    conn = op.get_bind()
    retracted = {r.event_id for r in conn.execute(sa.select(_retractions.c.event_id))}
    totals: dict[tuple[str, str], int] = {}
    rows = conn.execute(
        sa.select(_events.c.id, _events.c.actor, _events.c.data, _events.c.undo).where(
            _events.c.type == "recycled"
        )
    ).all()
    for row in rows:
        data: Any = row.data if isinstance(row.data, dict) else {}
        recovered = data.get("recovered") if isinstance(data.get("recovered"), dict) else {}
        flows = []
        for name, kg in sorted(recovered.items()):
            if not _MATERIAL_KEY.match(name) or isinstance(kg, bool) or not isinstance(kg, int | float):
                continue
            mg = round(kg * _MG_PER_KG)
            if mg <= 0:
                continue
            flows.append({"recycler": row.actor, "material": name[:-3], "recovered_mg": mg, "declared_mg": 0})
            if row.id not in retracted:
                key = (row.actor, name[:-3])
                totals[key] = totals.get(key, 0) + mg
        undo = dict(row.undo) if isinstance(row.undo, dict) else None
        if flows and undo is not None and "materials" not in undo:
            undo["materials"] = flows
            conn.execute(sa.update(_events).where(_events.c.id == row.id).values(undo=undo))
    if totals:
        op.bulk_insert(
            balances,
            [
                {"recycler": r, "material": m, "recovered_mg": mg, "declared_mg": 0}
                for (r, m), mg in sorted(totals.items())
            ],
        )


def downgrade() -> None:
    op.drop_table("material_balances")
