"""Job schedules: when a job's occurrences fall, in its time zone.

Three spellings are accepted (DESIGN §3.3):

* a standard 5-field cron expression (``30 1 * * *``), evaluated by cronsim, which follows
  Debian cron across DST changes: a daily job fires once on the fall-back day (at the first
  01:30) and once on the spring-forward day (a time that does not exist runs when the clock
  jumps past it), and an hourly job fires every real hour;
* AWS style ``cron(min hour day-of-month month day-of-week year)``, translated to the 5-field
  form: AWS numbers the days of the week 1-7 from SUNDAY (cron: 0-6), and ``?`` ("no value")
  stands where the other day field restricts; the year field filters occurrences;
* AWS style ``rate(N minute|minutes|hour|hours|day|days)``: every N units, aligned on the Unix
  epoch in UTC (so every scheduler process computes the same instants).

Every instant handed in and out is timezone-aware; results are in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$", re.IGNORECASE)
_AWS_CRON = re.compile(r"^cron\((.*)\)$", re.IGNORECASE | re.DOTALL)
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MAX_YEAR = 2199


class ScheduleError(ValueError):
    """The schedule or time zone cannot be used; the message says why."""


def parse_timezone(name: str) -> ZoneInfo:
    try:
        if not name or name != name.strip() or name.startswith("/") or ".." in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"{name!r} is not an IANA time zone (such as UTC or Europe/Amsterdam)"
        ) from None


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule in a time zone."""

    expression: str
    zone: ZoneInfo
    cron: str | None = None  # the 5-field expression cronsim evaluates
    years: frozenset[int] | None = None  # AWS year field (None: every year)
    period: timedelta | None = None  # rate(...)
    _description: str = field(default="", compare=False)

    def next_after(self, instant: datetime) -> datetime | None:
        """The first occurrence strictly after ``instant`` (UTC), or None if there is none."""
        if self.period is not None:
            elapsed = (instant - EPOCH) // self.period
            return EPOCH + (elapsed + 1) * self.period
        assert self.cron is not None
        start = instant.astimezone(self.zone)
        while True:
            try:
                found = next(CronSim(self.cron, start))
            except StopIteration:
                return None
            if self.years is None or found.year in self.years:
                return found.astimezone(UTC)
            later = [year for year in self.years if year > found.year]
            if not later:
                return None
            # Jump to the start of the next allowed year (a second before, as cronsim's start
            # is exclusive).
            start = datetime(min(later), 1, 1, tzinfo=self.zone) - timedelta(seconds=1)

    def latest_at_or_before(self, instant: datetime) -> datetime | None:
        """The last occurrence at or before ``instant`` (UTC), or None if there is none."""
        if self.period is not None:
            elapsed = (instant - EPOCH) // self.period
            return EPOCH + elapsed * self.period
        assert self.cron is not None
        # cronsim's reverse iteration is exclusive of its start and works in whole seconds.
        start = (instant + timedelta(seconds=1)).astimezone(self.zone)
        iterator = CronSim(self.cron, start, reverse=True)
        for _ in range(100_000):
            try:
                found = next(iterator)
            except StopIteration:
                return None
            if found > instant:
                continue
            if self.years is not None and found.year not in self.years:
                if found.year < min(self.years):
                    return None
                # Not worth jumping: a year filter on a recent past is rare (and bounded).
                continue
            return found.astimezone(UTC)
        return None

    def describe(self) -> str:
        return self._description


def parse_schedule(expression: str, timezone: str = "UTC") -> Schedule:
    """Parse a 5-field cron, ``cron(...)`` or ``rate(...)`` expression; raises ScheduleError."""
    zone = parse_timezone(timezone)
    text = expression.strip()
    if not text:
        raise ScheduleError("is empty: give a 5-field cron expression, cron(...) or rate(...)")
    rate = _RATE.match(text)
    if rate:
        return _rate(text, int(rate.group(1)), rate.group(2).lower(), zone)
    if text.lower().startswith("rate"):
        raise ScheduleError(
            "a rate must read rate(N minute|minutes|hour|hours|day|days) with N >= 1"
        )
    aws = _AWS_CRON.match(text)
    if aws:
        return _aws_cron(text, aws.group(1), zone)
    return _cron(text, text, zone, years=None, suffix="")


def _rate(text: str, count: int, unit: str, zone: ZoneInfo) -> Schedule:
    if count < 1:
        raise ScheduleError("a rate needs N >= 1")
    singular = unit.rstrip("s")
    period = timedelta(seconds=count * _RATE_UNITS[singular])
    words = f"every {singular}" if count == 1 else f"every {count} {singular}s"
    return Schedule(
        text, zone, period=period, _description=f"{words.capitalize()} (counted from 00:00 UTC)"
    )


def _cron(
    original: str, cron: str, zone: ZoneInfo, *, years: frozenset[int] | None, suffix: str
) -> Schedule:
    fields = cron.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"not {len(fields)}"
        )
    if any("?" in part for part in fields):
        raise ScheduleError("'?' is only allowed in AWS style cron(...) expressions")
    try:
        explained = CronSim(cron, datetime.now(zone)).explain()
    except CronSimError as exc:
        raise ScheduleError(f"invalid cron expression: {exc}") from None
    zone_words = "" if zone.key == "UTC" else f" ({zone.key} time)"
    schedule = Schedule(
        original, zone, cron=cron, years=years, _description=f"{explained}{suffix}{zone_words}"
    )
    if schedule.next_after(datetime.now(UTC)) is None:
        raise ScheduleError("the expression never fires from now on")
    return schedule


def _aws_cron(original: str, inner: str, zone: ZoneInfo) -> Schedule:
    fields = inner.split()
    if len(fields) != 6:
        raise ScheduleError(
            "an AWS cron(...) expression has 6 fields "
            f"(minutes hours day-of-month month day-of-week year), not {len(fields)}"
        )
    minute, hour, day_of_month, month, day_of_week, year = fields
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ScheduleError("in cron(...), exactly one of day-of-month and day-of-week must be '?'")
    if "W" in day_of_month.upper() and day_of_month.upper() != "LW":
        raise ScheduleError("'W' (nearest weekday) is supported only as LW")
    cron = " ".join(
        (
            minute,
            hour,
            "*" if day_of_month == "?" else day_of_month,
            month,
            "*" if day_of_week == "?" else _aws_day_of_week(day_of_week),
        )
    )
    years = _aws_years(year)
    suffix = "" if years is None else f", in {_years_words(years)}"
    return _cron(original, cron, zone, years=years, suffix=suffix)


def _aws_day_of_week(value: str) -> str:
    """AWS day-of-week (1-7 = SUN-SAT, names, ranges, steps, L, #) in cron's 0-6 numbering."""
    upper = value.upper()
    if upper == "L":  # the last day of the week: Saturday
        return "6"
    if upper == "*":
        return "*"
    special = re.fullmatch(r"([1-7]|[A-Z]{3})(#[1-5]|L)", upper)
    if special:
        return f"{_aws_day_number(special.group(1)) - 1}{special.group(2)}"
    days: set[int] = set()
    for part in upper.split(","):
        days.update(_aws_day_part(part))
    return ",".join(str(day - 1) for day in sorted(days))


def _aws_day_part(part: str) -> list[int]:
    """The AWS day numbers (1-7) one comma-separated part names."""
    base, _, step_text = part.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) < 1:
            raise ScheduleError(f"bad step {step_text!r} in day-of-week")
        step = int(step_text)
    if base == "*":
        first, last = 1, 7
    elif "-" in base:
        low, _, high = base.partition("-")
        first, last = _aws_day_number(low), _aws_day_number(high)
        if first > last:
            raise ScheduleError(f"day-of-week range {base!r} runs backwards")
    else:
        first = _aws_day_number(base)
        last = 7 if step_text else first
    return list(range(first, last + 1, step))


def _aws_day_number(token: str) -> int:
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token) + 1
    if token.isdigit() and 1 <= int(token) <= 7:
        return int(token)
    raise ScheduleError(
        f"day-of-week {token!r} is not 1-7 (1 = SUN … 7 = SAT in cron(...)) or SUN-SAT"
    )


def _aws_years(value: str) -> frozenset[int] | None:
    if value == "*":
        return None
    years: set[int] = set()
    for part in value.split(","):
        base, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if "-" in base:
                low, _, high = base.partition("-")
                first, last = int(low), int(high)
            elif base == "*":
                first, last = 1970, _MAX_YEAR
            else:
                first = int(base)
                last = _MAX_YEAR if step_text else first
        except ValueError:
            raise ScheduleError(f"bad year {part!r}: use 1970-2199, ranges, lists or *") from None
        if not (1970 <= first <= last <= _MAX_YEAR) or step < 1:
            raise ScheduleError(f"bad year {part!r}: use 1970-2199, ranges, lists or *")
        years.update(range(first, last + 1, step))
    return frozenset(years)


def _years_words(years: frozenset[int]) -> str:
    ordered = sorted(years)
    if len(ordered) == 1:
        return str(ordered[0])
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]} through {ordered[-1]}"
    return ", ".join(str(year) for year in ordered[:5]) + (" …" if len(ordered) > 5 else "")
