"""Schedules against known calendar dates: AWS day-of-week numbering, DST days, rates, years."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from event_collector.jobs.schedule import ScheduleError, parse_schedule

NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
# 2026-11-29 is a Sunday; the week through 2026-12-05 (Saturday).
SUNDAY = datetime(2026, 11, 29, tzinfo=UTC)


def _occurrences(expression: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    schedule = parse_schedule(expression, zone)
    found: list[datetime] = []
    instant = start
    while (following := schedule.next_after(instant)) is not None and following < end:
        found.append(following)
        instant = following
    return found


@pytest.mark.parametrize(
    ("aws_day", "weekday_name", "expected_date"),
    [
        ("1", "Sunday", date(2026, 11, 29)),
        ("2", "Monday", date(2026, 11, 30)),
        ("3", "Tuesday", date(2026, 12, 1)),
        ("4", "Wednesday", date(2026, 12, 2)),
        ("5", "Thursday", date(2026, 12, 3)),
        ("6", "Friday", date(2026, 12, 4)),
        ("7", "Saturday", date(2026, 12, 5)),
        ("SUN", "Sunday", date(2026, 11, 29)),
        ("SAT", "Saturday", date(2026, 12, 5)),
        ("L", "Saturday", date(2026, 12, 5)),
    ],
)
def test_aws_day_of_week_is_one_to_seven_from_sunday(
    aws_day: str, weekday_name: str, expected_date: date
) -> None:
    schedule = parse_schedule(f"cron(0 12 ? * {aws_day} *)")
    first = schedule.next_after(SUNDAY - timedelta(seconds=1))
    assert first is not None
    assert first.date() == expected_date
    assert first.strftime("%A") == weekday_name


def test_aws_day_lists_ranges_steps_and_nth() -> None:
    week_end = SUNDAY + timedelta(days=7)
    weekdays = _occurrences("cron(0 12 ? * 2-6 *)", "UTC", SUNDAY, week_end)
    assert [d.strftime("%a") for d in weekdays] == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    listed = _occurrences("cron(0 12 ? * 1,7 *)", "UTC", SUNDAY, week_end)
    assert [d.strftime("%a") for d in listed] == ["Sun", "Sat"]
    stepped = _occurrences("cron(0 12 ? * 1/3 *)", "UTC", SUNDAY, week_end)
    assert [d.strftime("%a") for d in stepped] == ["Sun", "Wed", "Sat"]
    # The third Friday (AWS 6#3) of December 2026 is the 18th; the last Friday (6L) the 25th.
    third = parse_schedule("cron(0 9 ? * 6#3 *)").next_after(datetime(2026, 12, 1, tzinfo=UTC))
    assert third == datetime(2026, 12, 18, 9, tzinfo=UTC)
    last = parse_schedule("cron(0 9 ? * 6L *)").next_after(datetime(2026, 12, 1, tzinfo=UTC))
    assert last == datetime(2026, 12, 25, 9, tzinfo=UTC)


def test_aws_day_of_month_and_year() -> None:
    last_day = parse_schedule("cron(15 10 L * ? *)").next_after(datetime(2027, 2, 1, tzinfo=UTC))
    assert last_day == datetime(2027, 2, 28, 10, 15, tzinfo=UTC)
    only_2028 = parse_schedule("cron(0 0 1 1 ? 2028)")
    assert only_2028.next_after(SUNDAY) == datetime(2028, 1, 1, tzinfo=UTC)
    assert only_2028.next_after(datetime(2028, 1, 1, tzinfo=UTC)) is None
    assert "in 2028" in only_2028.describe()


def test_standard_cron_day_of_week_is_zero_based() -> None:
    monday = parse_schedule("0 12 * * 1").next_after(SUNDAY)
    assert monday is not None
    assert monday.strftime("%A") == "Monday"
    sunday = parse_schedule("0 12 * * 0").next_after(SUNDAY - timedelta(seconds=1))
    assert sunday is not None
    assert sunday.strftime("%A") == "Sunday"


def test_rates_are_aligned_on_the_epoch() -> None:
    every_five = parse_schedule("rate(5 minutes)")
    assert every_five.next_after(datetime(2026, 11, 30, 10, 2, 30, tzinfo=UTC)) == datetime(
        2026, 11, 30, 10, 5, tzinfo=UTC
    )
    assert every_five.next_after(datetime(2026, 11, 30, 10, 5, tzinfo=UTC)) == datetime(
        2026, 11, 30, 10, 10, tzinfo=UTC
    )
    assert every_five.latest_at_or_before(datetime(2026, 11, 30, 10, 5, tzinfo=UTC)) == datetime(
        2026, 11, 30, 10, 5, tzinfo=UTC
    )
    hourly = parse_schedule("rate(1 hour)")
    assert hourly.next_after(datetime(2026, 11, 30, 10, 59, tzinfo=UTC)) == datetime(
        2026, 11, 30, 11, tzinfo=UTC
    )
    assert parse_schedule("rate(2 days)").describe().startswith("Every 2 days")


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("America/New_York", date(2026, 11, 1)),  # fall back: 01:00-02:00 happens twice
        ("America/New_York", date(2026, 3, 8)),  # spring forward: 02:00-03:00 never happens
        ("Australia/Sydney", date(2026, 4, 5)),  # fall back: 02:00-03:00 twice
        ("Australia/Sydney", date(2026, 10, 4)),  # spring forward: 02:00-03:00 never
    ],
)
def test_daily_job_fires_once_on_dst_days(zone: str, day: date) -> None:
    tz = ZoneInfo(zone)
    start = datetime.combine(day, datetime.min.time(), tz)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    for expression in ("30 1 * * *", "30 2 * * *"):
        fired = _occurrences(expression, zone, start, end)
        assert len(fired) == 1, (expression, fired)


def test_daily_job_in_the_repeated_and_skipped_hour() -> None:
    fall_back = datetime(2026, 11, 1, tzinfo=NEW_YORK)
    (fired,) = _occurrences("30 1 * * *", "America/New_York", fall_back, fall_back + timedelta(1))
    assert fired == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # the first 01:30 (EDT)
    spring = datetime(2026, 3, 8, tzinfo=NEW_YORK)
    (fired,) = _occurrences("30 2 * * *", "America/New_York", spring, spring + timedelta(days=1))
    assert fired.astimezone(NEW_YORK).hour == 3  # 02:30 does not exist: runs when it jumps


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("America/New_York", date(2026, 11, 1), 25),
        ("America/New_York", date(2026, 3, 8), 23),
        ("Australia/Sydney", date(2026, 4, 5), 25),
        ("Australia/Sydney", date(2026, 10, 4), 23),
    ],
)
def test_hourly_job_fires_every_real_hour_on_dst_days(zone: str, day: date, hours: int) -> None:
    tz = ZoneInfo(zone)
    start = datetime.combine(day, datetime.min.time(), tz) - timedelta(seconds=1)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
    fired = _occurrences("0 * * * *", zone, start, end)
    assert len(fired) == hours
    assert len(set(fired)) == hours
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(fired))


def test_latest_at_or_before() -> None:
    daily = parse_schedule("30 1 * * *", "America/New_York")
    at = datetime(2026, 11, 2, 6, 30, tzinfo=UTC)  # 01:30 EST exactly
    assert daily.latest_at_or_before(at) == at
    assert daily.latest_at_or_before(at - timedelta(seconds=1)) == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("expression", "zone", "words"),
    [
        ("string", "UTC", "5 fields"),
        ("* * * * * *", "UTC", "5 fields"),
        ("60 * * * *", "UTC", "minute"),
        ("0 9 ? * 1", "UTC", "'?'"),
        ("cron(0 9 * * 2 *)", "UTC", "exactly one"),
        ("cron(0 9 ? * ? *)", "UTC", "exactly one"),
        ("cron(0 9 ? * 0 *)", "UTC", "1 = SUN"),
        ("cron(0 9 15W * ? *)", "UTC", "LW"),
        ("cron(0 9 ? * 7-1 *)", "UTC", "backwards"),
        ("rate(1 week)", "UTC", "rate(N"),
        ("rate(-1 minutes)", "UTC", "rate(N"),
        ("* * * * *", "Nowhere/City", "IANA"),
        ("* * * * *", "", "IANA"),
    ],
)
def test_invalid_schedules_say_why(expression: str, zone: str, words: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        parse_schedule(expression, zone)
    assert words in str(raised.value)


def test_descriptions_are_plain_words() -> None:
    assert parse_schedule("30 1 * * *", "America/New_York").describe() == (
        "At 01:30 every day (America/New_York time)"
    )
    assert parse_schedule("cron(0 9 ? * 2-6 *)").describe() == (
        "At 09:00 on Monday, Tuesday, Wednesday, Thursday, and Friday"
    )
    assert parse_schedule("rate(1 minute)").describe().startswith("Every minute")
