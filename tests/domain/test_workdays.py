"""Chinese working days: golden dates from the State Council's 2026 notice (figures.md §5),
the weekends-only fallback for years without official data, and counting properties."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime, timedelta, timezone

import chinese_calendar
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batterytrace.domain.errors import EVENT_TIME_INVALID, DomainError
from batterytrace.domain.workdays import (
    CHINA_STANDARD_TIME,
    CalendarFallbackWarning,
    WorkingDayCalendar,
    default_calendar,
)

D = date

# The 2026 notice (国务院办公厅关于2026年部分节假日安排的通知, 2025-11-04), typed in by hand
# from the table in figures.md §5: days off (inclusive ranges) and adjusted working days.
DAYS_OFF_2026 = [
    (D(2026, 1, 1), D(2026, 1, 3)),  # New Year's Day
    (D(2026, 2, 15), D(2026, 2, 23)),  # Spring Festival
    (D(2026, 4, 4), D(2026, 4, 6)),  # Qingming
    (D(2026, 5, 1), D(2026, 5, 5)),  # Labour Day
    (D(2026, 6, 19), D(2026, 6, 21)),  # Dragon Boat
    (D(2026, 9, 25), D(2026, 9, 27)),  # Mid-Autumn
    (D(2026, 10, 1), D(2026, 10, 7)),  # National Day
]
WORKED_WEEKENDS_2026 = [
    D(2026, 1, 4),
    D(2026, 2, 14),
    D(2026, 2, 28),
    D(2026, 5, 9),
    D(2026, 9, 20),
    D(2026, 10, 10),
]


def expected_2026_working_days() -> set[date]:
    off = set()
    for first, last in DAYS_OFF_2026:
        off.update(first + timedelta(days=i) for i in range((last - first).days + 1))
    days = [D(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    return {d for d in days if d.weekday() < 5 and d not in off} | set(WORKED_WEEKENDS_2026)


@pytest.fixture
def cal() -> WorkingDayCalendar:
    return WorkingDayCalendar()


# --- golden checks ------------------------------------------------------------------------------


@pytest.mark.parametrize("day", [D(2026, 1, 4), D(2026, 2, 28), *WORKED_WEEKENDS_2026])
def test_adjusted_weekends_are_working_days(cal: WorkingDayCalendar, day: date) -> None:
    assert day.weekday() >= 5
    assert cal.is_working_day(day)


@pytest.mark.parametrize(
    "day", [D(2026, 2, 20), D(2026, 10, 7), D(2026, 1, 1), D(2026, 5, 5), D(2026, 6, 19)]
)
def test_weekday_holidays_are_not_working_days(cal: WorkingDayCalendar, day: date) -> None:
    assert day.weekday() < 5
    assert not cal.is_working_day(day)


def test_whole_of_2026_matches_the_official_notice(cal: WorkingDayCalendar) -> None:
    expected = expected_2026_working_days()
    actual = {D(2026, 1, 1) + timedelta(days=i) for i in range(365)}
    actual = {d for d in actual if cal.is_working_day(d)}
    assert actual == expected
    assert len(actual) == 248  # 261 weekdays - 19 weekday holidays + 6 worked weekend days


@pytest.mark.parametrize(
    ("start", "n", "deadline"),
    [
        # figures.md §5: 1-7 Oct off, Sun 11 Oct rest, Sat 10 Oct worked.
        (D(2026, 9, 30), 5, D(2026, 10, 13)),
        (D(2026, 9, 30), 1, D(2026, 10, 8)),
        (D(2026, 9, 30), 3, D(2026, 10, 10)),
        (D(2026, 9, 30), 4, D(2026, 10, 12)),
        # Mid-Autumn (25-27 Sep off) straight into National Day.
        (D(2026, 9, 24), 3, D(2026, 9, 30)),
        (D(2026, 9, 24), 4, D(2026, 10, 8)),
        # Sun 20 Sep is worked.
        (D(2026, 9, 19), 1, D(2026, 9, 20)),
        (D(2026, 9, 18), 2, D(2026, 9, 21)),
        # Spring Festival: Sat 14 Feb worked, 15-23 Feb off, Sat 28 Feb worked.
        (D(2026, 2, 13), 1, D(2026, 2, 14)),
        (D(2026, 2, 13), 2, D(2026, 2, 24)),
        (D(2026, 2, 13), 3, D(2026, 2, 25)),
        (D(2026, 2, 13), 5, D(2026, 2, 27)),
        (D(2026, 2, 13), 6, D(2026, 2, 28)),
        (D(2026, 2, 13), 7, D(2026, 3, 2)),
        # Counting from a holiday: the first working day after it is day 1.
        (D(2026, 2, 18), 1, D(2026, 2, 24)),
        # New Year across the year boundary: 1-3 Jan off, Sun 4 Jan worked.
        (D(2025, 12, 31), 1, D(2026, 1, 4)),
        (D(2025, 12, 31), 2, D(2026, 1, 5)),
        # Labour Day: 1-5 May off, Sat 9 May worked.
        (D(2026, 4, 30), 1, D(2026, 5, 6)),
        (D(2026, 4, 30), 5, D(2026, 5, 11)),
        # Ordinary weeks.
        (D(2026, 3, 6), 1, D(2026, 3, 9)),
        (D(2026, 3, 6), 0, D(2026, 3, 6)),
    ],
)
def test_add_working_days_against_the_official_table(
    cal: WorkingDayCalendar, start: date, n: int, deadline: date
) -> None:
    assert cal.add_working_days(start, n) == deadline
    assert cal.working_days_between(start, deadline) == n


def test_fifteen_and_thirty_working_days_over_spring_festival(cal: WorkingDayCalendar) -> None:
    # From Fri 6 Feb: 9-13 Feb (5), 14 Feb (6), 24-27 Feb (10), 28 Feb (11), 2-5 Mar (15).
    assert cal.add_working_days(D(2026, 2, 6), 15) == D(2026, 3, 5)
    # ... then 6 Mar (16), and three full weeks 9-27 Mar (31): the 30th is Thu 26 Mar.
    assert cal.add_working_days(D(2026, 2, 6), 30) == D(2026, 3, 26)


def test_negative_counts_go_backwards(cal: WorkingDayCalendar) -> None:
    assert cal.add_working_days(D(2026, 2, 24), -1) == D(2026, 2, 14)
    assert cal.add_working_days(D(2026, 1, 5), -1) == D(2026, 1, 4)
    assert cal.add_working_days(D(2026, 1, 4), -1) == D(2025, 12, 31)
    assert cal.working_days_between(D(2026, 10, 13), D(2026, 9, 30)) == -5


def test_counting_over_many_years(cal: WorkingDayCalendar) -> None:
    assert cal.working_days_between(D(2025, 12, 31), D(2026, 12, 31)) == 248
    start = D(2010, 3, 1)
    end = cal.add_working_days(start, 3000)
    assert cal.working_days_between(start, end) == 3000
    assert cal.add_working_days(end, -3000) == start


# --- deadlines from event times -----------------------------------------------------------------


def test_deadline_is_end_of_day_in_china_standard_time(cal: WorkingDayCalendar) -> None:
    deadline = cal.deadline_for(datetime(2026, 9, 30, 10, 0, tzinfo=CHINA_STANDARD_TIME), 5)
    assert deadline == datetime(2026, 10, 13, 23, 59, 59, 999999, tzinfo=CHINA_STANDARD_TIME)
    assert deadline.utcoffset() == timedelta(hours=8)


def test_event_day_is_taken_in_china_standard_time(cal: WorkingDayCalendar) -> None:
    # 17:00 UTC on Fri 13 Feb is 01:00 on the worked Saturday 14 Feb in Beijing.
    event = datetime(2026, 2, 13, 17, 0, tzinfo=UTC)
    assert cal.deadline_for(event, 1) == datetime(2026, 2, 24, 23, 59, 59, 999999, tzinfo=CHINA_STANDARD_TIME)
    # 15:59 UTC is still Friday in Beijing.
    event = datetime(2026, 2, 13, 15, 59, tzinfo=UTC)
    assert cal.deadline_for(event, 1) == datetime(2026, 2, 14, 23, 59, 59, 999999, tzinfo=CHINA_STANDARD_TIME)
    # Any offset: 09:00 in Berlin (UTC+1) on 13 Feb is 16:00 in Beijing the same day.
    berlin = timezone(timedelta(hours=1))
    assert cal.deadline_for(datetime(2026, 2, 13, 9, 0, tzinfo=berlin), 3).date() == D(2026, 2, 25)


def test_a_report_at_midnight_after_the_deadline_is_late(cal: WorkingDayCalendar) -> None:
    deadline = cal.deadline_for(datetime(2026, 9, 30, 10, 0, tzinfo=CHINA_STANDARD_TIME), 5)
    assert datetime(2026, 10, 13, 23, 59, 59, tzinfo=CHINA_STANDARD_TIME) <= deadline
    assert datetime(2026, 10, 14, 0, 0, tzinfo=CHINA_STANDARD_TIME) > deadline
    assert datetime(2026, 10, 13, 16, 0, tzinfo=UTC) > deadline  # 00:00 on 14 Oct in Beijing


def test_deadline_needs_an_offset(cal: WorkingDayCalendar) -> None:
    with pytest.raises(DomainError) as info:
        cal.deadline_for(datetime(2026, 9, 30, 10, 0), 5)
    assert info.value.code == EVENT_TIME_INVALID
    assert "UTC offset" in info.value.message


# --- years without official data ----------------------------------------------------------------


def test_known_years(cal: WorkingDayCalendar) -> None:
    assert cal.is_official(2004)
    assert cal.is_official(2026)
    assert not cal.is_official(2003)
    assert 2026 in cal.known_years
    assert cal.known_years.start == 2004


def _fallback_warnings(record: pytest.WarningsRecorder) -> list[warnings.WarningMessage]:
    return [w for w in record if issubclass(w.category, CalendarFallbackWarning)]


def _use_2027(cal: WorkingDayCalendar) -> list[object]:
    return [
        cal.is_working_day(D(2027, 1, 1)),  # a Friday; the real notice will make it a holiday
        cal.is_working_day(D(2027, 1, 2)),  # Saturday
        cal.add_working_days(D(2027, 1, 1), 1),
        cal.add_working_days(D(2026, 12, 31), 1),
        cal.working_days_between(D(2026, 12, 31), D(2027, 12, 31)),
        cal.deadline_for(datetime(2027, 10, 1, 9, 0, tzinfo=CHINA_STANDARD_TIME), 5).date(),
    ]


def test_2027_falls_back_to_weekends_with_one_warning(cal: WorkingDayCalendar) -> None:
    if cal.is_official(2027):
        pytest.skip("the installed chinese-calendar already has the 2027 notice")
    with pytest.warns(CalendarFallbackWarning, match="no holiday data for 2027") as record:
        results = _use_2027(cal)
    assert results == [True, False, D(2027, 1, 4), D(2027, 1, 1), 261, D(2027, 10, 8)]
    assert len(_fallback_warnings(record)) == 1
    assert not cal.is_official(2027)
    # Later look-ups in the same year stay silent.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cal.is_working_day(D(2027, 6, 1))
        assert _use_2027(cal) == results


def _use_unknown_years(cal: WorkingDayCalendar) -> list[object]:
    results: list[object] = []
    for _ in range(3):
        results.append(cal.is_working_day(D(2099, 3, 2)))  # Monday
        results.append(cal.is_working_day(D(2003, 3, 1)))  # Saturday
        results.append(cal.add_working_days(D(2099, 12, 31), 2))
    return results


def test_each_unknown_year_warns_once(cal: WorkingDayCalendar) -> None:
    with pytest.warns(CalendarFallbackWarning) as record:
        results = _use_unknown_years(cal)
    assert results == [True, False, D(2100, 1, 4)] * 3
    years = sorted(
        w.message.year for w in _fallback_warnings(record) if isinstance(w.message, CalendarFallbackWarning)
    )
    assert years == [2003, 2099, 2100]


def test_a_warning_raised_as_an_error_does_not_lose_the_year(cal: WorkingDayCalendar) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CalendarFallbackWarning):
            cal.is_working_day(D(2098, 1, 1))
        assert cal.is_working_day(D(2098, 1, 1))  # Wednesday, and no second warning


def test_default_calendar_is_shared() -> None:
    assert default_calendar() is default_calendar()


# --- properties -------------------------------------------------------------------------------------

official_days = st.dates(min_value=D(2004, 1, 1), max_value=D(2025, 6, 30))


@given(official_days)
def test_agrees_with_chinese_calendar(day: date) -> None:
    assert default_calendar().is_working_day(day) == chinese_calendar.is_workday(day)


@given(official_days, st.integers(min_value=0, max_value=200))
def test_adding_then_counting_round_trips(start: date, n: int) -> None:
    cal = default_calendar()
    end = cal.add_working_days(start, n)
    assert cal.working_days_between(start, end) == n
    if n > 0:
        assert end > start
        assert cal.is_working_day(end)
        # The deadline is the earliest day with n working days after start.
        assert cal.working_days_between(start, end - timedelta(days=1)) == n - 1


@given(official_days, st.integers(min_value=1, max_value=200))
def test_going_back_from_a_deadline_returns_to_a_working_start(start: date, n: int) -> None:
    cal = default_calendar()
    start = cal.add_working_days(start, 1)  # a working day
    assert cal.add_working_days(cal.add_working_days(start, n), -n) == start


@given(official_days, official_days)
def test_counting_matches_a_day_by_day_walk(a: date, b: date) -> None:
    cal = default_calendar()
    start, end = min(a, b), min(max(a, b), min(a, b) + timedelta(days=60))
    walked = sum(cal.is_working_day(start + timedelta(days=i)) for i in range(1, (end - start).days + 1))
    assert cal.working_days_between(start, end) == walked
