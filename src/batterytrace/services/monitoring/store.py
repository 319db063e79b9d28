"""Reading and writing alerts and deadline watches, inside the caller's transaction. Every write
is a bulk statement per batch, never a statement per event. (The rollup counters are added with
:func:`batterytrace.store.counters.add_counts`.)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, select, update

from batterytrace.services import views
from batterytrace.services.monitoring.rules import CLOSED, OPEN, OPEN_STATUSES, RULES
from batterytrace.store import bulk
from batterytrace.store import tables as T
from batterytrace.store.repo import chunks

#: Evidence kept on one alert, at most (the newest are kept).
MAX_EVIDENCE = 50


def grams(kg: Any) -> int:
    """Kilograms as whole grams (rollups count integers, so sums never drift)."""
    if isinstance(kg, bool) or not isinstance(kg, int | float):
        return 0
    return round(kg * 1000)


def event_evidence(row: Mapping[str, Any], relation: str = "cause") -> dict[str, Any]:
    """An accepted event as evidence on an alert."""
    recorded = row.get("recorded_at")
    item: dict[str, Any] = {
        "relation": relation,
        "event": row["id"],
        "type": row["type"],
        "time": row["time_text"],
        "recorded_at": recorded.isoformat() if isinstance(recorded, datetime) else recorded,
        "actor": row["actor"],
    }
    if row.get("battery"):
        item["battery"] = row["battery"]
    if row.get("vin"):
        item["vin"] = row["vin"]
    return item


def refusal_evidence(row: Mapping[str, Any]) -> dict[str, Any]:
    """A refused attempt (a ``security_events`` row) as evidence on an alert."""
    at = row.get("at")
    return {
        "relation": "attempt",
        "event": row.get("event_id"),
        "type": row.get("event_type"),
        "battery": row.get("battery"),
        "actor": row.get("enterprise_id"),
        "refused_at": at.isoformat() if isinstance(at, datetime) else at,
        "code": row.get("code"),
        "detail": row.get("detail"),
    }


@dataclass
class NewAlert:
    """An alert to raise for a condition, unless one is already raised for it."""

    rule: str
    key: str
    since: datetime
    detail: str
    evidence: list[dict[str, Any]]
    battery: str | None = None
    vin: str | None = None
    enterprise_id: str | None = None
    counterparty: str | None = None
    province: str | None = None
    deadline: datetime | None = None
    deadline_basis: str | None = None
    #: What to do when the condition already has an alert: "keep" it as it is, "append" the
    #: evidence, or "refresh" detail and evidence (figures that changed).
    merge: str = "keep"
    extra: dict[str, Any] = field(default_factory=dict)


def open_alerts(conn: Connection, alerts: Sequence[NewAlert], now: datetime) -> int:
    """Raise alerts for conditions that have none yet; returns how many were raised."""
    by_key: dict[str, NewAlert] = {}
    for a in alerts:
        prior = by_key.get(a.key)
        if prior is not None and a.merge == "append":
            prior.evidence = (prior.evidence + a.evidence)[-MAX_EVIDENCE:]
        else:
            by_key[a.key] = a
    if not by_key:
        return 0
    existing: dict[str, Any] = {}
    a_t = T.alerts
    for part in chunks(sorted(by_key)):
        stmt = select(a_t.c.id, a_t.c.condition_key, a_t.c.evidence).where(a_t.c.condition_key.in_(part))
        for r in conn.execute(stmt):
            existing[r.condition_key] = r
    new_rows = []
    changed = []
    for key, a in by_key.items():
        found = existing.get(key)
        if found is None:
            new_rows.append(
                {
                    "rule": a.rule,
                    "status": OPEN,
                    "condition_key": key,
                    "battery": a.battery,
                    "vin": a.vin,
                    "enterprise_id": a.enterprise_id,
                    "counterparty": a.counterparty,
                    "province": a.province,
                    "since": a.since,
                    "deadline": a.deadline,
                    "deadline_basis": a.deadline_basis,
                    "detail": a.detail,
                    "evidence": a.evidence[-MAX_EVIDENCE:],
                    "opened_at": now,
                    "updated_at": now,
                }
            )
        elif a.merge == "append":
            seen = {(e.get("relation"), e.get("event"), e.get("refused_at")) for e in found.evidence}
            more = [
                e for e in a.evidence if (e.get("relation"), e.get("event"), e.get("refused_at")) not in seen
            ]
            if more:
                changed.append(
                    {
                        "a_id": found.id,
                        "evidence": (list(found.evidence) + more)[-MAX_EVIDENCE:],
                        "detail": a.detail,
                    }
                )
        elif a.merge == "refresh":
            changed.append({"a_id": found.id, "evidence": a.evidence[-MAX_EVIDENCE:], "detail": a.detail})
    if new_rows:
        bulk.insert_rows(conn, a_t, new_rows)
    if changed:
        for row in changed:
            row["updated_at"] = now
        conn.execute(
            update(a_t)
            .where(a_t.c.id == bindparam("a_id"))
            .values(
                evidence=bindparam("evidence"), detail=bindparam("detail"), updated_at=bindparam("updated_at")
            ),
            changed,
        )
    return len(new_rows)


def close_alerts(
    conn: Connection,
    keys: Iterable[str],
    now: datetime,
    reasons: Mapping[str, str] | str,
    clearing: Mapping[str, dict[str, Any]] | None = None,
) -> int:
    """The conditions named by ``keys`` have cleared: close their open alerts (a resolved alert
    keeps its resolution) and free the keys. Returns how many alerts closed."""
    wanted = sorted(set(keys))
    if not wanted:
        return 0
    a_t = T.alerts
    found = []
    for part in chunks(wanted):
        stmt = select(a_t.c.id, a_t.c.status, a_t.c.condition_key, a_t.c.evidence).where(
            a_t.c.condition_key.in_(part)
        )
        found += list(conn.execute(stmt))
    if not found:
        return 0
    updates = []
    closed = 0
    for r in found:
        reason = (
            reasons if isinstance(reasons, str) else reasons.get(r.condition_key, "the condition cleared")
        )
        evidence = list(r.evidence)
        item = (clearing or {}).get(r.condition_key)
        if item is not None:
            evidence = [*evidence, item][-MAX_EVIDENCE:]
        is_open = r.status in OPEN_STATUSES
        closed += is_open
        updates.append(
            {
                "a_id": r.id,
                "status": CLOSED if is_open else r.status,
                "closed_at": now,
                "close_reason": reason,
                "evidence": evidence,
                "updated_at": now,
            }
        )
    conn.execute(
        update(a_t)
        .where(a_t.c.id == bindparam("a_id"))
        .values(
            status=bindparam("status"),
            condition_key=None,
            closed_at=bindparam("closed_at"),
            close_reason=bindparam("close_reason"),
            evidence=bindparam("evidence"),
            updated_at=bindparam("updated_at"),
        ),
        updates,
    )
    return closed


def alert_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An alert as the API and the CLI show it."""
    rule = RULES.get(row["rule"])
    return {
        "id": row["id"],
        "rule": row["rule"],
        "title": rule.title if rule else row["rule"],
        "status": row["status"],
        "open": row["status"] in OPEN_STATUSES,
        "battery": row["battery"],
        "vin": row["vin"],
        "enterprise": row["enterprise_id"],
        "counterparty": row["counterparty"],
        "province": row["province"],
        "since": views.jsonable(row["since"]),
        "deadline": views.jsonable(row["deadline"]),
        "deadline_basis": row["deadline_basis"],
        "detail": row["detail"],
        "evidence": row["evidence"],
        "opened_at": views.jsonable(row["opened_at"]),
        "updated_at": views.jsonable(row["updated_at"]),
        "closed_at": views.jsonable(row["closed_at"]),
        "close_reason": row["close_reason"],
        "acknowledged_at": views.jsonable(row["acknowledged_at"]),
        "acknowledged_by": row["acknowledged_by"],
        "resolved_at": views.jsonable(row["resolved_at"]),
        "resolved_by": row["resolved_by"],
        "resolution": row["resolution"],
    }


# --- watches -----------------------------------------------------------------------------------


def load_watches(conn: Connection, codes: Iterable[str]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    w = T.alert_watches
    for part in chunks(sorted(set(codes))):
        for r in conn.execute(select(w).where(w.c.battery.in_(part))):
            out[(r.battery, r.rule)] = dict(r._mapping)
    return out


def delete_watches(conn: Connection, keys: Sequence[tuple[str, str]]) -> None:
    if keys:
        w = T.alert_watches
        conn.execute(
            delete(w).where(and_(w.c.battery == bindparam("k_battery"), w.c.rule == bindparam("k_rule"))),
            [{"k_battery": b, "k_rule": r} for b, r in keys],
        )


def insert_watches(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    bulk.insert_rows(conn, T.alert_watches, rows)


def update_watches(conn: Connection, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Set ``columns`` on watches, each row naming its watch by ``battery`` and ``rule``."""
    if not rows:
        return
    w = T.alert_watches
    stmt = (
        update(w)
        .where(and_(w.c.battery == bindparam("k_battery"), w.c.rule == bindparam("k_rule")))
        .values({c: bindparam(f"v_{c}") for c in columns})
    )
    params = []
    for row in rows:
        p = {"k_battery": row["battery"], "k_rule": row["rule"]}
        p.update({f"v_{c}": row[c] for c in columns})
        params.append(p)
    conn.execute(stmt, params)
