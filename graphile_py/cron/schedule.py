"""Cron schedules: the five time fields, and whether (or when next) a UTC minute matches.

Pure: no I/O. A pattern such as ``"*/15 9-17 * * 1-5"`` becomes a :class:`CronSchedule`
holding the allowed values of each field; matching follows graphile-worker 0.18 (spec
6.3), including classic cron's "either day field" rule. Field errors carry
graphile-worker's messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, TypeAlias

from graphile_py.cron.hints import field_part_hint, pattern_hint
from graphile_py.cron.js import JS_SPACE, js_int
from graphile_py.errors import CrontabError

__all__ = [
    "TIME_FIELDS_PATTERN",
    "CronDigest",
    "CronMatcher",
    "CronSchedule",
    "as_utc",
    "digest",
    "schedule_from_fields",
]

#: A function deciding whether an item runs at a given UTC minute.
CronMatcher: TypeAlias = Callable[[datetime], bool]

_FIELD = "([0-9*/,-]+)"
#: Regex for the five time fields, separated by JavaScript whitespace (groups 1 to 5).
TIME_FIELDS_PATTERN = (
    rf"{_FIELD}{JS_SPACE}+{_FIELD}{JS_SPACE}+{_FIELD}{JS_SPACE}+{_FIELD}{JS_SPACE}+{_FIELD}"
)
_TIME_PARTS = re.compile(TIME_FIELDS_PATTERN)
_NUMBER = re.compile(r"[0-9]+")
_RANGE = re.compile(r"([0-9]+)-([0-9]+)")
_WILDCARD = re.compile(r"\*(?:/([0-9]+))?")

_FIELDS = (
    # (name in messages, minimum, maximum, wrap max + 1 to minimum)
    ("minutes", 0, 59, False),
    ("hours", 0, 23, False),
    ("dates", 1, 31, False),
    ("months", 1, 12, False),
    ("days of week", 0, 6, True),
)


class CronDigest(NamedTuple):
    """A UTC timestamp broken into the parts cron matches on (month 1-12, Sunday = 0)."""

    min: int
    hour: int
    date: int
    month: int
    dow: int


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; ValueError if it is naive (cron never guesses a time zone)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("cron needs a timezone-aware datetime (for example datetime.now(UTC))")
    return moment.astimezone(UTC)


def digest(moment: datetime) -> CronDigest:
    """The cron digest of ``moment`` (a timezone-aware datetime), in UTC."""
    utc = as_utc(moment)
    return CronDigest(utc.minute, utc.hour, utc.day, utc.month, utc.isoweekday() % 7)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """The five time fields of a cron pattern, each as a sorted tuple of allowed values."""

    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    dates: tuple[int, ...]
    months: tuple[int, ...]
    dows: tuple[int, ...]

    def __post_init__(self) -> None:
        for (name, low, high, _), values in zip(_FIELDS, self._fields(), strict=True):
            if not values or list(values) != sorted(set(values)):
                raise CrontabError(f"Invalid {name} {values!r}: expected sorted distinct values")
            if values[0] < low or values[-1] > high:
                raise CrontabError(
                    f"Invalid {name} {values!r}: expected values in the range {low}-{high}"
                )

    def _fields(self) -> tuple[tuple[int, ...], ...]:
        return (self.minutes, self.hours, self.dates, self.months, self.dows)

    @classmethod
    def parse(cls, pattern: str, source: str = "cron_item call") -> CronSchedule:
        """Parse a five-field pattern such as ``"*/15 9-17 * * 1-5"`` (UTC).

        Raises :class:`CrontabError` with graphile-worker's message on a bad pattern.
        """
        match = _TIME_PARTS.fullmatch(pattern)
        if match is None:
            raise CrontabError(
                f"Invalid cron pattern '{pattern}' in {source}", hint=pattern_hint(pattern)
            )
        return schedule_from_fields(match, source, line=None, column_offset=0)

    def matches_digest(self, d: CronDigest) -> bool:
        """Whether the schedule fires at the minute ``d`` describes (spec 6.3)."""
        if d.min not in self.minutes or d.hour not in self.hours or d.month not in self.months:
            return False
        dates_restricted = len(self.dates) != 31
        dows_restricted = len(self.dows) != 7
        if dates_restricted and dows_restricted:
            # Classic cron: when both day fields are restricted, either one may match.
            return d.date in self.dates or d.dow in self.dows
        if dates_restricted:
            return d.date in self.dates
        if dows_restricted:
            return d.dow in self.dows
        return True

    def matches(self, moment: datetime) -> bool:
        """Whether the schedule fires in the UTC minute containing ``moment``."""
        return self.matches_digest(digest(moment))

    def __call__(self, moment: datetime) -> bool:
        return self.matches(moment)

    def next_run_after(self, moment: datetime, *, within_days: int = 366 * 9) -> datetime | None:
        """The first whole UTC minute strictly after ``moment`` at which the schedule fires.

        Returns None when nothing matches within ``within_days`` (for example
        ``0 0 30 2 *``, which never fires).
        """
        utc = as_utc(moment).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = utc.replace(hour=0, minute=0)
        for offset in range(within_days + 1):
            current = day + timedelta(days=offset)
            if current.month not in self.months or not self._day_matches(current):
                continue
            for hour in self.hours:
                for minute in self.minutes:
                    candidate = current.replace(hour=hour, minute=minute)
                    if candidate >= utc:
                        return candidate
        return None

    def _day_matches(self, day: datetime) -> bool:
        d = digest(day)
        return self.matches_digest(
            CronDigest(self.minutes[0], self.hours[0], d.date, d.month, d.dow)
        )


def schedule_from_fields(
    match: re.Match[str], source: str, *, line: int | None, column_offset: int
) -> CronSchedule:
    """The schedule of a match of :data:`TIME_FIELDS_PATTERN` (fields in groups 1 to 5).

    ``source`` and ``line`` go into error messages; ``column_offset`` is where the matched
    text starts in its line, so that errors point at the bad part.
    """
    values = [
        _parse_field(
            match.group(index + 1),
            f"{name} range in {source}",
            low,
            high,
            wrap=wrap,
            line=line,
            column=column_offset + match.start(index + 1),
        )
        for index, (name, low, high, wrap) in enumerate(_FIELDS)
    ]
    return CronSchedule(*values)


def _parse_field(
    text: str,
    where: str,
    low: int,
    high: int,
    *,
    wrap: bool,
    line: int | None,
    column: int,
) -> tuple[int, ...]:
    numbers: set[int] = set()
    offset = 0
    for part in text.split(","):
        part_column = column + offset + 1 if line is not None else None
        offset += len(part) + 1

        def add(value: int, part_column: int | None = part_column) -> None:
            wrapped = low if wrap and value == high + 1 else value
            if wrapped > high:
                raise CrontabError(
                    f"Too large value '{js_int(value)}' in {where}:"
                    f" expected values in the range {low}-{high}.",
                    line=line,
                    column=part_column,
                )
            if wrapped < low:
                raise CrontabError(
                    f"Too small value '{js_int(value)}' in {where}:"
                    f" expected values in the range {low}-{high}.",
                    line=line,
                    column=part_column,
                )
            numbers.add(wrapped)

        if _NUMBER.fullmatch(part):
            add(int(part))
            continue
        bounds = _RANGE.fullmatch(part)
        if bounds:
            start, end = int(bounds.group(1)), int(bounds.group(2))
            if end <= start:
                raise CrontabError(
                    f"Invalid range '{part}' in {where}: destination is not larger than source",
                    line=line,
                    column=part_column,
                )
            for value in range(start, end + 1):
                add(value)
            continue
        wildcard = _WILDCARD.fullmatch(part)
        if wildcard:
            divisor_text = wildcard.group(1)
            divisor = int(divisor_text) if divisor_text else 1
            if divisor < 1:
                raise CrontabError(
                    f"Invalid wildcard expression '{part}' in {where}:"
                    f" divisor '{divisor_text}' expected to be greater than zero",
                    line=line,
                    column=part_column,
                )
            numbers.update(range(low, high + 1, divisor))
            continue
        raise CrontabError(
            f"Unsupported syntax '{part}' in {where}:"
            " this doesn't appear to be a number, range or wildcard",
            line=line,
            column=part_column,
            hint=field_part_hint(part),
        )
    return tuple(sorted(numbers))
