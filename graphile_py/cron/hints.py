"""What exactly is wrong with a crontab line that graphile-worker's parser refuses. No I/O.

graphile-worker's messages say *which* line failed ("Could not process line '2'") but
not why. These functions look at the refused text again and return a hint: the field or
part at fault, the bad token, what is allowed there, and the column where it starts.
They never change what is accepted: :mod:`graphile_py.cron.crontab` decides that,
exactly as Node does, and only asks for a hint once it has refused a line.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from graphile_py.cron.js import JS_NOT_SPACE

__all__ = [
    "FIELD_NAMES",
    "Hint",
    "command_hint",
    "field_part_hint",
    "line_hint",
    "macro_hint",
    "option_hint",
    "pattern_hint",
    "sixth_field_hint",
    "unknown_option_hint",
]

#: The five time fields, in order, as people name them.
FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIVE_FIELDS = "five time fields (minute hour day-of-month month day-of-week, all in UTC)"
_TOKEN = re.compile(f"{JS_NOT_SPACE}+")
_FIELD_CHARS = re.compile(r"[0-9*/,-]+")
_IDENTIFIER = re.compile(r"[_a-zA-Z][_a-zA-Z0-9:/_-]*")
_IDENTIFIER_CHAR = re.compile(r"[_a-zA-Z0-9:/_-]")

# Classic cron's shorthands, which graphile-worker's format does not have.
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAME = re.compile(r"[A-Za-z]{3}")
_OPTION_FORMS = {
    "id": "a letter or _ then letters, digits, - or _ (?id=nightly_report)",
    "fill": "a time phrase: numbers with units s, m, h, d or w (?fill=1h, ?fill=4w3d2h1m)",
    "max": "a whole number of attempts (?max=5)",
    "queue": "letters, digits, -, _ and : (?queue=reports)",
    "jobKey": "any text (?jobKey=nightly)",
    "jobKeyMode": "replace or preserve_run_at (unsafe_dedupe is not allowed in a crontab)",
    "priority": "a whole number, lower runs first (?priority=-5)",
}


# What CronItem (and WorkerOptions) call the crontab's options.
_PYTHON_OPTION_NAMES = {
    "identifier": "id",
    "backfill_period": "fill",
    "max_attempts": "max",
    "queue_name": "queue",
    "job_key": "jobKey",
    "job_key_mode": "jobKeyMode",
}


class Hint(NamedTuple):
    """What is wrong (a sentence or two) and the 0-based offset in the text it is about."""

    text: str
    offset: int


def line_hint(line: str) -> Hint:
    """Why a trimmed crontab line is not five time fields followed by a command."""
    tokens = [(m.group(), m.start()) for m in _TOKEN.finditer(line)]
    first, start = tokens[0]
    if first.startswith("@"):
        return Hint(macro_hint(first), start)
    fields = 0
    while fields < len(tokens) and _FIELD_CHARS.fullmatch(tokens[fields][0]):
        fields += 1
    if fields >= len(tokens):
        return Hint(
            f"the line has {fields} time fields and no task: a line needs {_FIVE_FIELDS},"
            " then the task identifier",
            len(line),
        )
    token, start = tokens[fields]
    named = _names_hint(token, fields)
    if named is not None:
        return Hint(named, start)
    odd = re.search(r"[?LW#]", token)
    if odd is not None and re.fullmatch(r"[0-9*/,?LW#-]+", token):
        where = "" if token == odd.group() else f" in '{token}'"
        return Hint(
            f"'{odd.group()}'{where} is not supported in graphile-worker's crontab"
            " (no ?, L, W or #): use * or list the values",
            start + odd.start(),
        )
    if fields < 5 and _IDENTIFIER.fullmatch(token) and fields >= 2:
        return Hint(
            f"this line has {fields} time fields before '{token}', which should be the"
            f" {FIELD_NAMES[fields]} field: a line needs {_FIVE_FIELDS}, then the task"
            " identifier",
            start,
        )
    return Hint(
        f"'{token}' is not a valid {FIELD_NAMES[min(fields, 4)]} field: use a number, a"
        " range (1-5), a list (1,15,30), * or */N; a line is five such fields, then the"
        " task identifier",
        start,
    )


def macro_hint(token: str) -> str:
    """The hint for ``@daily`` and the like."""
    equivalent = _MACROS.get(token.lower())
    if equivalent is None:
        return (
            f"'{token}' is not supported by graphile-worker's crontab format, which has no"
            f" @ shorthands: write the {_FIVE_FIELDS}"
        )
    return (
        f"'{token}' is not supported by graphile-worker's crontab format; write"
        f" '{equivalent}' (UTC) instead"
    )


def pattern_hint(pattern: str) -> str | None:
    """Why a cron_item pattern is not five time fields, or None if it has five."""
    tokens = _TOKEN.findall(pattern)
    if not tokens:
        return f"the pattern is empty: give the {_FIVE_FIELDS}, such as '0 4 * * *'"
    if tokens[0].startswith("@"):
        return macro_hint(tokens[0])
    for index, token in enumerate(tokens[:5]):
        named = _names_hint(token, index)
        if named is not None:
            return named
        if not _FIELD_CHARS.fullmatch(token):
            return (
                f"'{token}' is not a valid {FIELD_NAMES[index]} field: use a number, a"
                " range (1-5), a list (1,15,30), * or */N"
            )
    if len(tokens) != 5:
        return (
            f"the pattern has {len(tokens)} fields; graphile-worker's has exactly"
            f" {_FIVE_FIELDS}: no seconds or year field"
        )
    return None


def sixth_field_hint(command: str) -> str | None:
    """A hint when the command starts with what looks like a sixth time field."""
    first = _TOKEN.match(command)
    if first is None or not _FIELD_CHARS.fullmatch(first.group()):
        return None
    return (
        f"'{first.group()}' after the five time fields looks like a sixth: graphile-worker's"
        f" crontab has exactly {_FIVE_FIELDS}, with no seconds or year field"
    )


def command_hint(command: str) -> Hint:
    """Why the text after the five time fields is not ``task [?options] [{payload}]``."""
    tokens = [(m.group(), m.start()) for m in _TOKEN.finditer(command)]
    task = tokens[0][0]
    if _FIELD_CHARS.fullmatch(task):
        return Hint(
            f"'{task}' looks like a sixth time field: graphile-worker's crontab has exactly"
            f" {_FIVE_FIELDS}, with no seconds or year field, then the task identifier",
            0,
        )
    return _identifier_problem(task) or _after_task_hint(task, tokens[1:], command)


def _after_task_hint(task: str, rest: list[tuple[str, int]], command: str) -> Hint:
    word, start = rest[0]
    if word == "?":
        return Hint("'?' must be followed by options, such as ?fill=1h&max=3", start)
    if word.startswith("?") and len(rest) > 1:
        word, start = rest[1]
        if not word.startswith("{"):
            return Hint(
                f"unexpected '{word}' after the options: options end at the first space"
                " (write ?a=1&b=2, without spaces), and only a {payload} may follow them",
                start,
            )
    if word.startswith("{"):
        return _payload_hint(command, start)
    if word[0] in "[\"'0123456789-":
        given = command[start:].strip()
        return Hint(
            f"the payload must be an object in {{...}} (JSON5), not '{given[:40]}'; it is"
            " merged with the '_cron' key",
            start,
        )
    return Hint(
        f"unexpected '{word}' after the task '{task}': a line is the five time fields,"
        " one task identifier, then optional ?options (no spaces) and an optional"
        " {payload} that ends the line",
        start,
    )


def _payload_hint(command: str, start: int) -> Hint:
    closing = command.rfind("}")
    if closing < start:
        return Hint("the payload starts with { but is never closed with }", start)
    trailing = command[closing + 1 :]
    junk = _TOKEN.search(trailing)
    return Hint(
        f"the payload must end the line, but '{trailing.strip()}' follows it (a comment"
        " is only a line of its own, starting with #)",
        closing + 1 + (junk.start() if junk else 0),
    )


def field_part_hint(part: str) -> str | None:
    """A hint for a part of a field that is not a number, range or wildcard."""
    if re.fullmatch(r"[0-9]+-[0-9]+/[0-9]+", part):
        low, _, step = part.partition("/")
        return (
            f"steps on a range ({part}) are not supported by graphile-worker: list the"
            f" values (for example {_expand(low, int(step))}) or use */{step}"
        )
    if part == "":
        return "there is an empty item: a comma at the start or end, or two in a row"
    if "/" in part:
        return "a step goes after * only (*/15); N/M is not supported"
    return None


def option_hint(key: str) -> str | None:
    """What the option ``key`` accepts."""
    form = _OPTION_FORMS.get(key)
    return f"{key} takes {form}" if form else None


def unknown_option_hint(key: str) -> str | None:
    """The option meant by an unknown ``key`` (a Python name, or the wrong case)."""
    meant = _PYTHON_OPTION_NAMES.get(key) or next(
        (known for known in _OPTION_FORMS if known.lower() == key.lower()), None
    )
    return (
        f"did you mean '{meant}'? Crontab options use graphile-worker's names (case-sensitive)"
        if meant
        else None
    )


def _names_hint(token: str, index: int) -> str | None:
    """A hint when ``token`` (the field at ``index``) uses month or day names."""
    names = [m.group() for m in _NAME.finditer(token)]
    if not names or not all(name.upper() in _MONTHS + _DAYS for name in names):
        return None

    def number(match: re.Match[str]) -> str:
        name = match.group().upper()
        return str(_MONTHS.index(name) + 1) if name in _MONTHS else str(_DAYS.index(name))

    field = FIELD_NAMES[min(index, 4)]
    return (
        f"names such as '{names[0]}' are not supported by graphile-worker's crontab: write"
        f" '{_NAME.sub(number, token)}' (months are 1-12, days of the week 0-6 with"
        f" Sunday = 0); this is the {field} field"
    )


def _identifier_problem(task: str) -> Hint | None:
    if _IDENTIFIER.fullmatch(task):
        return None
    if not re.match(r"[_a-zA-Z]", task):
        return Hint(
            f"the task identifier '{task}' must start with a letter or _ (then letters,"
            " digits, _, -, : or /)",
            0,
        )
    bad = next(i for i, ch in enumerate(task) if not _IDENTIFIER_CHAR.fullmatch(ch))
    return Hint(
        f"'{task[bad]}' is not allowed in the task identifier '{task}': use letters, digits,"
        " _, -, : or /",
        bad,
    )


def _expand(range_text: str, step: int) -> str:
    low, _, high = range_text.partition("-")
    values = list(range(int(low), int(high) + 1, max(step, 1)))
    return ",".join(map(str, values[:8])) + (",..." if len(values) > 8 else "")
