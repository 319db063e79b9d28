"""Bulk inserts and updates straight through the database driver's ``executemany``.

The hot tables (events, batteries, log entries and nodes) take thousands of rows per batch;
SQLAlchemy's per-row parameter processing costs more than the database's own work there. These
helpers convert each value once, exactly as the SQLAlchemy column types would store it (so rows
read back through SQLAlchemy are identical), and hand plain tuples to the driver.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, Date, Table

from batterytrace.store.tables import UTCDateTime

Converter = Callable[[Any], Any]


def _sqlite_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _pg_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None)


def _sqlite_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _sqlite_bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


def _sqlite_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _pg_json(value: Any) -> Any:
    if value is None:
        return None
    from psycopg.types.json import Json

    return Json(value)


def _identity(value: Any) -> Any:
    return value


@cache
def _plan(table: Table, dialect: str, columns: tuple[str, ...]) -> tuple[str, tuple[Converter, ...]]:
    converters: list[Converter] = []
    for name in columns:
        col_type = table.c[name].type
        if isinstance(col_type, UTCDateTime):
            converters.append(_sqlite_time if dialect == "sqlite" else _pg_time)
        elif isinstance(col_type, JSON):
            converters.append(_sqlite_json if dialect == "sqlite" else _pg_json)
        elif isinstance(col_type, Boolean) and dialect == "sqlite":
            converters.append(_sqlite_bool)
        elif isinstance(col_type, Date) and dialect == "sqlite":
            converters.append(_sqlite_date)
        else:
            converters.append(_identity)
    mark = "?" if dialect == "sqlite" else "%s"
    return mark, tuple(converters)


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT ``rows`` (all with the same keys) into ``table``."""
    if not rows:
        return
    dialect = conn.dialect.name
    columns = tuple(rows[0].keys())
    mark, converters = _plan(table, dialect, columns)
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
    pairs = list(zip(columns, converters, strict=True))
    params = [tuple(conv(row[name]) for name, conv in pairs) for row in rows]
    conn.exec_driver_sql(sql, params)


def update_rows(conn: Connection, table: Table, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """UPDATE ``table`` SET every other column WHERE ``key`` = row[key], for each row."""
    if not rows:
        return
    dialect = conn.dialect.name
    columns = tuple(c for c in rows[0] if c != key)
    mark, converters = _plan(table, dialect, (*columns, key))
    assignments = ", ".join(f"{c} = {mark}" for c in columns)
    sql = f"UPDATE {table.name} SET {assignments} WHERE {key} = {mark}"
    names = (*columns, key)
    pairs = list(zip(names, converters, strict=True))
    params = [tuple(conv(row[name]) for name, conv in pairs) for row in rows]
    conn.exec_driver_sql(sql, params)
