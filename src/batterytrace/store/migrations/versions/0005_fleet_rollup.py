"""The fleet rollup: batteries and their mass by year of registration, chemistry, stage, attached
and second life, for the dashboard's counts by stage and the retirement forecast.

Creates ``fleet_rollup`` and counts the batteries already registered into it (mass in whole
milligrams, the year of registration in UTC), as ``batterytrace.store.fleet`` keeps it from now on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_batteries = sa.table(
    "batteries",
    sa.column("registered_at", sa.DateTime),
    sa.column("chemistry", sa.String),
    sa.column("stage", sa.String),
    sa.column("attached", sa.Boolean),
    sa.column("second_life", sa.Boolean),
    sa.column("mass_kg", sa.Float),
)


def upgrade() -> None:
    fleet = op.create_table(
        "fleet_rollup",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("chemistry", sa.String(length=20), nullable=False),
        sa.Column("stage", sa.String(length=12), nullable=False),
        sa.Column("attached", sa.Boolean(), nullable=False),
        sa.Column("second_life", sa.Boolean(), nullable=False),
        sa.Column("batteries", sa.BigInteger(), nullable=False),
        sa.Column("mass_mg", sa.BigInteger(), nullable=False),
        sa.Column("with_mass", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "year", "chemistry", "stage", "attached", "second_life", name=op.f("pk_fleet_rollup")
        ),
    )
    conn = op.get_bind()
    counts: dict[tuple[int, str, str, bool, bool], list[int]] = {}
    b = _batteries.c
    rows = conn.execute(
        sa.select(
            b.registered_at, b.chemistry, b.stage, b.attached, b.second_life, b.mass_kg
        ).execution_options(stream_results=True, yield_per=10_000)
    )
    for r in rows:  # registered_at is stored as naive UTC
        key = (r.registered_at.year, r.chemistry, r.stage, bool(r.attached), bool(r.second_life))
        cell = counts.setdefault(key, [0, 0, 0])
        cell[0] += 1
        cell[1] += round(r.mass_kg * 1_000_000) if r.mass_kg is not None else 0
        cell[2] += r.mass_kg is not None
    if counts:
        op.bulk_insert(
            fleet,
            [
                {
                    "year": y,
                    "chemistry": c,
                    "stage": s,
                    "attached": a,
                    "second_life": sl,
                    "batteries": n,
                    "mass_mg": mg,
                    "with_mass": known,
                }
                for (y, c, s, a, sl), (n, mg, known) in sorted(counts.items())
            ],
        )


def downgrade() -> None:
    op.drop_table("fleet_rollup")
