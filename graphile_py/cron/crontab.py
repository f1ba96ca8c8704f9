"""Cron items and the crontab format of graphile-worker 0.18 (spec section 6). No I/O here.

A crontab line is five time fields, all in UTC, then a task, optional ``?options`` and an
optional JSON5 payload::

    # ┌───────────── minute (0 - 59)
    # │ ┌─────────── hour (0 - 23)
    # │ │ ┌───────── day of month (1 - 31)
    # │ │ │ ┌─────── month (1 - 12)
    # │ │ │ │ ┌───── day of week (0 - 6, Sunday = 0; 7 is also Sunday)
    # │ │ │ │ │
      0 4 * * 1 send_report ?fill=2d&max=3 {kind: 'weekly'}

:func:`parse_crontab` accepts exactly what graphile-worker's ``parseCrontab`` accepts and
fails with the same messages, so one crontab file can drive Node and Python runners.
Payloads are parsed as JSON5 and later written exactly as Node's ``JSON.stringify`` would
write them (:func:`js_json`), so the two runtimes store byte-identical payloads.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple, TypeAlias
from urllib.parse import unquote_plus

import json5

from graphile_py.cron.json5_errors import Json5SyntaxError, check_json5
from graphile_py.errors import CrontabError

__all__ = [
    "CRONTAB_OPTION_KEYS",
    "CronDigest",
    "CronItem",
    "CronMatcher",
    "CronSchedule",
    "CrontabError",
    "cron_item",
    "digest",
    "js_json",
    "parse_crontab",
]

#: A function deciding whether an item runs at a given UTC minute.
CronMatcher: TypeAlias = Callable[[datetime], bool]
CronJobKeyMode: TypeAlias = Literal["replace", "preserve_run_at"]

#: The options a crontab line may carry after ``?``, in graphile-worker's order.
CRONTAB_OPTION_KEYS = ("id", "fill", "max", "queue", "jobKey", "jobKeyMode", "priority")

# JavaScript's idea of whitespace (String.prototype.trim and the regex class \s), which is
# not quite Python's: it includes U+FEFF and excludes U+001C-U+001F and U+0085.
_WS = "\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_WS_CHARS = frozenset(
    "\t\n\x0b\x0c\r \xa0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_WS_STRING = "".join(sorted(_WS_CHARS))
_S = f"[{_WS}]"
_NOT_S = f"[^{_WS}]"
_ANY = "[^\n\r\u2028\u2029]"  # JavaScript's "." (no line terminators)
_FIELD = "([0-9*/,-]+)"

_LINE_PARTS = re.compile(
    rf"{_FIELD}{_S}+{_FIELD}{_S}+{_FIELD}{_S}+{_FIELD}{_S}+{_FIELD}{_S}+({_ANY}*)"
)
_TIME_PARTS = re.compile(rf"{_FIELD}{_S}+{_FIELD}{_S}+{_FIELD}{_S}+{_FIELD}{_S}+{_FIELD}")
_COMMAND = re.compile(
    rf"([_a-zA-Z][_a-zA-Z0-9:/_-]*)(?:{_S}+\?({_NOT_S}+))?(?:{_S}+(\{{{_ANY}*\}}))?"
)
_NUMBER = re.compile(r"[0-9]+")
_RANGE = re.compile(r"([0-9]+)-([0-9]+)")
_WILDCARD = re.compile(r"\*(?:/([0-9]+))?")

_OPTION_PATTERNS = {
    "id": re.compile(r"[_a-zA-Z][-_a-zA-Z0-9]*"),
    "fill": re.compile(r"(?:[0-9]+[smhdw])+"),
    "max": re.compile(r"[0-9]+"),
    "queue": re.compile(r"[-a-zA-Z0-9_:]+"),
    "jobKey": re.compile(_ANY + "*"),
    "jobKeyMode": re.compile(r"replace|preserve_run_at"),
    "priority": re.compile(r"-?[0-9]+"),
}
_TIME_PHRASE_PART = re.compile(r"([0-9]+)([smhdw])")
_PERIOD_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

_QUOTED_LIST = "', '"

# Node's querystring.parse stops after this many pairs.
_MAX_QUERY_KEYS = 1000
_MAX_SAFE_INTEGER = 2**53 - 1
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")

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


def digest(moment: datetime) -> CronDigest:
    """The cron digest of ``moment`` (a timezone-aware datetime), in UTC."""
    utc = _as_utc(moment)
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
            raise CrontabError(f"Invalid cron pattern '{pattern}' in {source}")
        return _schedule_from_fields(match, source, line=None, column_offset=0)

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
        utc = _as_utc(moment).replace(second=0, microsecond=0) + timedelta(minutes=1)
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


@dataclass(frozen=True)
class CronItem:
    """One recurring job: what to enqueue, and when.

    ``match`` is a :class:`CronSchedule` (see :func:`cron_item` to build one from a
    pattern string) or any function of a UTC minute returning a bool. ``identifier``
    (default: ``task``) is the name under which runners, Node's included, record the last
    run in ``_private_known_crontabs``: items with one identifier are scheduled once per
    minute however many runners there are. ``backfill_period`` (seconds) lets a runner
    that starts late enqueue the runs missed within that period. The other options are
    those of the enqueued job; ``None`` means the database default.
    """

    task: str
    match: CronSchedule | CronMatcher
    identifier: str = ""
    payload: Mapping[str, Any] | None = None
    backfill_period: float = 0
    max_attempts: int | None = None
    queue_name: str | None = None
    priority: int | None = None
    job_key: str | None = None
    job_key_mode: CronJobKeyMode | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task:
            raise CrontabError(
                f"Invalid cron item: task must be a non-empty string, not {self.task!r}"
            )
        if not self.identifier:
            object.__setattr__(self, "identifier", self.task)
        if not callable(self.match):
            raise CrontabError("Invalid 'match' configuration")
        if not isinstance(self.backfill_period, int | float) or not self.backfill_period >= 0:
            raise CrontabError(
                f"Invalid cron item '{self.identifier}': backfill_period must be a number of"
                f" seconds >= 0, not {self.backfill_period!r}"
            )
        if self.job_key_mode not in (None, "replace", "preserve_run_at"):
            raise CrontabError(
                f"Invalid cron item '{self.identifier}': job_key_mode must be 'replace' or"
                f" 'preserve_run_at', not {self.job_key_mode!r}"
            )
        if self.payload is not None and not isinstance(self.payload, Mapping):
            raise CrontabError(
                f"Invalid cron item '{self.identifier}': the payload must be a mapping"
                f" (it is merged with the '_cron' key), not {type(self.payload).__name__}"
            )
        if self.payload is not None:
            try:
                js_json(self.payload)
            except (TypeError, ValueError) as exc:
                raise CrontabError(
                    f"Invalid cron item '{self.identifier}': the payload is not JSON: {exc}"
                ) from exc

    def matches(self, moment: datetime) -> bool:
        """Whether this item is due in the UTC minute containing ``moment``."""
        return bool(self.match(_as_utc(moment).replace(second=0, microsecond=0)))


def cron_item(
    pattern: str,
    task: str,
    *,
    identifier: str | None = None,
    payload: Mapping[str, Any] | None = None,
    backfill_period: float = 0,
    max_attempts: int | None = None,
    queue_name: str | None = None,
    priority: int | None = None,
    job_key: str | None = None,
    job_key_mode: CronJobKeyMode | None = None,
    source: str = "cron_item call",
) -> CronItem:
    """A :class:`CronItem` from a five-field UTC pattern such as ``"0 4 * * 1"``.

    The code equivalent of a crontab line (graphile-worker's ``parseCronItem``). A job
    key without a mode gets ``replace``, as in a crontab. Raises :class:`CrontabError`
    (``Invalid cron pattern '<pattern>' in <source>``) on a bad pattern.
    """
    if not isinstance(pattern, str):
        raise CrontabError(f"Invalid cron pattern '{pattern}' in {source}")
    schedule = CronSchedule.parse(pattern, source)
    return CronItem(
        task=task,
        match=schedule,
        identifier=identifier or task,
        payload=payload,
        backfill_period=backfill_period,
        max_attempts=max_attempts,
        queue_name=queue_name,
        priority=priority,
        job_key=job_key,
        job_key_mode=job_key_mode or ("replace" if job_key else None),
    )


def parse_crontab(text: str, *, source: str = "crontab") -> list[CronItem]:
    """Parse a crontab file's text into cron items, exactly as graphile-worker 0.18 does.

    Lines are split on ``\\r?\\n`` and trimmed; blank lines and lines starting with ``#``
    are skipped. ``source`` names the text in error messages (``line 3 of crontab``).
    Raises :class:`CrontabError`, with ``line`` and ``column`` (1-based, where the bad
    token starts) set, on the first problem found.
    """
    items: list[CronItem] = []
    lines: list[int] = []
    columns: list[int] = []
    for number, raw in enumerate(re.split(r"\r?\n", text), start=1):
        line = _js_trim(raw)
        if line == "" or line.startswith("#"):
            continue
        lead = len(raw) - len(_js_trim_start(raw))
        item, id_column = _parse_line(line, number, lead, source)
        items.append(item)
        lines.append(number)
        columns.append(id_column)

    seen: set[str] = set()
    first_repeat: tuple[int, int] | None = None
    for item, number, column in zip(items, lines, columns, strict=True):
        if item.identifier in seen and first_repeat is None:
            first_repeat = (number, column)
        seen.add(item.identifier)
    if first_repeat is not None:
        ordered = sorted(item.identifier for item in items)
        duplicates = [ident for i, ident in enumerate(ordered) if i > 0 and ordered[i - 1] == ident]
        raise CrontabError(
            f"Invalid {source}; duplicate identifiers found: '{_QUOTED_LIST.join(duplicates)}'"
            " - please use '?id=...' to specify unique identifiers for your cron items",
            line=first_repeat[0],
            column=first_repeat[1],
        )
    return items


# -- parsing internals ------------------------------------------------------------------


def _parse_line(line: str, number: int, lead: int, source: str) -> tuple[CronItem, int]:
    """One trimmed, non-comment line → (item, column where its identifier is given)."""
    match = _LINE_PARTS.fullmatch(line)
    if match is None:
        raise CrontabError(
            f"Could not process line '{number}' of {source}: '{line}'", line=number, column=lead + 1
        )
    schedule = _schedule_from_fields(
        match, f"line {number} of {source}", line=number, column_offset=lead
    )
    command_start = lead + match.start(6)
    command = _COMMAND.fullmatch(match.group(6))
    if command is None:
        raise CrontabError(
            f"Invalid command specification in line {number} of {source}.",
            line=number,
            column=command_start + 1,
        )
    task, options_text, payload_text = command.groups()
    options_column = command_start + command.start(2) + 1 if options_text is not None else 0
    options, identifier, id_column = _parse_options(number, options_text, source, options_column)
    payload = None
    if payload_text:
        payload = _parse_payload(number, payload_text, source, command_start + command.start(3))
    item = CronItem(
        task=task,
        match=schedule,
        identifier=identifier or task,
        payload=payload,
        **options,
    )
    return item, id_column or command_start + 1


def _schedule_from_fields(
    match: re.Match[str], source: str, *, line: int | None, column_offset: int
) -> CronSchedule:
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
                    f"Too large value '{_js_int(value)}' in {where}:"
                    f" expected values in the range {low}-{high}.",
                    line=line,
                    column=part_column,
                )
            if wrapped < low:
                raise CrontabError(
                    f"Too small value '{_js_int(value)}' in {where}:"
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
        )
    return tuple(sorted(numbers))


def _parse_options(
    number: int, text: str | None, source: str, column: int
) -> tuple[dict[str, Any], str | None, int]:
    """Options → (CronItem keyword arguments, identifier or None, column of ``id=``)."""
    options: dict[str, Any] = {"backfill_period": 0}
    identifier: str | None = None
    id_column = 0
    for key, values, key_column in _query_string(text or "", column):
        if len(values) != 1:
            raise CrontabError(
                f"Options on line {number} of {source} contains invalid value for '{key}',"
                " did you specify it more than once?",
                line=number,
                column=key_column,
            )
        value = values[0]
        pattern = _OPTION_PATTERNS.get(key)
        if pattern is None:
            raise CrontabError(
                f"Options on line {number} of {source} contains unsupported key '{key}';"
                f" supported keys are: '{_QUOTED_LIST.join(CRONTAB_OPTION_KEYS)}'.",
                line=number,
                column=key_column,
            )
        if not pattern.fullmatch(value):
            raise CrontabError(
                f"Options on line {number} of {source} contains invalid value for '{key}',"
                f" value '{value}' is not compatible with this option.",
                line=number,
                column=key_column,
            )
        if key == "id":
            identifier, id_column = value, key_column
        elif key == "fill":
            options["backfill_period"] = _time_phrase_ms(value) / 1000
        elif key == "max":
            options["max_attempts"] = int(value)
        elif key == "queue":
            options["queue_name"] = value
        elif key == "jobKey":
            options["job_key"] = value
        elif key == "jobKeyMode":
            options["job_key_mode"] = value
        else:
            options["priority"] = int(value)
    if options.get("job_key") and not options.get("job_key_mode"):
        options["job_key_mode"] = "replace"
    return options, identifier, id_column


def _query_string(text: str, column: int) -> list[tuple[str, list[str], int]]:
    """Node's ``querystring.parse``: ``[(key, [values...], column of key)]`` in key order.

    Pairs split on ``&`` then the first ``=``; ``+`` is a space; bad percent escapes stay
    as they are; empty pairs are skipped; at most 1000 pairs are read. As with any
    JavaScript object, integer-like keys come first, in numeric order.
    """
    found: dict[str, tuple[list[str], int]] = {}
    offset = 0
    pairs = 0
    for segment in text.split("&"):
        segment_column = column + offset
        offset += len(segment) + 1
        if not segment:
            continue
        pairs += 1
        if pairs > _MAX_QUERY_KEYS:
            break
        raw_key, _, raw_value = segment.partition("=")
        key = unquote_plus(raw_key, errors="replace")
        value = unquote_plus(raw_value, errors="replace")
        if key in found:
            found[key][0].append(value)
            found[key] = (found[key][0], segment_column)
        else:
            found[key] = ([value], segment_column)
    return [(key, *found[key]) for key in _js_key_order(found)]


def _time_phrase_ms(phrase: str) -> int:
    total = 0
    for quantity, period in _TIME_PHRASE_PART.findall(phrase):
        total += int(quantity) * _PERIOD_MS[period]
    return total


def _parse_payload(number: int, text: str, source: str, start: int) -> dict[str, Any]:
    try:
        check_json5(text)
    except Json5SyntaxError as exc:
        raise CrontabError(
            f"Failed to parse JSON5 payload on line {number} of {source}: {exc}",
            line=number,
            column=start + exc.column,
        ) from None
    try:
        value = json5.loads(text)
    except Exception as exc:  # the grammar check passed, yet json5 disagrees
        raise CrontabError(
            f"Failed to parse JSON5 payload on line {number} of {source}: JSON5: {exc}",
            line=number,
            column=start + 1,
        ) from exc
    if not isinstance(value, dict):  # the command regex only admits "{...}"
        raise CrontabError(
            f"Failed to parse JSON5 payload on line {number} of {source}: not an object",
            line=number,
            column=start + 1,
        )
    normalised = _js_value(value)
    assert isinstance(normalised, dict)
    return normalised


# -- JavaScript semantics ---------------------------------------------------------------


def js_json(value: Any) -> str:
    """``value`` as JavaScript's ``JSON.stringify`` would write it (compact).

    Object keys that look like array indices come first in numeric order, as in any
    JavaScript object; whole numbers are written without ``.0``; numbers beyond 2**53
    lose precision as JavaScript numbers do; NaN and infinities become ``null``. Accepts
    dicts (str or int keys), lists, tuples, str, int, float, bool and None; raises
    TypeError on anything else.
    """
    parts: list[str] = []
    _write_js_json(value, parts, 0)
    return "".join(parts)


def _write_js_json(value: Any, out: list[str], depth: int) -> None:
    if depth > 500:
        raise ValueError("the payload is nested too deeply")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_js_string(value))
    elif isinstance(value, int):
        out.append(_js_int(value))
    elif isinstance(value, float):
        out.append(_js_float(value))
    elif isinstance(value, Mapping):
        keyed: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, str | int):
                raise TypeError(f"object keys must be strings, not {type(key).__name__}")
            keyed[key if isinstance(key, str) else str(key)] = item
        out.append("{")
        for index, key in enumerate(_js_key_order(keyed)):
            if index:
                out.append(",")
            out.append(_js_string(key))
            out.append(":")
            _write_js_json(keyed[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write_js_json(item, out, depth + 1)
        out.append("]")
    else:
        raise TypeError(f"object of type {type(value).__name__} is not JSON-serialisable")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def _js_string(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    # JSON.stringify escapes lone surrogates (well-formed JSON.stringify, ES2019).
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)


def _js_int(value: int) -> str:
    if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
        return str(value)
    return _js_float(float(value))


def _js_float(value: float) -> str:
    """ECMAScript Number::toString for a double (NaN and infinities → ``null``)."""
    if not math.isfinite(value):
        return "null"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest round-tripping digits, as JavaScript does.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    assert isinstance(exponent, int)
    k = len(digits)
    n = exponent + len("".join(map(str, digit_tuple)))  # value = 0.digits x 10**n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def _js_key_order(keys: Mapping[str, Any]) -> list[str]:
    """JavaScript's property order: array-index keys ascending, then insertion order."""
    indices = sorted(
        (key for key in keys if _ARRAY_INDEX.fullmatch(key) and int(key) < 2**32 - 1), key=int
    )
    index_set = set(indices)
    return indices + [key for key in keys if key not in index_set]


def _js_value(value: Any) -> Any:
    """A parsed JSON5 value as JavaScript holds it: keys in JS order, UTF-16 pairs joined."""
    if isinstance(value, str):
        return _join_surrogates(value)
    if isinstance(value, dict):
        joined = {_join_surrogates(key): _js_value(item) for key, item in value.items()}
        return {key: joined[key] for key in _js_key_order(joined)}
    if isinstance(value, list):
        return [_js_value(item) for item in value]
    return value


def _join_surrogates(text: str) -> str:
    if not _LONE_SURROGATE.search(text):
        return text
    return _SURROGATE_PAIR.sub(
        lambda m: chr(0x10000 + ((ord(m.group()[0]) - 0xD800) << 10) + ord(m.group()[1]) - 0xDC00),
        text,
    )


def _js_trim(text: str) -> str:
    return text.strip(_WS_STRING)


def _js_trim_start(text: str) -> str:
    return text.lstrip(_WS_STRING)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("cron needs a timezone-aware datetime (for example datetime.now(UTC))")
    return moment.astimezone(UTC)
