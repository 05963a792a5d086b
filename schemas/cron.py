"""Five-field cron schedules (``minute hour day-of-month month day-of-week``), as CronJob has them.

Used by the CronJob schema to reject a bad ``schedule`` at load time (the error names the
field and the part that is wrong) and by the cronjob controller to find the fire times between
two instants in the CronJob's ``timeZone``. The dialect is Kubernetes' (robfig/cron's standard
parser): ``*``, lists, ranges, ``/step``, month and weekday names, ``7`` as Sunday, ``?`` as
``*``, and the macros ``@yearly``/``@annually``, ``@monthly``, ``@weekly``, ``@daily``/
``@midnight``, ``@hourly``. As in cron, when both day fields are restricted a day matches if
either does. Minute granularity; seconds are not a field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronError", "CronSchedule", "parse_cron", "time_zone"]

_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS: Final = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_DAYS: Final = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (field name, lowest, highest, names)
_FIELDS: Final[tuple[tuple[str, int, int, dict[str, int]], ...]] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
# Far enough to cross any leap-day-only schedule (Feb 29 recurs within 8 years).
_SEARCH_LIMIT = timedelta(days=366 * 9)


class CronError(ValueError):
    """A schedule that is not a valid five-field cron expression; says which part is wrong."""


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """The allowed values of each field; ``*_restricted`` tells whether a day field was ``*``."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, moment: datetime) -> bool:
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def fire_times(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Each fire time ``t`` with ``after < t <= until``, ascending, in ``after``'s zone.

        Wall-clock minutes are walked in the zone, so a schedule fires at 02:30 local time
        whatever the UTC offset; a minute skipped by a DST change does not fire.
        """
        zone = after.tzinfo
        start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        # Walk naive wall-clock time and localise each candidate: adding a timedelta to an
        # aware datetime in Python keeps the wall clock anyway, and skipped minutes vanish.
        moment = start.replace(tzinfo=None)
        end = until.astimezone(zone).replace(tzinfo=None)
        limit = moment + _SEARCH_LIMIT
        while moment <= end and moment <= limit:
            if moment.month not in self.months:
                moment = _next_month(moment)
                continue
            if not self._day_matches(moment):
                moment = (moment + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if moment.hour not in self.hours:
                moment = (moment + timedelta(hours=1)).replace(minute=0)
                continue
            if moment.minute in self.minutes:
                aware = moment.replace(tzinfo=zone)
                # A wall time in a DST gap does not exist; round-tripping through UTC moves it.
                if (
                    aware.astimezone(ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None)
                    == moment
                    and after < aware <= until
                ):
                    yield aware
            moment += timedelta(minutes=1)

    def last_fire(self, after: datetime, until: datetime) -> tuple[datetime | None, int]:
        """The latest fire time in ``(after, until]`` and how many there were."""
        latest = None
        count = 0
        for moment in self.fire_times(after, until):
            latest = moment
            count += 1
        return latest, count

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time after ``after`` (None if none within nine years)."""
        return next(self.fire_times(after, after + _SEARCH_LIMIT), None)


def _next_month(moment: datetime) -> datetime:
    if moment.month == 12:
        return moment.replace(year=moment.year + 1, month=1, day=1, hour=0, minute=0)
    return moment.replace(month=moment.month + 1, day=1, hour=0, minute=0)


def _value(text: str, field: str, low: int, high: int, names: dict[str, int]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise CronError(
            f"{field}: {text!r} is not a number"
            + (f" or a name ({', '.join(names)})" if names else "")
        )
    number = int(text)
    if not low <= number <= high:
        raise CronError(f"{field}: {number} is outside {low}-{high}")
    return number


def _field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base in ("*", "?"):
            first, last = low, high
        elif "-" in base:
            start_text, _, end_text = base.partition("-")
            first = _value(start_text, field, low, high, names)
            last = _value(end_text, field, low, high, names)
            if first > last:
                raise CronError(f"{field}: range {base!r} runs backwards")
        else:
            first = _value(base, field, low, high, names)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse_cron(expression: str) -> CronSchedule:
    """Parse a five-field expression or macro; raise :class:`CronError` naming the bad part."""
    text = _MACROS.get(expression.strip().lower(), expression)
    if text.startswith("@"):
        raise CronError(f"unknown macro {expression!r}; known: {', '.join(_MACROS)}")
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f"{expression!r} has {len(parts)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    sets = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])
    return CronSchedule(
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=weekdays,
        days_restricted=parts[2] not in ("*", "?"),
        weekdays_restricted=parts[4] not in ("*", "?"),
    )


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raise :class:`CronError` if this host's tz database lacks it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r}") from exc
