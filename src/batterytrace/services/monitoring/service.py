"""The monitoring use cases: listing alerts, acting on them, re-scanning running deadlines."""

from __future__ import annotations

import weakref
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    and_,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from batterytrace.domain import errors as E
from batterytrace.domain.errors import DomainError
from batterytrace.domain.permissions import Permission
from batterytrace.domain.policy import Profile, get_profile
from batterytrace.services.monitoring import observer, refusals
from batterytrace.services.monitoring import rules as R
from batterytrace.services.monitoring.store import alert_json
from batterytrace.services.registry import Caller, require
from batterytrace.store import tables as T
from batterytrace.store.db import read_transaction, write_transaction
from batterytrace.store.tables import UTCDateTime

if TYPE_CHECKING:
    from batterytrace.services.context import BatchContext
    from batterytrace.services.registry import Registry

_RESCAN_KEY = "alerts.rescan"
#: Alert ids are 32-bit integers on every database.
MAX_ID = 2**31 - 1
_STATUS_FILTERS = {"open": R.OPEN_STATUSES, "closed": R.CLOSED_STATUSES, "all": None}
_INSTALLED: weakref.WeakKeyDictionary[Registry, Monitoring] = weakref.WeakKeyDictionary()


class Monitoring:
    """Alerts for one registry. Build it with :func:`install`."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.profile: Profile = get_profile(registry.settings.monitoring_profile)
        R.calendar()  # prepared once, so no request builds a year table or warns

    # --- observers ------------------------------------------------------------------------------

    def on_events(self, conn: Connection, rows: list[dict[str, Any]], ctx: BatchContext) -> None:
        if rows:
            observer.EventBatch(self.profile, conn, ctx, rows).run()

    def on_refusals(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        refusals.observe(conn, rows)

    # --- running deadlines ------------------------------------------------------------------------

    def rescan(self, now: datetime | None = None) -> dict[str, Any]:
        """Raise the alerts of every running deadline that has passed by ``now`` (the registry's
        clock by default). Conditions that cleared were closed as their events arrived."""
        now = now or self.registry.clock()
        w = T.alert_watches
        a = T.alerts
        overdue_now = and_(w.c.alerted == false(), w.c.deadline < now)
        stamp = literal(now, UTCDateTime())
        raise_them = insert(a).from_select(
            [
                "rule",
                "status",
                "condition_key",
                "battery",
                "vin",
                "enterprise_id",
                "counterparty",
                "province",
                "since",
                "deadline",
                "deadline_basis",
                "detail",
                "evidence",
                "opened_at",
                "updated_at",
            ],
            select(
                w.c.rule,
                cast(literal(R.OPEN), String),
                w.c.condition_key,
                w.c.battery,
                w.c.vin,
                w.c.enterprise_id,
                w.c.counterparty,
                w.c.province,
                w.c.since,
                w.c.deadline,
                w.c.deadline_basis,
                observer.watch_detail_sql(self.profile),
                w.c.evidence,
                stamp,
                stamp,
            ).where(and_(overdue_now, ~exists().where(a.c.condition_key == w.c.condition_key))),
        )
        with write_transaction(self.registry.engine) as conn:
            raised = conn.execute(raise_them.execution_options(preserve_rowcount=True)).rowcount
            overdue = conn.execute(update(w).where(overdue_now).values(alerted=True)).rowcount
            running = int(conn.execute(select(func.count()).select_from(w)).scalar_one())
            _set_state(conn, _RESCAN_KEY, now)
        return {"at": now.isoformat(), "overdue": overdue, "raised": raised, "running_deadlines": running}

    def last_rescan(self) -> datetime | None:
        with read_transaction(self.registry.engine) as conn:
            return _get_state(conn, _RESCAN_KEY)

    def _rescan_if_stale(self) -> None:
        now = self.registry.clock()
        last = self.last_rescan()
        interval = timedelta(seconds=self.registry.settings.alert_rescan_seconds)
        if last is None or now - last >= interval:
            self.rescan(now)

    # --- reading ------------------------------------------------------------------------------

    def list_alerts(
        self,
        caller: Caller | None,
        *,
        rule: str | None = None,
        province: str | None = None,
        enterprise: str | None = None,
        battery: str | None = None,
        vin: str | None = None,
        status: str = "open",
        limit: int = 100,
        after: int | None = None,
        refresh: bool = False,
        operator: bool = False,
    ) -> dict[str, Any]:
        """Alerts, newest first. A regulator sees every alert; an enterprise sees the alerts about
        itself (as the responsible party or the counterparty). ``operator`` is the console at the
        database (the CLI), which sees everything."""
        visible_to = None if operator else _viewer(caller)
        for name, value in (("enterprise", enterprise), ("battery", battery), ("vin", vin)):
            if value is not None and (len(value) > 64 or "\x00" in value):
                raise DomainError(E.REQUEST_INVALID, f"'{name}' is not a valid {name}", field=name)
        if after is not None and not 1 <= after <= MAX_ID:
            raise DomainError(
                E.PAGE_INVALID, "'after' must be an alert id from a previous page", field="after"
            )
        if rule is not None and rule not in R.RULES:
            raise DomainError(E.REQUEST_INVALID, f"'rule' must be one of {', '.join(R.RULES)}", field="rule")
        if status not in _STATUS_FILTERS:
            raise DomainError(E.REQUEST_INVALID, "'status' must be open, closed or all", field="status")
        if province is not None and not (len(province) == 2 and province.isdigit()):
            raise DomainError(
                E.REQUEST_INVALID, "'province' must be a 2-digit province code", field="province"
            )
        max_page = self.registry.settings.max_page_size
        if not 1 <= limit <= max_page:
            raise DomainError(E.PAGE_INVALID, f"'limit' must be between 1 and {max_page}", field="limit")
        if refresh:
            self.rescan()
        else:
            self._rescan_if_stale()
        a = T.alerts
        conds: list[ColumnElement[bool]] = []
        statuses = _STATUS_FILTERS[status]
        if statuses is not None:
            conds.append(a.c.status.in_(statuses))
        if rule is not None:
            conds.append(a.c.rule == rule)
        if province is not None:
            conds.append(a.c.province == province)
        if enterprise is not None:
            conds.append(or_(a.c.enterprise_id == enterprise, a.c.counterparty == enterprise))
        if battery is not None:
            conds.append(a.c.battery == battery)
        if vin is not None:
            conds.append(a.c.vin == vin)
        if visible_to is not None:
            conds.append(or_(a.c.enterprise_id == visible_to, a.c.counterparty == visible_to))
        where = and_(*conds) if conds else None
        stmt = select(a).order_by(a.c.id.desc()).limit(limit + 1)
        count = select(func.count()).select_from(a)
        if where is not None:
            stmt = stmt.where(where)
            count = count.where(where)
        if after is not None:
            stmt = stmt.where(a.c.id < after)
        with read_transaction(self.registry.engine) as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
            total = int(conn.execute(count).scalar_one()) if after is None else None
        more = len(rows) > limit
        rows = rows[:limit]
        return {
            "items": [alert_json(r) for r in rows],
            "next_cursor": rows[-1]["id"] if more else None,
            "total": total,
        }

    def get_alert(self, caller: Caller | None, alert_id: int, *, operator: bool = False) -> dict[str, Any]:
        visible_to = None if operator else _viewer(caller)
        with read_transaction(self.registry.engine) as conn:
            row = _load(conn, alert_id, visible_to)
        return alert_json(row)

    # --- acting on alerts ---------------------------------------------------------------------

    def acknowledge(self, caller: Caller, alert_id: int, reason: str | None = None) -> dict[str, Any]:
        """A regulator has seen the alert; it stays open while its condition holds."""
        return self._act(caller, alert_id, "acknowledge", reason)

    def resolve(self, caller: Caller, alert_id: int, reason: str) -> dict[str, Any]:
        """A regulator settles the alert with a reason; the same condition is not raised again
        while it lasts."""
        if not isinstance(reason, str) or not reason.strip():
            raise DomainError(E.REQUEST_INVALID, "'reason' is required to resolve an alert", field="reason")
        return self._act(caller, alert_id, "resolve", reason)

    def _act(self, caller: Caller, alert_id: int, action: str, reason: str | None) -> dict[str, Any]:
        require(caller, Permission.ALERT_MANAGE)
        if not caller.enterprise.is_regulator:
            raise DomainError(E.PERMISSION_DENIED, "only a regulator acknowledges or resolves alerts")
        if reason is not None and len(reason) > 2000:
            raise DomainError(E.REQUEST_INVALID, "'reason' may hold at most 2000 characters", field="reason")
        now = self.registry.clock()
        a = T.alerts
        with write_transaction(self.registry.engine) as conn:
            row = _load(conn, alert_id, None)
            status = row["status"]
            if action == "acknowledge":
                if status != R.OPEN:
                    raise DomainError(
                        E.REQUEST_INVALID,
                        f"alert {alert_id} is {status}: only an open alert can be acknowledged",
                        field="id",
                    )
                values: dict[str, Any] = {
                    "status": R.ACKNOWLEDGED,
                    "acknowledged_at": now,
                    "acknowledged_by": caller.id,
                }
            else:
                if status == R.RESOLVED:
                    raise DomainError(E.REQUEST_INVALID, f"alert {alert_id} is already resolved", field="id")
                values = {
                    "status": R.RESOLVED,
                    "resolved_at": now,
                    "resolved_by": caller.id,
                    "resolution": reason,
                }
            entry = {
                "kind": "alert_action",
                "alert": {
                    "id": alert_id,
                    "rule": row["rule"],
                    "battery": row["battery"],
                    "enterprise": row["enterprise_id"],
                    "action": action,
                    "status_before": status,
                    "by": caller.id,
                    "reason": reason,
                    "at": now.isoformat(),
                },
            }
            appended = self.registry.log.append(conn, [("alert", str(alert_id), entry)], now)
            conn.execute(update(a).where(a.c.id == alert_id).values(updated_at=now, **values))
            row = _load(conn, alert_id, None)
        out = alert_json(row)
        out["log_index"] = appended.first_index
        return out


def _viewer(caller: Caller | None) -> str | None:
    """None for a regulator (sees everything), else the enterprise whose alerts may be shown."""
    caller = require(caller, Permission.ALERT_READ)
    return None if caller.enterprise.is_regulator else caller.id


def _load(conn: Connection, alert_id: int, visible_to: str | None) -> dict[str, Any]:
    a = T.alerts
    row = conn.execute(select(a).where(a.c.id == alert_id)).first() if 1 <= alert_id <= MAX_ID else None
    if row is None or (visible_to is not None and visible_to not in (row.enterprise_id, row.counterparty)):
        raise DomainError(E.NOT_FOUND, f"no alert {alert_id}", field="id")
    return dict(row._mapping)


def _get_state(conn: Connection, key: str) -> datetime | None:
    s = T.monitor_state
    return conn.execute(select(s.c.at).where(s.c.key == key)).scalar_one_or_none()


def _set_state(conn: Connection, key: str, at: datetime) -> None:
    s = T.monitor_state
    if conn.execute(update(s).where(s.c.key == key).values(at=at)).rowcount == 0:
        conn.execute(s.insert().values(key=key, at=at))


def install(registry: Registry) -> Monitoring:
    """Watch the registry's events and refused attempts; returns the monitoring service."""
    found = _INSTALLED.get(registry)
    if found is not None:
        return found
    monitoring = Monitoring(registry)
    registry.observers.append(monitoring.on_events)
    registry.refusal_observers.append(monitoring.on_refusals)
    _INSTALLED[registry] = monitoring
    return monitoring


def monitoring_for(registry: Registry) -> Monitoring:
    """The monitoring installed on ``registry`` (installing it if it is not yet)."""
    return _INSTALLED.get(registry) or install(registry)
