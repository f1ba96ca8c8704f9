"""The crontab format and the cron matcher (graphile-worker's crontab and cronMatcher tests).

Pure: no database. Messages are graphile-worker 0.18's, word for word; line and column
(1-based) point at the bad token in the original text.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphile_py.cron.crontab import CronItem, cron_item, parse_crontab
from graphile_py.cron.js import js_json
from graphile_py.cron.schedule import CronDigest, CronSchedule, digest
from graphile_py.errors import ConfigurationError, CrontabError

ALL_MINUTES = tuple(range(60))
ALL_HOURS = tuple(range(24))
ALL_DATES = tuple(range(1, 32))
ALL_MONTHS = tuple(range(1, 13))
ALL_DOWS = tuple(range(7))
EVERY = CronSchedule(ALL_MINUTES, ALL_HOURS, ALL_DATES, ALL_MONTHS, ALL_DOWS)

# In milliseconds, as graphile-worker reports backfillPeriod.
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY

EXAMPLE = """\
# ┌───────────── UTC minute (0 - 59)
# │ ┌───────────── UTC hour (0 - 23)
# │ │ ┌───────────── UTC day of the month (1 - 31)
# │ │ │ ┌───────────── UTC month (1 - 12)
# │ │ │ │ ┌───────────── UTC day of the week (0 - 6) (Sunday to Saturday)
# │ │ │ │ │ ┌───────────── task (identifier) to schedule
# │ │ │ │ │ │    ┌────────── optional scheduling options
# │ │ │ │ │ │    │     ┌────── optional payload to merge
# * * * * * task ?opts {payload}

* * * * * simple
0 4 * * * every_day_at_4_am
0 4 * * 0 every_sunday_at_4_am
0 4 * * 7 every_sunday_at_4_am ?id=sunday_7


  # an indented comment

0 4 * * 2 every_tuesday_at_4_am {isTuesday: true}
{one}
    *     *      *       *       *      lots_of_spaces     \r
* * * * * with_key ?jobKey=my_key
* * * * * with_key_and_mode ?jobKey=my_key&jobKeyMode=preserve_run_at
* * * * * nested/task ?jobKey=my_key&jobKeyMode=preserve_run_at
* * * * * nested/folder/task ?jobKey=my_key&jobKeyMode=preserve_run_at
""".replace(
    "{one}",
    "*/10,7,56-59 1 1 1 1 one ?id=stuff&fill=4w3d2h1m&max=3&queue=my_queue&priority=3"
    ' {myExtraPayload:{stuff:"here with # hash char"}}',
)


def options(item: CronItem) -> dict[str, object]:
    """The options graphile-worker would report, in its own names (unset ones left out)."""
    named = {
        "backfillPeriod": item.backfill_period * 1000,
        "maxAttempts": item.max_attempts,
        "queueName": item.queue_name,
        "priority": item.priority,
        "jobKey": item.job_key,
        "jobKeyMode": item.job_key_mode,
    }
    return {key: value for key, value in named.items() if value is not None}


def schedule(item: CronItem) -> CronSchedule:
    assert isinstance(item.match, CronSchedule)
    return item.match


# -- parsing -----------------------------------------------------------------------------


def test_parses_the_example_crontab() -> None:
    items = parse_crontab(EXAMPLE)
    assert [(item.task, item.identifier) for item in items] == [
        ("simple", "simple"),
        ("every_day_at_4_am", "every_day_at_4_am"),
        ("every_sunday_at_4_am", "every_sunday_at_4_am"),
        ("every_sunday_at_4_am", "sunday_7"),
        ("every_tuesday_at_4_am", "every_tuesday_at_4_am"),
        ("one", "stuff"),
        ("lots_of_spaces", "lots_of_spaces"),
        ("with_key", "with_key"),
        ("with_key_and_mode", "with_key_and_mode"),
        ("nested/task", "nested/task"),
        ("nested/folder/task", "nested/folder/task"),
    ]
    simple, day4, sunday, sunday7, tuesday, one, spaces, key, key_mode = items[:9]

    assert schedule(simple) == EVERY
    assert options(simple) == {"backfillPeriod": 0}
    assert simple.payload is None

    assert schedule(day4) == CronSchedule((0,), (4,), ALL_DATES, ALL_MONTHS, ALL_DOWS)
    assert schedule(sunday).dows == (0,)
    assert schedule(sunday7).dows == (0,)  # 7 wraps to Sunday
    assert schedule(tuesday).dows == (2,)
    assert tuesday.payload == {"isTuesday": True}

    assert schedule(one) == CronSchedule(
        (0, 7, 10, 20, 30, 40, 50, 56, 57, 58, 59), (1,), (1,), (1,), (1,)
    )
    assert options(one) == {
        "backfillPeriod": 4 * WEEK + 3 * DAY + 2 * HOUR + 1 * MINUTE,
        "maxAttempts": 3,
        "priority": 3,
        "queueName": "my_queue",
    }
    assert one.backfill_period == 2_685_660
    assert one.payload == {"myExtraPayload": {"stuff": "here with # hash char"}}

    assert schedule(spaces) == EVERY
    assert options(spaces) == {"backfillPeriod": 0}
    assert options(key) == {"backfillPeriod": 0, "jobKey": "my_key", "jobKeyMode": "replace"}
    assert options(key_mode) == {
        "backfillPeriod": 0,
        "jobKey": "my_key",
        "jobKeyMode": "preserve_run_at",
    }
    for nested in items[9:]:
        assert schedule(nested).minutes == ALL_MINUTES
        assert options(nested)["jobKeyMode"] == "preserve_run_at"


def test_empty_and_comment_only_crontabs() -> None:
    assert parse_crontab("") == []
    assert parse_crontab("\n\r\n   \n# nothing\n\t# still nothing\n") == []


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", ALL_MINUTES),
        ("*/15", (0, 15, 30, 45)),
        ("*/45", (0, 45)),
        ("*/60", (0,)),
        ("5", (5,)),
        ("05", (5,)),
        ("58-59", (58, 59)),
        ("3,1,2,1", (1, 2, 3)),
        ("*/30,15,0-1", (0, 1, 15, 30)),
    ],
)
def test_minute_field_syntax(field: str, expected: tuple[int, ...]) -> None:
    [item] = parse_crontab(f"{field} * * * * t")
    assert schedule(item).minutes == expected


def test_fields_use_their_own_ranges() -> None:
    [item] = parse_crontab("* */6 */10 */5 */3 t")
    assert schedule(item) == CronSchedule(
        ALL_MINUTES, (0, 6, 12, 18), (1, 11, 21, 31), (1, 6, 11), (0, 3, 6)
    )
    [item] = parse_crontab("0 0 1-31 1-12 0-7 t")
    assert schedule(item) == CronSchedule((0,), (0,), ALL_DATES, ALL_MONTHS, ALL_DOWS)


@pytest.mark.parametrize(
    ("fill", "seconds"),
    [("1s", 1), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172_800), ("1w1s", 604_801)],
)
def test_fill_time_phrases(fill: str, seconds: int) -> None:
    [item] = parse_crontab(f"* * * * * t ?fill={fill}")
    assert item.backfill_period == seconds


def test_every_option() -> None:
    [item] = parse_crontab(
        "* * * * * a:b/c-d ?id=my-id_2&fill=1m&max=10&queue=q:1-x_y&jobKey=k%20ey+1"
        "&jobKeyMode=preserve_run_at&priority=-7"
    )
    assert item == CronItem(
        task="a:b/c-d",
        match=EVERY,
        identifier="my-id_2",
        backfill_period=60,
        max_attempts=10,
        queue_name="q:1-x_y",
        priority=-7,
        job_key="k ey 1",  # percent-decoded, '+' is a space
        job_key_mode="preserve_run_at",
    )


def test_empty_job_key_gets_no_mode() -> None:
    [item] = parse_crontab("* * * * * t ?jobKey=")
    assert (item.job_key, item.job_key_mode) == ("", None)


def test_payloads_are_json5() -> None:
    [item] = parse_crontab(
        "* * * * * t {unquoted: 'single', \"double\": [1, 2.5, +3, .5, 0x10,],"
        " /* comment */ nested: {deep: null}, 'hash': '#not a comment', "
        "inf: Infinity, '2': 'index keys first', esc: '\\u00e9\\n'}"
    )
    assert item.payload is not None
    assert list(item.payload) == ["2", "unquoted", "double", "nested", "hash", "inf", "esc"]
    assert item.payload["double"] == [1, 2.5, 3, 0.5, 16]
    assert item.payload["nested"] == {"deep": None}
    assert item.payload["hash"] == "#not a comment"
    assert item.payload["esc"] == "é\n"
    assert math.isinf(item.payload["inf"])


def test_a_trailing_comment_is_not_allowed() -> None:
    # "#" only starts a comment at the start of a line; the payload must end the line.
    with pytest.raises(CrontabError, match=r"^Invalid command specification in line 1 of"):
        parse_crontab('* * * * * t {a: "# b"}  # c')


# -- errors: messages, lines and columns -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        (
            "* * * * too_few_parameters\n",
            "Could not process line '1' of crontab: '* * * * too_few_parameters'",
            1,
            9,  # where the fifth time field should be
        ),
        (
            "# header\n\n  * * * * * two tasks\n",
            "Invalid command specification in line 3 of crontab.",
            3,
            17,  # the unexpected second word
        ),
        (
            "1,60 * * * * out_of_range\n",
            "Too large value '60' in minutes range in line 1 of crontab:"
            " expected values in the range 0-59.",
            1,
            3,
        ),
        (
            "* * 0 * * t",
            "Too small value '0' in dates range in line 1 of crontab:"
            " expected values in the range 1-31.",
            1,
            5,
        ),
        (
            "* * * 13 * t",
            "Too large value '13' in months range in line 1 of crontab:"
            " expected values in the range 1-12.",
            1,
            7,
        ),
        (
            "* * * * 8 t",
            "Too large value '8' in days of week range in line 1 of crontab:"
            " expected values in the range 0-6.",
            1,
            9,
        ),
        (
            "* 22-25 * * * t",
            "Too large value '24' in hours range in line 1 of crontab:"
            " expected values in the range 0-23.",
            1,
            3,
        ),
        (
            "*/0 * * * * division_by_zero\n",
            "Invalid wildcard expression '*/0' in minutes range in line 1 of crontab:"
            " divisor '0' expected to be greater than zero",
            1,
            1,
        ),
        (
            "5-5 * * * * t",
            "Invalid range '5-5' in minutes range in line 1 of crontab:"
            " destination is not larger than source",
            1,
            1,
        ),
        (
            "1-5/2 * * * * t",
            "Unsupported syntax '1-5/2' in minutes range in line 1 of crontab:"
            " this doesn't appear to be a number, range or wildcard",
            1,
            1,
        ),
        (
            "1,,2 * * * * t",
            "Unsupported syntax '' in minutes range in line 1 of crontab:"
            " this doesn't appear to be a number, range or wildcard",
            1,
            3,
        ),
        (
            "* * * JAN * t",
            "Could not process line '1' of crontab: '* * * JAN * t'",
            1,
            7,  # the month name
        ),
        (
            "* * * * * invalid_options ?unknown=3\n",
            "Options on line 1 of crontab contains unsupported key 'unknown'; supported keys"
            " are: 'id', 'fill', 'max', 'queue', 'jobKey', 'jobKeyMode', 'priority'.",
            1,
            28,
        ),
        (
            "* * * * * t ?max=1&fill=1m&max=2",
            "Options on line 1 of crontab contains invalid value for 'max',"
            " did you specify it more than once?",
            1,
            28,
        ),
        (
            "* * * * * t ?fill=1y",
            "Options on line 1 of crontab contains invalid value for 'fill',"
            " value '1y' is not compatible with this option.",
            1,
            14,
        ),
        (
            "* * * * * t ?jobKeyMode=unsafe_dedupe",
            "Options on line 1 of crontab contains invalid value for 'jobKeyMode',"
            " value 'unsafe_dedupe' is not compatible with this option.",
            1,
            14,
        ),
        (
            "* * * * * t ?id=1abc",
            "Options on line 1 of crontab contains invalid value for 'id',"
            " value '1abc' is not compatible with this option.",
            1,
            14,
        ),
        (
            "* * * * * json_syntax_error {invalidJson=true}\n",
            "Failed to parse JSON5 payload on line 1 of crontab:"
            " JSON5: invalid character '=' at 1:13",
            1,
            41,
        ),
        (
            "* * * * * t {a: 'unterminated}",
            "Failed to parse JSON5 payload on line 1 of crontab:"
            " JSON5: invalid end of input at 1:19",
            1,
            31,
        ),
        (
            "* * * * * a\n0 * * * * b\n0 0 * * * a\n1 * * * * b ?id=a\n",
            "Invalid crontab; duplicate identifiers found: 'a', 'a' - please use '?id=...'"
            " to specify unique identifiers for your cron items",
            3,
            11,
        ),
    ],
)
def test_errors(text: str, message: str, line: int, column: int) -> None:
    with pytest.raises(CrontabError) as info:
        parse_crontab(text)
    # graphile-worker's message first; our hint (what exactly is wrong) may follow it.
    assert info.value.node_message == message
    assert str(info.value).startswith(message)
    assert (info.value.line, info.value.column) == (line, column)
    assert isinstance(info.value, ConfigurationError)


def test_source_names_the_text() -> None:
    with pytest.raises(
        CrontabError, match=r"^Invalid command specification in line 1 of jobs\.txt"
    ):
        parse_crontab("* * * * * a b", source="jobs.txt")


# -- items built in code -----------------------------------------------------------------


def test_cron_item_defaults() -> None:
    item = cron_item("* * * * *", "task")
    assert item.backfill_period == 0
    assert item.identifier == "task"
    assert item.payload is None
    assert item.match == EVERY
    keyed = cron_item("0 0 * * *", "task", job_key="k", identifier="daily", payload={"a": 1})
    assert (keyed.identifier, keyed.job_key_mode, keyed.payload) == ("daily", "replace", {"a": 1})


@pytest.mark.parametrize("pattern", ["foo", "* * * *", "* * * * * *", ""])
def test_cron_item_validates_the_pattern(pattern: str) -> None:
    with pytest.raises(CrontabError) as info:
        cron_item(pattern, "task")
    assert info.value.node_message == f"Invalid cron pattern '{pattern}' in cron_item call"
    expected = f"Invalid cron pattern '{pattern}' in my config"
    with pytest.raises(CrontabError, match=f"^{re.escape(expected)}\n  "):
        cron_item(pattern, "task", source="my config")


def test_cron_item_reports_bad_values_with_its_source() -> None:
    with pytest.raises(CrontabError) as info:
        cron_item("60 * * * *", "task")
    assert str(info.value) == (
        "Too large value '60' in minutes range in cron_item call:"
        " expected values in the range 0-59."
    )
    assert info.value.line is None


def test_cron_item_validation() -> None:
    with pytest.raises(CrontabError, match="Invalid 'match' configuration"):
        CronItem("t", "* * * * *")  # type: ignore[arg-type]
    with pytest.raises(CrontabError, match="backfill_period"):
        cron_item("* * * * *", "t", backfill_period=-1)
    with pytest.raises(CrontabError, match="job_key_mode"):
        cron_item("* * * * *", "t", job_key="k", job_key_mode="unsafe_dedupe")  # type: ignore[arg-type]
    with pytest.raises(CrontabError, match="not JSON"):
        cron_item("* * * * *", "t", payload={"when": datetime.now(UTC)})
    with pytest.raises(CrontabError, match="must be a mapping"):
        CronItem("t", EVERY, payload=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(CrontabError, match="non-empty"):
        cron_item("* * * * *", "")


def test_function_matchers() -> None:
    item = CronItem("t", lambda moment: moment.hour == 3 and moment.minute == 0)
    assert item.identifier == "t"
    assert item.matches(datetime(2024, 1, 1, 3, 0, 59, tzinfo=UTC))
    assert not item.matches(datetime(2024, 1, 1, 3, 1, tzinfo=UTC))
    # The matcher always sees the UTC minute.
    assert item.matches(datetime(2024, 1, 1, 5, 0, 30, tzinfo=timezone(timedelta(hours=2))))


# -- matching (graphile-worker's cronMatcher tests) --------------------------------------


def d(minute: int, hour: int, date: int, month: int, dow: int) -> CronDigest:
    return CronDigest(minute, hour, date, month, dow)


def test_every_minute_matches_everything() -> None:
    every = CronSchedule.parse("* * * * *")
    for digest_ in (d(0, 0, 1, 1, 0), d(59, 23, 31, 12, 6), d(30, 12, 15, 6, 3)):
        assert every.matches_digest(digest_)


def test_dow_range() -> None:
    fri_sat = CronSchedule.parse("* * * * 5-6")
    assert [fri_sat.matches_digest(d(0, 0, 1, 1, dow)) for dow in range(7)] == [
        False,
        False,
        False,
        False,
        False,
        True,
        True,
    ]


def test_dow_and_date_range_use_the_or_rule() -> None:
    schedule = CronSchedule.parse("0-5 15 3-4 7 0-2")
    assert schedule.matches_digest(d(0, 15, 3, 7, 4))  # the date matches, the dow doesn't
    assert schedule.matches_digest(d(5, 15, 20, 7, 1))  # the dow matches, the date doesn't
    assert schedule.matches_digest(d(2, 15, 4, 7, 2))  # both
    assert not schedule.matches_digest(d(2, 15, 20, 7, 4))  # neither
    assert not schedule.matches_digest(d(6, 15, 3, 7, 1))  # minute 6
    assert not schedule.matches_digest(d(0, 16, 3, 7, 1))  # hour 16
    assert not schedule.matches_digest(d(0, 15, 3, 8, 1))  # August


def test_only_one_restricted_day_field_must_match() -> None:
    dates_only = CronSchedule.parse("0 0 13 * *")
    assert dates_only.matches_digest(d(0, 0, 13, 5, 3))
    assert not dates_only.matches_digest(d(0, 0, 14, 5, 5))
    dows_only = CronSchedule.parse("0 0 * * 5")
    assert dows_only.matches_digest(d(0, 0, 14, 5, 5))
    assert not dows_only.matches_digest(d(0, 0, 13, 5, 3))
    # "1-31" lists every date: it is not a restriction, so the dow alone decides.
    assert not CronSchedule.parse("0 0 1-31 * 5").matches_digest(d(0, 0, 13, 5, 3))


def test_dow_7_is_sunday() -> None:
    sunday = CronSchedule.parse("0 4 * * 7")
    assert sunday.matches(datetime(2024, 6, 2, 4, 0, tzinfo=UTC))  # a Sunday
    assert not sunday.matches(datetime(2024, 6, 3, 4, 0, tzinfo=UTC))


def test_digest_is_utc() -> None:
    paris_summer = timezone(timedelta(hours=2))
    assert digest(datetime(2024, 6, 2, 1, 30, 45, tzinfo=paris_summer)) == d(30, 23, 1, 6, 6)
    with pytest.raises(ValueError, match="timezone-aware"):
        digest(datetime(2024, 6, 2))


def test_next_run_after() -> None:
    hourly = CronSchedule.parse("0 * * * *")
    assert hourly.next_run_after(datetime(2024, 1, 1, 10, 0, tzinfo=UTC)) == datetime(
        2024, 1, 1, 11, 0, tzinfo=UTC
    )
    assert hourly.next_run_after(datetime(2024, 1, 1, 10, 59, 59, tzinfo=UTC)) == datetime(
        2024, 1, 1, 11, 0, tzinfo=UTC
    )
    leap = CronSchedule.parse("0 0 29 2 *")
    assert leap.next_run_after(datetime(2097, 1, 1, tzinfo=UTC)) == datetime(
        2104, 2, 29, tzinfo=UTC
    )
    assert CronSchedule.parse("0 0 30 2 *").next_run_after(datetime(2024, 1, 1, tzinfo=UTC)) is None


_patterns = st.builds(
    "{} {} {} {} {}".format,
    st.sampled_from(["*", "*/7", "0", "15,45", "58-59"]),
    st.sampled_from(["*", "*/5", "3", "22-23"]),
    st.sampled_from(["*", "1", "13", "28-31", "*/10"]),
    st.sampled_from(["*", "2", "*/4", "11-12"]),
    st.sampled_from(["*", "0", "1-5", "6", "7"]),
)


@settings(max_examples=60, deadline=None)
@given(
    pattern=_patterns,
    start=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
)
def test_next_run_after_agrees_with_matches(pattern: str, start: datetime) -> None:
    schedule = CronSchedule.parse(pattern)
    found = schedule.next_run_after(start)
    assert found is not None
    assert found > start
    assert found.second == found.microsecond == 0
    assert schedule.matches(found)
    # Nothing in between matches (checked minute by minute within a day of the start).
    probe = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while probe < found and probe < start + timedelta(days=1):
        assert not schedule.matches(probe)
        probe += timedelta(minutes=1)


# -- JavaScript's JSON.stringify ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"b": 1, "10": 2, "a": 3, "2": 4, "01": 5}, '{"2":4,"10":2,"b":1,"a":3,"01":5}'),
        (
            [1.0, -0.0, 0.5, 1e21, 1e-7, 1e-6, 123e-20, 1e20],
            "[1,0,0.5,1e+21,1e-7,0.000001,1.23e-18,100000000000000000000]",
        ),
        ([float("nan"), float("inf"), -float("inf")], "[null,null,null]"),
        (12345678901234567890, "12345678901234567000"),
        (2**53 - 1, "9007199254740991"),
        (
            {"s": 'quote " and \\ and \n and \x01 and é and \u2028'},
            '{"s":"quote \\" and \\\\ and \\n and \\u0001 and é and \u2028"}',
        ),
        ("\ud800", '"\\ud800"'),
        ((True, False, None), "[true,false,null]"),
        ({1: "int key"}, '{"1":"int key"}'),
    ],
)
def test_js_json(value: object, text: str) -> None:
    assert js_json(value) == text


def test_js_json_refuses_non_json() -> None:
    with pytest.raises(TypeError):
        js_json({"a": {1, 2}})
    with pytest.raises(TypeError):
        js_json({(1, 2): "tuple key"})


def test_surrogate_pairs_from_json5_escapes_are_joined() -> None:
    [item] = parse_crontab('* * * * * t {smile: "\\ud83d\\ude00", lone: "\\udc00"}')
    assert item.payload == {"smile": "😀", "lone": "\udc00"}
    assert js_json(item.payload) == '{"smile":"😀","lone":"\\udc00"}'


# -- JSON5 syntax errors, worded and placed as npm json5 2.2.3 does ----------------------


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ("{1a: 2}", "JSON5: invalid character '1' at 1:2"),
        ("{a: 01}", "JSON5: invalid character '1' at 1:6"),
        ("{a: tru}", "JSON5: invalid character '}' at 1:8"),
        ("{a: [1,,2]}", "JSON5: invalid character ',' at 1:8"),
        ('{a: "\\u00"}', "JSON5: invalid character '\\\"' at 1:10"),
        ("{a: '\\1'}", "JSON5: invalid character '1' at 1:7"),
        ("{a: 1 /x}", "JSON5: invalid character 'x' at 1:8"),
        ("{a: 1 /* open }", "JSON5: invalid end of input at 1:16"),
        ("{\\u0031: 1}", "JSON5: invalid identifier character at 1:2"),
        ("{😀: 1}", "JSON5: invalid character '😀' at 1:3"),  # UTF-16 columns
        # The json5 library fails these in number conversion, with no position.
        ("{a: 1e}", "JSON5: invalid character '}' at 1:7"),
        ("{a: .}", "JSON5: invalid character '}' at 1:6"),
    ],
)
def test_json5_error_messages(payload: str, error: str) -> None:
    with pytest.raises(CrontabError) as info:
        parse_crontab(f"* * * * * t {payload}")
    assert info.value.node_message == (
        f"Failed to parse JSON5 payload on line 1 of crontab: {error}"
    )
