"""Crontab errors keep graphile-worker's wording and add what exactly is wrong, and where.

What is accepted is unchanged (tests/interop/test_cron_interop.py compares with Node);
these tests pin the hint, the bad token and the column of each kind of mistake.
"""

from __future__ import annotations

import pytest

from graphile_py import CrontabError, cron_item
from graphile_py.cron.crontab import parse_crontab

FIVE = "five time fields (minute hour day-of-month month day-of-week, all in UTC)"


@pytest.mark.parametrize(
    ("text", "node_message", "hint", "column"),
    [
        (
            "# nightly\n0 4 * * send_report",
            "Could not process line '2' of crontab: '0 4 * * send_report'",
            "this line has 4 time fields before 'send_report', which should be the"
            f" day-of-week field: a line needs {FIVE}, then the task identifier",
            9,
        ),
        (
            "@daily cleanup",
            "Could not process line '1' of crontab: '@daily cleanup'",
            "'@daily' is not supported by graphile-worker's crontab format;"
            " write '0 0 * * *' (UTC) instead",
            1,
        ),
        (
            "  @hourly ping",
            "Could not process line '1' of crontab: '@hourly ping'",
            "'@hourly' is not supported by graphile-worker's crontab format;"
            " write '0 * * * *' (UTC) instead",
            3,
        ),
        (
            "@reboot warm_up",
            "Could not process line '1' of crontab: '@reboot warm_up'",
            "'@reboot' is not supported by graphile-worker's crontab format, which has no @"
            f" shorthands: write the {FIVE}",
            1,
        ),
        (
            "0 9 * * MON-FRI standup",
            "Could not process line '1' of crontab: '0 9 * * MON-FRI standup'",
            "names such as 'MON' are not supported by graphile-worker's crontab: write '1-5'"
            " (months are 1-12, days of the week 0-6 with Sunday = 0); this is the"
            " day-of-week field",
            9,
        ),
        (
            "0 0 1 jan * yearly",
            "Could not process line '1' of crontab: '0 0 1 jan * yearly'",
            "names such as 'jan' are not supported by graphile-worker's crontab: write '1'"
            " (months are 1-12, days of the week 0-6 with Sunday = 0); this is the month field",
            7,
        ),
        (
            "0 0 L * * month_end",
            "Could not process line '1' of crontab: '0 0 L * * month_end'",
            "'L' is not supported in graphile-worker's crontab (no ?, L, W or #):"
            " use * or list the values",
            5,
        ),
        (
            "0 0 * * 5#3 third_friday",
            "Could not process line '1' of crontab: '0 0 * * 5#3 third_friday'",
            "'#' in '5#3' is not supported in graphile-worker's crontab (no ?, L, W or #):"
            " use * or list the values",
            10,
        ),
        (
            "0 0 * *",
            "Could not process line '1' of crontab: '0 0 * *'",
            f"the line has 4 time fields and no task: a line needs {FIVE}, then the task"
            " identifier",
            8,
        ),
        (
            "0 0 4 * * * six_fields",
            "Invalid command specification in line 1 of crontab.",
            "'*' looks like a sixth time field: graphile-worker's crontab has exactly"
            f" {FIVE}, with no seconds or year field, then the task identifier",
            11,
        ),
        (
            "30 0 0 * * * seconds_first",
            "Too small value '0' in dates range in line 1 of crontab:"
            " expected values in the range 1-31.",
            "'*' after the five time fields looks like a sixth: graphile-worker's crontab has"
            f" exactly {FIVE}, with no seconds or year field",
            6,
        ),
        (
            "* * * * * two words",
            "Invalid command specification in line 1 of crontab.",
            "unexpected 'words' after the task 'two': a line is the five time fields, one task"
            " identifier, then optional ?options (no spaces) and an optional {payload} that"
            " ends the line",
            15,
        ),
        (
            "* * * * * 1task",
            "Invalid command specification in line 1 of crontab.",
            "the task identifier '1task' must start with a letter or _ (then letters, digits,"
            " _, -, : or /)",
            11,
        ),
        (
            "* * * * * tasks.email",
            "Invalid command specification in line 1 of crontab.",
            "'.' is not allowed in the task identifier 'tasks.email': use letters, digits, _,"
            " -, : or /",
            16,
        ),
        (
            "* * * * * t ?",
            "Invalid command specification in line 1 of crontab.",
            "'?' must be followed by options, such as ?fill=1h&max=3",
            13,
        ),
        (
            "* * * * * t ?fill=1h &max=3",
            "Invalid command specification in line 1 of crontab.",
            "unexpected '&max=3' after the options: options end at the first space (write"
            " ?a=1&b=2, without spaces), and only a {payload} may follow them",
            22,
        ),
        (
            # A bad payload is pointed at, not the task's name.
            "* * * * * report {kind: 'weekly'}  # every minute",
            "Invalid command specification in line 1 of crontab.",
            "the payload must end the line, but '# every minute' follows it (a comment is only"
            " a line of its own, starting with #)",
            36,
        ),
        (
            "* * * * * report {kind: 'weekly'",
            "Invalid command specification in line 1 of crontab.",
            "the payload starts with { but is never closed with }",
            18,
        ),
        (
            "* * * * * report [1, 2]",
            "Invalid command specification in line 1 of crontab.",
            "the payload must be an object in {...} (JSON5), not '[1, 2]'; it is merged with"
            " the '_cron' key",
            18,
        ),
        (
            "* * * * * report {kind: weekly}",
            "Failed to parse JSON5 payload on line 1 of crontab:"
            " JSON5: invalid character 'w' at 1:8",
            "at column 25 of the line; the payload is JSON5, such as {kind: 'weekly', ids:"
            " [1, 2]}, and must end the line",
            25,
        ),
        (
            "1-30/5 * * * * t",
            "Unsupported syntax '1-30/5' in minutes range in line 1 of crontab:"
            " this doesn't appear to be a number, range or wildcard",
            "steps on a range (1-30/5) are not supported by graphile-worker: list the values"
            " (for example 1,6,11,16,21,26) or use */5",
            1,
        ),
        (
            "0 9/2 * * * t",
            "Unsupported syntax '9/2' in hours range in line 1 of crontab:"
            " this doesn't appear to be a number, range or wildcard",
            "a step goes after * only (*/15); N/M is not supported",
            3,
        ),
        (
            "* * * * * t ?fill=90",
            "Options on line 1 of crontab contains invalid value for 'fill',"
            " value '90' is not compatible with this option.",
            "fill takes a time phrase: numbers with units s, m, h, d or w (?fill=1h,"
            " ?fill=4w3d2h1m)",
            14,
        ),
        (
            "* * * * * t ?jobKeyMode=unsafe_dedupe",
            "Options on line 1 of crontab contains invalid value for 'jobKeyMode',"
            " value 'unsafe_dedupe' is not compatible with this option.",
            "jobKeyMode takes replace or preserve_run_at (unsafe_dedupe is not allowed in a"
            " crontab)",
            14,
        ),
        (
            "* * * * * t ?max_attempts=3",
            "Options on line 1 of crontab contains unsupported key 'max_attempts'; supported"
            " keys are: 'id', 'fill', 'max', 'queue', 'jobKey', 'jobKeyMode', 'priority'.",
            "did you mean 'max'? Crontab options use graphile-worker's names (case-sensitive)",
            14,
        ),
        (
            "* * * * * t ?jobkey=a",
            "Options on line 1 of crontab contains unsupported key 'jobkey'; supported"
            " keys are: 'id', 'fill', 'max', 'queue', 'jobKey', 'jobKeyMode', 'priority'.",
            "did you mean 'jobKey'? Crontab options use graphile-worker's names (case-sensitive)",
            14,
        ),
    ],
)
def test_each_mistake_is_explained(text: str, node_message: str, hint: str, column: int) -> None:
    with pytest.raises(CrontabError) as info:
        parse_crontab(text)
    error = info.value
    assert error.node_message == node_message  # graphile-worker's words, unchanged
    assert error.hint == hint
    assert str(error) == f"{node_message}\n  {hint}"
    assert error.line == text.count("\n") + 1
    assert error.column == column


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [
        ("@weekly", "'@weekly' is not supported by graphile-worker's crontab format; write"),
        (
            "0 0 * * SUN",
            "names such as 'SUN' are not supported by graphile-worker's crontab: write '0'",
        ),
        ("* * * *", "the pattern has 4 fields; graphile-worker's has exactly five time fields"),
        ("0 * * * * *", "the pattern has 6 fields"),
        ("", "the pattern is empty"),
        ("every day", "'every' is not a valid minute field"),
    ],
)
def test_cron_item_patterns_are_explained(pattern: str, hint: str) -> None:
    with pytest.raises(CrontabError) as info:
        cron_item(pattern, "task")
    assert info.value.node_message == f"Invalid cron pattern '{pattern}' in cron_item call"
    assert info.value.hint is not None and info.value.hint.startswith(hint), info.value.hint


def test_an_accepted_line_needs_no_hint() -> None:
    # The hints only explain refusals: the forms Node accepts still parse.
    items = parse_crontab(
        "0 4 * * 7 weekly ?id=w&fill=1d\n*/15 9-17 * * 1-5 work {a: '#'}\n0 0 1,15 * * half\n"
    )
    assert [item.identifier for item in items] == ["w", "work", "half"]


# -- counts in messages ------------------------------------------------------------------


def test_plural_words_counts() -> None:
    from graphile_py.logs import plural

    assert [plural(n, "job") for n in (0, 1, 2)] == ["0 jobs", "1 job", "2 jobs"]
    assert plural(1, "query", "queries") == "1 query"
    assert plural(3, "query", "queries") == "3 queries"
