"""An enterprise's own page: its record and licences, its batteries, the shipments waiting for
it to receive them, the waste it must hand on, and its alerts, with the policy's deadlines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from batterytrace.domain.model import Stage
from batterytrace.domain.policy import get_profile
from batterytrace.domain.workdays import CHINA_STANDARD_TIME, WorkingDayCalendar, default_calendar
from batterytrace.services.registry import Caller, Registry
from batterytrace.web import dashboard_data

PAGE_SIZE = 50
#: Most rows shown in the lists of things waiting for the enterprise.
WAITING_LIMIT = 500


@dataclass(frozen=True)
class Due:
    """Something the enterprise must do about a battery by a deadline."""

    battery: dict[str, Any]
    since: str  # the day the clock started (shipped, retired)
    working_days: int
    due: date | None  # None when the holiday calendar for the year is not published yet
    overdue: bool


@dataclass(frozen=True)
class EnterpriseView:
    enterprise: dict[str, Any]
    batteries: dict[str, Any]  # a page of list_batteries: items, next_cursor, total
    incoming: list[Due]
    waste: list[Due]
    licensed: bool
    alerts: list[dashboard_data.AlertRow]


def due_date(calendar: WorkingDayCalendar, start: datetime, working_days: int) -> date | None:
    """The last day of a deadline of ``working_days`` after ``start``, when the official holiday
    calendar covers it (a deadline on guessed holidays would mislead)."""
    day = start.astimezone(CHINA_STANDARD_TIME).date()
    if not calendar.is_official(day.year):
        return None
    within_year = calendar.working_days_between(day, date(day.year, 12, 31)) >= working_days
    if not within_year and not calendar.is_official(day.year + 1):
        return None
    return calendar.add_working_days(day, working_days)


def _due(battery: dict[str, Any], start_field: str, working_days: int, today: date) -> Due:
    raw = battery.get(start_field)
    start = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    due = due_date(default_calendar(), start, working_days) if start is not None else None
    return Due(
        battery=battery,
        since=raw[:10] if isinstance(raw, str) else "",
        working_days=working_days,
        due=due,
        overdue=due is not None and due < today,
    )


def load(registry: Registry, caller: Caller, *, after: str | None = None) -> EnterpriseView:
    profile = get_profile()
    now = registry.clock()
    today = now.astimezone(CHINA_STANDARD_TIME).date()
    me = caller.id
    record = registry.get_enterprise(caller, me)
    licensed = caller.enterprise.licensed_any(now.date())
    page = registry.list_batteries(caller, filters={"holder": None}, limit=PAGE_SIZE, after=after)
    incoming_page = registry.list_batteries(caller, filters={"in_transit_to": me}, limit=WAITING_LIMIT)
    # The recipient sees its incoming batteries at the authority tier, so the shipping time shows.
    incoming = [
        _due(b, "last_event_time", profile.transfer_deadline_wd, today) for b in incoming_page["items"]
    ]
    waste: list[Due] = []
    if not licensed:
        held = registry.list_batteries(
            caller, filters={"holder": me, "stage": Stage.RETIRED.value}, limit=WAITING_LIMIT
        )
        waste = [_due(b, "retired_at", profile.collection_deadline_wd, today) for b in held["items"]]
    alerts = dashboard_data.enterprise_alerts(registry, caller)
    return EnterpriseView(
        enterprise=record,
        batteries=page,
        incoming=sorted(incoming, key=lambda d: (d.due or date.max, d.battery["code"])),
        waste=sorted(waste, key=lambda d: (d.due or date.max, d.battery["code"])),
        licensed=licensed,
        alerts=alerts,
    )
