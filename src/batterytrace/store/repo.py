"""Reading and writing the registry's rows. Functions take an open connection; the caller owns
the transaction (one use case, one transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, false, insert, or_, select, update

from batterytrace.domain.lifecycle import PastEvent
from batterytrace.domain.model import (
    BatteryState,
    Enterprise,
    EventType,
    Licence,
    Link,
    Role,
    Scope,
    VehicleState,
)
from batterytrace.domain.snapshots import (
    BATTERY_FIELDS,
    VEHICLE_FIELDS,
    battery_from_dict,
    vehicle_from_dict,
)
from batterytrace.store import bulk
from batterytrace.store import tables as T

CHUNK = 500  # bound for IN (...) lists


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def pairs_in(first: Any, second: Any, pairs: Iterable[tuple[Any, Any]]) -> ColumnElement[bool]:
    """``(first, second) IN pairs`` written so that both databases use a two-column index:
    ``first = a AND second IN (...) OR ...``. (SQLite scans the whole table for a row-value
    ``IN (VALUES ...)``; PostgreSQL plans both forms alike.)"""
    grouped: dict[Any, list[Any]] = {}
    for a, b in pairs:
        grouped.setdefault(a, []).append(b)
    return or_(false(), *(and_(first == a, second.in_(bs)) for a, bs in grouped.items()))  # none: no rows


# --- enterprises ------------------------------------------------------------------------------


def _licence(row: Mapping[str, Any]) -> Licence:
    return Licence(
        id=row["id"],
        enterprise_id=row["enterprise_id"],
        scope=Scope(row["scope"]),
        valid_from=row["valid_from"],
        valid_to=row["valid_to"],
        region=row["region"],
        revoked=bool(row["revoked"]),
    )


def load_enterprises(conn: Connection, ids: Iterable[str]) -> dict[str, Enterprise]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    rows: list[Mapping[str, Any]] = []
    codes: dict[str, set[str]] = {}
    lics: dict[str, list[Licence]] = {}
    for part in chunks(wanted):
        rows += [r._mapping for r in conn.execute(select(T.enterprises).where(T.enterprises.c.id.in_(part)))]
        for r in conn.execute(
            select(T.manufacturer_codes).where(T.manufacturer_codes.c.enterprise_id.in_(part))
        ):
            codes.setdefault(r.enterprise_id, set()).add(r.code)
        for r in conn.execute(select(T.licences).where(T.licences.c.enterprise_id.in_(part))):
            lics.setdefault(r.enterprise_id, []).append(_licence(r._mapping))
    out: dict[str, Enterprise] = {}
    for row in rows:
        out[row["id"]] = Enterprise(
            id=row["id"],
            name=row["name"],
            roles=frozenset(Role(r) for r in row["roles"]),
            region=row["region"],
            manufacturer_codes=frozenset(codes.get(row["id"], set())),
            network_of=row["network_of"],
            licences=tuple(sorted(lics.get(row["id"], []), key=lambda lic: lic.id)),
        )
    return out


def load_enterprise(conn: Connection, enterprise_id: str) -> Enterprise | None:
    return load_enterprises(conn, [enterprise_id]).get(enterprise_id)


def manufacturer_owners(conn: Connection, codes: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(codes))
    out: dict[str, str] = {}
    for part in chunks(wanted):
        for r in conn.execute(select(T.manufacturer_codes).where(T.manufacturer_codes.c.code.in_(part))):
            out[r.code] = r.enterprise_id
    return out


def count_enterprises(conn: Connection) -> int:
    from sqlalchemy import func

    return int(conn.execute(select(func.count()).select_from(T.enterprises)).scalar_one())


def licence_rows(conn: Connection, enterprise_id: str) -> list[dict[str, Any]]:
    stmt = select(T.licences).where(T.licences.c.enterprise_id == enterprise_id).order_by(T.licences.c.id)
    return [dict(r._mapping) for r in conn.execute(stmt)]


# --- batteries and vehicles ---------------------------------------------------------------------


def _battery_row(state: BatteryState) -> dict[str, Any]:
    row = {name: getattr(state, name) for name in BATTERY_FIELDS}
    row["stage"] = str(state.stage)
    row["stage_before_missing"] = str(state.stage_before_missing) if state.stage_before_missing else None
    return row


def load_batteries(conn: Connection, codes: Iterable[str]) -> dict[str, BatteryState]:
    wanted = sorted(set(codes))
    out: dict[str, BatteryState] = {}
    for part in chunks(wanted):
        for r in conn.execute(select(T.batteries).where(T.batteries.c.code.in_(part))):
            out[r.code] = battery_from_dict(dict(r._mapping))
    return out


def load_vehicles(conn: Connection, vins: Iterable[str]) -> dict[str, VehicleState]:
    wanted = sorted(set(vins))
    out: dict[str, VehicleState] = {}
    for part in chunks(wanted):
        for r in conn.execute(select(T.vehicles).where(T.vehicles.c.vin.in_(part))):
            out[r.vin] = vehicle_from_dict(dict(r._mapping))
    return out


def components(conn: Connection, code: str) -> list[str]:
    stmt = (
        select(T.battery_links.c.child)
        .where(and_(T.battery_links.c.parent == code, T.battery_links.c.kind == "component"))
        .order_by(T.battery_links.c.child)
    )
    return [r.child for r in conn.execute(stmt)]


def links_of(conn: Connection, code: str) -> dict[str, list[str]]:
    """A battery's lineage: its components, the battery it is part of, its origins and products."""
    out: dict[str, list[str]] = {"children": [], "parents": [], "origins": [], "products": []}
    for r in conn.execute(select(T.battery_links).where(T.battery_links.c.parent == code)):
        out["children" if r.kind == "component" else "products"].append(r.child)
    for r in conn.execute(select(T.battery_links).where(T.battery_links.c.child == code)):
        out["parents" if r.kind == "component" else "origins"].append(r.parent)
    for v in out.values():
        v.sort()
    return out


def save_batteries(conn: Connection, new: Sequence[BatteryState], changed: Sequence[BatteryState]) -> None:
    if new:
        bulk.insert_rows(conn, T.batteries, [_battery_row(s) for s in new])
    if changed:
        bulk.update_rows(conn, T.batteries, "code", [_battery_row(s) for s in changed])


def _bind(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name)


def delete_batteries(conn: Connection, codes: Sequence[str]) -> None:
    for part in chunks(list(codes)):
        conn.execute(delete(T.batteries).where(T.batteries.c.code.in_(part)))


def save_vehicles(conn: Connection, new: Sequence[VehicleState], changed: Sequence[VehicleState]) -> None:
    def row(v: VehicleState) -> dict[str, Any]:
        return {name: getattr(v, name) for name in VEHICLE_FIELDS}

    if new:
        conn.execute(insert(T.vehicles), [row(v) for v in new])
    if changed:
        cols = [c for c in VEHICLE_FIELDS if c != "vin"]
        stmt = (
            update(T.vehicles).where(T.vehicles.c.vin == _bind("v_vin")).values({c: _bind(c) for c in cols})
        )
        rows = []
        for v in changed:
            r = row(v)
            r["v_vin"] = r.pop("vin")
            rows.append(r)
        conn.execute(stmt, rows)


def delete_vehicles(conn: Connection, vins: Sequence[str]) -> None:
    if vins:
        conn.execute(delete(T.vehicles).where(T.vehicles.c.vin.in_(list(vins))))


def add_links(conn: Connection, links: Sequence[Link]) -> None:
    if links:
        conn.execute(
            insert(T.battery_links),
            [{"parent": ln.parent, "child": ln.child, "kind": ln.kind} for ln in links],
        )


def remove_links(conn: Connection, links: Sequence[Link]) -> None:
    for ln in links:
        conn.execute(
            delete(T.battery_links).where(
                and_(
                    T.battery_links.c.parent == ln.parent,
                    T.battery_links.c.child == ln.child,
                    T.battery_links.c.kind == ln.kind,
                )
            )
        )


# --- events -------------------------------------------------------------------------------------


def events_by_id(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = sorted(set(ids))
    out: dict[str, dict[str, Any]] = {}
    for part in chunks(wanted):
        for r in conn.execute(select(T.events).where(T.events.c.id.in_(part))):
            out[r.id] = dict(r._mapping)
    return out


def retracted_ids(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(ids))
    out: dict[str, str] = {}
    for part in chunks(wanted):
        for r in conn.execute(select(T.retractions).where(T.retractions.c.event_id.in_(part))):
            out[r.event_id] = r.retracted_by
    return out


def past_event(conn: Connection, event_id: str) -> PastEvent | None:
    row = events_by_id(conn, [event_id]).get(event_id)
    if row is None:
        return None
    retracted = bool(retracted_ids(conn, [event_id]))
    return PastEvent(
        id=row["id"],
        type=EventType(row["type"]),
        actor=row["actor"],
        battery=row["battery"],
        vin=row["vin"],
        undo=row["undo"] or {},
        retracted=retracted,
    )


def insert_events(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    bulk.insert_rows(conn, T.events, rows)


def insert_retractions(conn: Connection, pairs: Sequence[tuple[str, str]]) -> None:
    if pairs:
        conn.execute(insert(T.retractions), [{"event_id": a, "retracted_by": b} for a, b in pairs])


def record_security_events(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        conn.execute(insert(T.security_events), list(rows))


def battery_event_rows(conn: Connection, code: str) -> list[dict[str, Any]]:
    stmt = (
        select(T.events).where(T.events.c.battery == code).order_by(T.events.c.time_utc, T.events.c.log_index)
    )
    rows = [dict(r._mapping) for r in conn.execute(stmt)]
    # events that name the battery in their data (assembled children, repurposed into)
    return rows


def log_nodes(conn: Connection, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    out: dict[tuple[int, int], bytes] = {}
    for part in chunks(list(keys), 200):
        stmt = select(T.log_nodes).where(pairs_in(T.log_nodes.c.level, T.log_nodes.c.idx, part))
        for r in conn.execute(stmt):
            out[(r.level, r.idx)] = bytes(r.hash)
    return out


def now_iso(t: datetime) -> str:
    return t.isoformat()
