"""The alert rules the regulator sees, and the working-day deadlines they count.

Each rule has a stable name (clients filter on it), a title, and the source of its deadline in
the policy profile. The rules are evaluated by :mod:`batterytrace.services.monitoring.observer`
as events arrive, by :mod:`batterytrace.services.monitoring.refusals` as refused attempts are
kept, and by :meth:`Monitoring.rescan` for deadlines that pass with nothing happening.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache

from batterytrace.domain import errors as E
from batterytrace.domain.workdays import CHINA_STANDARD_TIME, CalendarFallbackWarning, WorkingDayCalendar

logger = logging.getLogger("batterytrace.monitoring")

SHIPMENT_OVERDUE = "shipment_overdue"
COLLECTION_OVERDUE = "collection_overdue"
LATE_REPORT = "late_report"
SCRAPPED_VEHICLE_BATTERY = "scrapped_vehicle_battery"
UNLICENSED_RECEIVER = "unlicensed_receiver"
SUSPECTED_CLONE = "suspected_clone"
MASS_BALANCE = "mass_balance"
RECOVERY_BELOW_THRESHOLD = "recovery_below_threshold"


@dataclass(frozen=True)
class Rule:
    name: str
    title: str
    deadline: str  # where the deadline or threshold comes from


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(SHIPMENT_OVERDUE, "Shipment not received in time", "transfer_deadline_wd"),
        Rule(
            COLLECTION_OVERDUE,
            "Retired battery not with a licensed facility in time",
            "collection_deadline_wd",
        ),
        Rule(LATE_REPORT, "Event reported after its reporting deadline", "reporting_deadlines"),
        Rule(
            SCRAPPED_VEHICLE_BATTERY,
            "Scrapped vehicle's battery missing or not collected in time",
            "scrapped_vehicle_deadline_wd",
        ),
        Rule(UNLICENSED_RECEIVER, "Waste battery offered to an unlicensed party", "none (immediate)"),
        Rule(
            SUSPECTED_CLONE,
            "Event from a party that does not hold the battery (cloned or forged code)",
            "none (immediate)",
        ),
        Rule(MASS_BALANCE, "More metal recovered than the battery contained", "none (immediate)"),
        Rule(RECOVERY_BELOW_THRESHOLD, "Recycler below the recovery thresholds", "recovery_thresholds"),
    )
}

#: Alert statuses. An alert is open (or acknowledged) while its condition holds; it closes by
#: itself when the condition clears, or a regulator resolves it with a reason.
OPEN = "open"
ACKNOWLEDGED = "acknowledged"
CLOSED = "closed"
RESOLVED = "resolved"
OPEN_STATUSES = (OPEN, ACKNOWLEDGED)
CLOSED_STATUSES = (CLOSED, RESOLVED)

#: Refused attempts that show a party acting on a battery it does not hold: a copied label or a
#: code made up under someone else's manufacturer code.
CLONE_CODES = frozenset({E.NOT_HOLDER, E.NOT_MANUFACTURER, E.BATTERY_EXISTS, E.NOT_IN_TRANSIT_TO_ACTOR})

#: Deadline basis: every day counted follows the State Council's notice, or some year has no
#: official data yet and its working days are Monday to Friday.
OFFICIAL = "official"
WEEKENDS_ONLY = "weekends_only"

#: Years without holiday data prepared when the calendar is built (a later one warns at run time).
_CALENDAR_YEARS = range(1990, 2101)


@lru_cache(maxsize=1)
def calendar() -> WorkingDayCalendar:
    """The working-day calendar monitoring counts with.

    Every year the ``chinese-calendar`` package has no holiday data for is prepared here, once,
    and its fallback warning is caught and logged: deadlines that count such a year are marked
    ``weekends_only`` on the alert instead of warning on each request.
    """
    cal = WorkingDayCalendar()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CalendarFallbackWarning)
        for year in _CALENDAR_YEARS:
            if not cal.is_official(year):
                cal.is_working_day(date(year, 1, 1))
    fallback = sorted(w.message.year for w in caught if isinstance(w.message, CalendarFallbackWarning))
    if fallback:
        logger.info(
            "working-day deadlines in years without holiday data (%s to %s) count Monday to Friday; "
            "alerts mark them deadline_basis=weekends_only",
            fallback[0],
            fallback[-1],
        )
    return cal


def deadline(since: datetime, working_days: int) -> tuple[datetime, str]:
    """The end (23:59:59.999999 China Standard Time) of the ``working_days``-th working day after
    ``since``'s day, and whether every year it counts through is official."""
    if since.tzinfo is None or since.utcoffset() is None:
        return calendar().deadline_for(since, working_days), OFFICIAL  # refuses it with a DomainError
    return _deadline_after(cst_day(since), working_days)


@lru_cache(maxsize=8192)
def _deadline_after(day: date, working_days: int) -> tuple[datetime, str]:
    cal = calendar()
    end = datetime.combine(cal.add_working_days(day, working_days), time.max, tzinfo=CHINA_STANDARD_TIME)
    basis = OFFICIAL if all(cal.is_official(y) for y in range(day.year, end.year + 1)) else WEEKENDS_ONLY
    return end, basis


def cst_year(moment: datetime) -> int:
    """The calendar year of ``moment`` in China Standard Time."""
    return moment.astimezone(CHINA_STANDARD_TIME).year


def cst_day(moment: datetime) -> date:
    return moment.astimezone(CHINA_STANDARD_TIME).date()
