"""Chinese working days, for reporting and custody deadlines.

A working day is a day the State Council's holiday notice for that year has people at work:
Monday to Friday unless it is a public holiday, plus the adjusted working weekends (调休上班).
The official dates come from the ``chinese-calendar`` package. For a year the package has no
data for (it knows 2004-2026 at version 1.11.0; the notice for a year is published in November
of the year before), the calendar falls back to Monday-Friday for that year and warns once
with :class:`CalendarFallbackWarning`; it never fails on such a year.

Counting rule: a deadline of *n* working days after a day is the *n*-th working day **after**
that day; the day itself is not counted, whether or not it is a working day. This follows the
Civil Code of the PRC Art. 201 (a period counted in days starts on the next day) and Art. 203
(the last day of a period ends at 24:00) [M]. So 5 working days after Wed 2026-09-30 is
Tue 2026-10-13 (1-7 Oct are the National Day holiday, Sat 10 Oct is worked).

Days are calendar days in China Standard Time (UTC+8); :meth:`WorkingDayCalendar.deadline_for`
converts an event time with any offset before counting.

Speed: the calendar builds, once per year, a table of that year's working days (a flag per day
and the sorted day ordinals), so a look-up is an index and adding working days is a bisection.
"""

from __future__ import annotations

import threading
import warnings
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

import chinese_calendar  # type: ignore[import-untyped]

from batterytrace.domain.errors import EVENT_TIME_INVALID, DomainError

#: China Standard Time, UTC+8 all year (no daylight saving since 1991).
CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")


class CalendarFallbackWarning(UserWarning):
    """The holiday calendar has no official data for a year; weekends only are used for it."""

    def __init__(self, message: str, year: int) -> None:
        super().__init__(message)
        self.year = year

    def __reduce__(self) -> tuple[type[CalendarFallbackWarning], tuple[str, int]]:
        return (type(self), (str(self), self.year))


def _official_years() -> range:
    """The years ``chinese-calendar`` has holiday data for (it rejects dates outside this range)."""
    years = [day.year for day in chinese_calendar.holidays]
    return range(min(years), max(years) + 1)


@dataclass(frozen=True, slots=True)
class _YearTable:
    official: bool
    first_ordinal: int  # ordinal of 1 January
    flags: bytes  # flags[i] == 1 when the (i+1)-th day of the year is a working day
    ordinals: tuple[int, ...]  # ordinals of the working days, ascending


class WorkingDayCalendar:
    """Chinese working days: look-ups, adding working days, counting them, deadlines.

    Safe to share between threads. Year tables are built on first use and kept; the fallback
    warning for a year is given once per calendar, when that year's table is built.
    """

    def __init__(self) -> None:
        self._official = _official_years()
        self._years: dict[int, _YearTable] = {}
        self._lock = threading.Lock()

    # --- which years are official --------------------------------------------------------
    @property
    def known_years(self) -> range:
        """The years with official holiday data; any other year counts weekends only."""
        return self._official

    def is_official(self, year: int) -> bool:
        """Whether ``year`` follows the published holiday notice (not the weekends-only fallback)."""
        return year in self._official

    # --- look-ups --------------------------------------------------------------------------
    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` is a working day (a datetime counts by its own calendar date)."""
        table = self._table(day.year)
        return table.flags[day.toordinal() - table.first_ordinal] == 1

    def add_working_days(self, start: date, n: int) -> date:
        """The ``n``-th working day after ``start``, not counting ``start`` itself.

        ``n == 0`` gives ``start`` itself (as a date); a negative ``n`` gives the ``-n``-th working day
        before ``start``.
        """
        ordinal = start.toordinal()
        year = start.year
        table = self._table(year)
        if n > 0:
            i = bisect_right(table.ordinals, ordinal)  # first working day after start
            while n > len(table.ordinals) - i:
                n -= len(table.ordinals) - i
                year += 1
                table = self._table(year)
                i = 0
            return date.fromordinal(table.ordinals[i + n - 1])
        if n < 0:
            n = -n
            i = bisect_left(table.ordinals, ordinal)  # working days before start in its year
            while n > i:
                n -= i
                year -= 1
                table = self._table(year)
                i = len(table.ordinals)
            return date.fromordinal(table.ordinals[i - n])
        return date.fromordinal(ordinal)

    def working_days_between(self, start: date, end: date) -> int:
        """The number of working days after ``start`` up to and including ``end``.

        The same counting as :meth:`add_working_days`, so that
        ``working_days_between(d, add_working_days(d, n)) == n`` for ``n >= 0``. Negative when
        ``end`` is before ``start``.
        """
        if end < start:
            return -self.working_days_between(end, start)
        count = -bisect_right(self._table(start.year).ordinals, start.toordinal())
        for year in range(start.year, end.year):
            count += len(self._table(year).ordinals)
        return count + bisect_right(self._table(end.year).ordinals, end.toordinal())

    def deadline_for(self, event_time: datetime, n: int) -> datetime:
        """The end of the ``n``-th working day after the event, in China Standard Time.

        The event's calendar day is taken in UTC+8 whatever its offset; the result is the last
        instant (23:59:59.999999+08:00) of the deadline day, so a report is late exactly when its
        time is after the returned value. ``event_time`` must carry a UTC offset.
        """
        if event_time.tzinfo is None or event_time.utcoffset() is None:
            raise DomainError(
                EVENT_TIME_INVALID,
                f"The time {event_time.isoformat()} has no UTC offset; give it as RFC 3339 with an "
                "offset, e.g. 2026-03-02T09:30:00+08:00.",
            )
        local_day = event_time.astimezone(CHINA_STANDARD_TIME).date()
        return datetime.combine(self.add_working_days(local_day, n), time.max, tzinfo=CHINA_STANDARD_TIME)

    # --- internals ---------------------------------------------------------------------------
    def _table(self, year: int) -> _YearTable:
        table = self._years.get(year)
        if table is not None:
            return table
        with self._lock:
            table = self._years.get(year)
            if table is None:
                table = self._build(year)
                self._years[year] = table
                built = True
            else:
                built = False
        if built and not table.official:
            message = (
                f"chinese-calendar {chinese_calendar.__version__} has no holiday data for {year}; "
                f"working days in {year} are counted as Monday to Friday only. Upgrade "
                "chinese-calendar once the State Council's holiday notice for the year is out."
            )
            warnings.warn(CalendarFallbackWarning(message, year), stacklevel=3)
        return table

    def _build(self, year: int) -> _YearTable:
        first = date(year, 1, 1)
        size = (date(year + 1, 1, 1) - first).days if year < 9999 else 365
        days = [first + timedelta(days=i) for i in range(size)]
        official = year in self._official
        if official:
            flags = bytes(1 if chinese_calendar.is_workday(day) else 0 for day in days)
        else:
            flags = bytes(1 if day.weekday() < 5 else 0 for day in days)
        ordinals = tuple(day.toordinal() for day, flag in zip(days, flags, strict=True) if flag)
        return _YearTable(official=official, first_ordinal=first.toordinal(), flags=flags, ordinals=ordinals)


@lru_cache(maxsize=1)
def default_calendar() -> WorkingDayCalendar:
    """The process-wide calendar (so each fallback year warns once per process)."""
    return WorkingDayCalendar()
