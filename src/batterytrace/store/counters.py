"""Rollup counters: tables keyed by a few columns whose other columns are integers that the
registry adds to in the transaction of each change (the report rollups that monitoring keeps, the
fleet rollup that the batch context keeps)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, insert, select, tuple_, update

from batterytrace.store.repo import chunks


def add_counts(
    conn: Connection,
    table: Table,
    key_columns: Sequence[str],
    deltas: Mapping[tuple[Any, ...], Sequence[int]],
) -> None:
    """Add ``deltas`` (key → one integer per counter column) to the rollup ``table``.

    On SQLite and PostgreSQL this is one bulk ``INSERT … ON CONFLICT DO UPDATE`` adding to the
    counters (both speak it); elsewhere one read of the keys that exist, then one bulk update and
    one bulk insert."""
    items = {k: v for k, v in sorted(deltas.items()) if any(v)}
    if not items:
        return
    counters = [c.name for c in table.columns if c.name not in key_columns]
    upsert = _upsert_insert(conn.dialect.name)
    if upsert is not None:
        rows = []
        for key, values in items.items():
            row = dict(zip(key_columns, key, strict=True))
            row.update(dict(zip(counters, values, strict=True)))
            rows.append(row)
        stmt = upsert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c[k] for k in key_columns],
            set_={c: table.c[c] + stmt.excluded[c] for c in counters},
        )
        conn.execute(stmt, rows)
        return
    key_cols = [table.c[k] for k in key_columns]
    present: set[tuple[Any, ...]] = set()
    keys = list(items)
    for part in chunks(keys, 200):
        for r in conn.execute(select(*key_cols).where(tuple_(*key_cols).in_(list(part)))):
            present.add(tuple(r))
    updates = []
    inserts = []
    for key, values in items.items():
        if key in present:
            row = {f"k_{name}": key[i] for i, name in enumerate(key_columns)}
            row.update({f"d_{name}": values[j] for j, name in enumerate(counters)})
            updates.append(row)
        else:
            row = dict(zip(key_columns, key, strict=True))
            row.update(dict(zip(counters, values, strict=True)))
            inserts.append(row)
    if updates:
        stmt = (
            update(table)
            .where(and_(*[table.c[k] == bindparam(f"k_{k}") for k in key_columns]))
            .values({c: table.c[c] + bindparam(f"d_{c}") for c in counters})
        )
        conn.execute(stmt, updates)
    if inserts:
        conn.execute(insert(table), inserts)


def _upsert_insert(dialect: str) -> Any:
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    return None
