"""Recyclers' balances of recovered materials: what each has recovered (``recycled`` events) and
how much of it new batteries have declared as their recycled content. Kept in milligrams so that
adding and drawing are exact; the lifecycle rules read them through the batch context."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection, and_, insert, select, update

from batterytrace.store import tables as T


def balance(conn: Connection, recycler: str, material: str) -> tuple[int, int]:
    """(recovered mg, declared mg) of ``material`` at ``recycler``; (0, 0) when it has none."""
    b = T.material_balances
    row = conn.execute(
        select(b.c.recovered_mg, b.c.declared_mg).where(
            and_(b.c.recycler == recycler, b.c.material == material)
        )
    ).first()
    return (int(row.recovered_mg), int(row.declared_mg)) if row is not None else (0, 0)


def add_to_balances(conn: Connection, changes: Mapping[tuple[str, str], tuple[int, int]]) -> None:
    """Add (recovered mg, declared mg) to each (recycler, material) balance, creating it if new.
    Writers are serialized (SQLite's write lock, the log head row on PostgreSQL), so reading a
    balance and then changing it in one transaction cannot race."""
    b = T.material_balances
    for (recycler, material), (recovered, declared) in changes.items():
        where = and_(b.c.recycler == recycler, b.c.material == material)
        done = conn.execute(
            update(b)
            .where(where)
            .values(recovered_mg=b.c.recovered_mg + recovered, declared_mg=b.c.declared_mg + declared)
        )
        if done.rowcount == 0:
            conn.execute(
                insert(b).values(
                    recycler=recycler, material=material, recovered_mg=recovered, declared_mg=declared
                )
            )
