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
fails with the same messages, so one crontab file can drive Node and Python runners. The
time fields are :mod:`graphile_py.cron.schedule`'s; whitespace, options and payloads
follow Node's rules (:mod:`graphile_py.cron.js`), and payloads are parsed as JSON5 with
npm's error messages (:mod:`graphile_py.cron.json5_errors`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

from graphile_py.cron.hints import (
    command_hint,
    line_hint,
    option_hint,
    sixth_field_hint,
    unknown_option_hint,
)
from graphile_py.cron.js import (
    JS_ANY,
    JS_NOT_SPACE,
    JS_SPACE,
    js_json,
    js_trim,
    js_trim_start,
    js_value,
    query_string,
)
from graphile_py.cron.json5_errors import Json5SyntaxError, parse_json5
from graphile_py.cron.schedule import (
    TIME_FIELDS_PATTERN,
    CronMatcher,
    CronSchedule,
    as_utc,
    schedule_from_fields,
)
from graphile_py.errors import CrontabError

__all__ = [
    "CRONTAB_OPTION_KEYS",
    "CronItem",
    "CrontabError",
    "cron_item",
    "parse_crontab",
]

CronJobKeyMode: TypeAlias = Literal["replace", "preserve_run_at"]

#: The options a crontab line may carry after ``?``, in graphile-worker's order.
CRONTAB_OPTION_KEYS = ("id", "fill", "max", "queue", "jobKey", "jobKeyMode", "priority")

_LINE_PARTS = re.compile(rf"{TIME_FIELDS_PATTERN}{JS_SPACE}+({JS_ANY}*)")
_COMMAND = re.compile(
    rf"([_a-zA-Z][_a-zA-Z0-9:/_-]*)(?:{JS_SPACE}+\?({JS_NOT_SPACE}+))?"
    rf"(?:{JS_SPACE}+(\{{{JS_ANY}*\}}))?"
)

_OPTION_PATTERNS = {
    "id": re.compile(r"[_a-zA-Z][-_a-zA-Z0-9]*"),
    "fill": re.compile(r"(?:[0-9]+[smhdw])+"),
    "max": re.compile(r"[0-9]+"),
    "queue": re.compile(r"[-a-zA-Z0-9_:]+"),
    "jobKey": re.compile(JS_ANY + "*"),
    "jobKeyMode": re.compile(r"replace|preserve_run_at"),
    "priority": re.compile(r"-?[0-9]+"),
}
_TIME_PHRASE_PART = re.compile(r"([0-9]+)([smhdw])")
_PERIOD_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

_QUOTED_LIST = "', '"


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
        return bool(self.match(as_utc(moment).replace(second=0, microsecond=0)))


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
        line = js_trim(raw)
        if line == "" or line.startswith("#"):
            continue
        lead = len(raw) - len(js_trim_start(raw))
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
        hint = line_hint(line)
        raise CrontabError(
            f"Could not process line '{number}' of {source}: '{line}'",
            line=number,
            column=lead + hint.offset + 1,
            hint=hint.text,
        )
    try:
        schedule = schedule_from_fields(
            match, f"line {number} of {source}", line=number, column_offset=lead
        )
    except CrontabError as exc:
        # "0 0 0 * * * task" (seconds first) fails on a field; say what went wrong.
        sixth = sixth_field_hint(match.group(6))
        if sixth is None or exc.hint is not None:
            raise
        raise CrontabError(exc.node_message, line=exc.line, column=exc.column, hint=sixth) from None
    command_start = lead + match.start(6)
    command = _COMMAND.fullmatch(match.group(6))
    if command is None:
        hint = command_hint(match.group(6))
        raise CrontabError(
            f"Invalid command specification in line {number} of {source}.",
            line=number,
            column=command_start + hint.offset + 1,
            hint=hint.text,
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


def _parse_options(
    number: int, text: str | None, source: str, column: int
) -> tuple[dict[str, Any], str | None, int]:
    """Options → (CronItem keyword arguments, identifier or None, column of ``id=``)."""
    options: dict[str, Any] = {"backfill_period": 0}
    identifier: str | None = None
    id_column = 0
    for key, values, key_column in query_string(text or "", column):
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
                hint=unknown_option_hint(key),
            )
        if not pattern.fullmatch(value):
            raise CrontabError(
                f"Options on line {number} of {source} contains invalid value for '{key}',"
                f" value '{value}' is not compatible with this option.",
                line=number,
                column=key_column,
                hint=option_hint(key),
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


def _time_phrase_ms(phrase: str) -> int:
    total = 0
    for quantity, period in _TIME_PHRASE_PART.findall(phrase):
        total += int(quantity) * _PERIOD_MS[period]
    return total


def _parse_payload(number: int, text: str, source: str, start: int) -> dict[str, Any]:
    try:
        value = parse_json5(text)
    except Json5SyntaxError as exc:
        raise CrontabError(
            f"Failed to parse JSON5 payload on line {number} of {source}: {exc}",
            line=number,
            column=start + exc.column,
            hint=f"at column {start + exc.column} of the line; the payload is JSON5, such as"
            " {kind: 'weekly', ids: [1, 2]}, and must end the line",
        ) from exc.__cause__
    if not isinstance(value, dict):  # the command regex only admits "{...}"
        raise CrontabError(
            f"Failed to parse JSON5 payload on line {number} of {source}: not an object",
            line=number,
            column=start + 1,
        )
    normalised = js_value(value)
    assert isinstance(normalised, dict)
    return normalised
