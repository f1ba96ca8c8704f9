"""CronScheduler against a real database, driven by a fake clock.

The fake clock works like graphile-worker's own test helper (``setupFakeTimers``):
``set_time`` forward moves the wall clock *and* the timers, a minute at a time, firing
each timer at its due time; ``set_time`` backward (or ``jump``) moves only the wall clock,
as a clock adjustment would. After each step the helper waits until the scheduler is
asleep again, so assertions never race the scheduler thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from graphile_py.cron.crontab import CronItem, cron_item, parse_crontab
from graphile_py.cron.scheduler import CronScheduler, cron_job_specs, load_crontab_file
from graphile_py.errors import CrontabError
from graphile_py.events import WorkerEvents
from tests.support import TestDatabase
from tests.support.workers import wait_for

REFERENCE = datetime(2021, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


# -- the fake clock --------------------------------------------------------------------


class FakeClock:
    """A wall clock and a timer clock that tests move by hand (one sleeper at a time)."""

    def __init__(self, now: datetime) -> None:
        self._cond = threading.Condition()
        self._now = now
        self._elapsed = 0.0  # what the timers measure
        self._deadline: float | None = None  # of the sleeping scheduler, in _elapsed terms
        self._closed = False

    def now(self) -> datetime:
        with self._cond:
            return self._now

    def sleep(self, seconds: float) -> bool:
        with self._cond:
            deadline = self._elapsed + seconds
            self._deadline = deadline
            self._cond.notify_all()
            while self._elapsed < deadline and not self._closed:
                self._cond.wait(0.05)
            self._deadline = None
            self._cond.notify_all()
            return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def settle(self, timeout: float = 15.0) -> None:
        """Wait until the scheduler sleeps on a timer that has not come due."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._deadline is not None and self._deadline > self._elapsed, timeout
            )
        assert ok, "the cron scheduler did not go back to sleep"

    def jump(self, when: datetime) -> None:
        """Set the wall clock without any time passing for the timers."""
        self.settle()
        with self._cond:
            self._now = when
            self._cond.notify_all()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, firing each due timer at its own time."""
        self.settle()
        with self._cond:
            target = self._elapsed + seconds
        while True:
            with self._cond:
                deadline = self._deadline
                assert deadline is not None
                stop_at = min(deadline, target)
                self._now += timedelta(seconds=stop_at - self._elapsed)
                self._elapsed = stop_at
                self._cond.notify_all()
                if deadline > target:
                    return
            self.settle()

    def set_time(self, when: datetime, increment: timedelta = MINUTE) -> None:
        """graphile-worker's ``setTime``: backwards at once, forwards a step at a time."""
        now = self.now()
        if when < now:
            self.jump(when)
            return
        while now + increment < when:
            self.advance(increment.total_seconds())
            now += increment
        self.advance((when - now).total_seconds())


class Recorder(WorkerEvents):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _add(self, name: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((name, args))

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.calls]

    def of(self, name: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [args for called, args in self.calls if called == name]

    def cron_starting(self, start: datetime) -> None:
        self._add("cron_starting", start)

    def cron_started(self, start: datetime) -> None:
        self._add("cron_started", start)

    def cron_backfill(self, identifiers: Any, timestamp: datetime) -> None:
        self._add("cron_backfill", list(identifiers), timestamp)

    def cron_schedule(self, timestamp: datetime, identifiers: Any) -> None:
        self._add("cron_schedule", timestamp, list(identifiers))

    def cron_scheduled(self, timestamp: datetime, identifiers: Any) -> None:
        self._add("cron_scheduled", timestamp, list(identifiers))

    def cron_premature_timer(self, current: datetime, expected: datetime) -> None:
        self._add("cron_premature_timer", current, expected)

    def cron_overdue_timer(self, current: datetime, expected: datetime) -> None:
        self._add("cron_overdue_timer", current, expected)


# -- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture
def pool(db: TestDatabase) -> Iterator[ConnectionPool[psycopg.Connection[Any]]]:
    p: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        db.dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
    )
    p.open(wait=True, timeout=30)
    yield p
    p.close()


class Harness:
    def __init__(self, db: TestDatabase, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self.db = db
        self.pool = pool
        self.started: list[tuple[CronScheduler, FakeClock | None]] = []

    def start(
        self,
        items: list[CronItem] | str,
        clock: FakeClock | None = None,
        events: WorkerEvents | None = None,
    ) -> CronScheduler:
        if isinstance(items, str):
            items = parse_crontab(items)
        scheduler = CronScheduler(
            items,
            pool=self.pool,
            schema=self.db.schema,
            events=events,
            clock=clock.now if clock else lambda: datetime.now(UTC),
            sleep=clock.sleep if clock else None,
        )
        self.started.append((scheduler, clock))
        scheduler.start()
        return scheduler

    def stop_all(self) -> None:
        for scheduler, clock in self.started:
            if clock is not None:
                clock.close()
            assert scheduler.stop(10), "the scheduler did not stop"

    def known(self) -> list[dict[str, Any]]:
        with self.db.connect(row_factory=dict_row) as conn:
            return conn.execute(
                sql.SQL("select * from {}._private_known_crontabs order by identifier").format(
                    sql.Identifier(self.db.schema)
                )
            ).fetchall()

    def seed_known(
        self, identifier: str, known_since: datetime | str, last_execution: datetime | str | None
    ) -> None:
        """Insert a known row; strings are SQL expressions (``now() - interval '5 hours'``)."""

        def value(v: datetime | str | None) -> sql.Composable:
            if isinstance(v, str):
                return sql.SQL(v)  # type: ignore[arg-type]
            return sql.Literal(v)

        with self.db.connect() as conn:
            conn.execute(
                sql.SQL(
                    "insert into {}._private_known_crontabs (identifier, known_since,"
                    " last_execution) values ({}, {}, {})"
                ).format(
                    sql.Identifier(self.db.schema),
                    sql.Literal(identifier),
                    value(known_since),
                    value(last_execution),
                )
            )

    def jobs(self) -> list[dict[str, Any]]:
        with self.db.connect(row_factory=dict_row) as conn:
            return conn.execute(
                sql.SQL(
                    "select jobs.*, jobs.payload::text as payload_text, tasks.identifier as task,"
                    " queues.queue_name from {s}._private_jobs as jobs"
                    " join {s}._private_tasks as tasks on tasks.id = jobs.task_id"
                    " left join {s}._private_job_queues as queues on queues.id = jobs.job_queue_id"
                    " order by jobs.run_at, jobs.id"
                ).format(s=sql.Identifier(self.db.schema))
            ).fetchall()


@pytest.fixture
def cron(db: TestDatabase, pool: ConnectionPool[psycopg.Connection[Any]]) -> Iterator[Harness]:
    harness = Harness(db, pool)
    try:
        yield harness
    finally:
        harness.stop_all()


def cron_ts(job: dict[str, Any]) -> str:
    return str(json.loads(job["payload_text"])["_cron"]["ts"])


# -- registration and backfill (graphile-worker's cron.test.ts) --------------------------

CRONTAB_DO_IT = "\n0 */4 * * * do_it ?fill=1d\n"


def test_registers_identifiers_without_backfill(cron: Harness) -> None:
    clock = FakeClock(REFERENCE + HOUR + 12.345678 * SECOND)
    assert cron.known() == []
    scheduler = cron.start(CRONTAB_DO_IT, clock)
    assert scheduler.wait_until_running(0)  # start() registered synchronously
    [known] = cron.known()
    assert known["identifier"] == "do_it"
    # The start time at the millisecond precision a Node runner would have used.
    assert known["known_since"] == REFERENCE + HOUR + 12.345 * SECOND
    assert known["last_execution"] is None
    assert cron.jobs() == []


@pytest.mark.parametrize(
    ("hours_ago", "expected"),
    [
        (5, ["2021-01-01T08:00:00.000Z"]),
        (
            25,
            [
                "2020-12-31T12:00:00.000Z",
                "2020-12-31T16:00:00.000Z",
                "2020-12-31T20:00:00.000Z",
                "2021-01-01T00:00:00.000Z",
                "2021-01-01T04:00:00.000Z",
                "2021-01-01T08:00:00.000Z",
            ],
        ),
    ],
)
def test_backfills_known_identifier(cron: Harness, hours_ago: int, expected: list[str]) -> None:
    start = REFERENCE + 10.5 * HOUR
    cron.seed_known("do_it", start - timedelta(days=14), start - hours_ago * HOUR)
    events = Recorder()
    cron.start(CRONTAB_DO_IT, FakeClock(start), events)
    jobs = cron.jobs()
    assert [cron_ts(job) for job in jobs] == expected
    assert all(job["task"] == "do_it" for job in jobs)
    assert all(json.loads(job["payload_text"])["_cron"]["backfilled"] for job in jobs)
    assert [job["run_at"] for job in jobs] == [
        datetime.fromisoformat(ts.replace("Z", "+00:00")) for ts in expected
    ]
    [known] = cron.known()
    assert known["last_execution"] == REFERENCE + 8 * HOUR
    assert [args[1] for args in events.of("cron_backfill")] == [job["run_at"] for job in jobs]
    assert events.names()[0] == "cron_starting"
    assert events.names()[-1] == "cron_started"


@pytest.mark.parametrize(("hours_ago", "low", "high"), [(5, 1, 2), (25, 6, 7)])
def test_backfills_known_identifier_real_clock(
    cron: Harness, hours_ago: int, low: int, high: int
) -> None:
    """The same, exactly as graphile-worker tests it: relative to the real clock."""
    four_hours = 4 * 3600
    now = time.time()
    expected = datetime.fromtimestamp(now - now % four_hours, UTC)
    cron.seed_known("do_it", "now() - interval '14 days'", f"now() - interval '{hours_ago} hours'")
    cron.start(CRONTAB_DO_IT)
    jobs = cron.jobs()
    assert low <= len(jobs) <= high
    assert jobs[0]["task"] == "do_it"
    [known] = cron.known()
    assert known["last_execution"] in (expected, expected + timedelta(seconds=four_hours))


def test_backfill_every_other_minute_since_last_execution(cron: Harness) -> None:
    """Spec 6.5 [verified]: start 14:25:40, last run 10 minutes earlier, fill=5m."""
    start = datetime(2024, 5, 6, 14, 25, 40, tzinfo=UTC)
    cron.seed_known("every2", start - timedelta(days=1), start - 10 * MINUTE)
    cron.start("*/2 * * * * every2 ?fill=5m", FakeClock(start))
    assert [cron_ts(job) for job in cron.jobs()] == [
        "2024-05-06T14:22:00.000Z",
        "2024-05-06T14:24:00.000Z",
    ]
    assert cron.known()[0]["last_execution"] == datetime(2024, 5, 6, 14, 24, tzinfo=UTC)


def test_backfill_respects_each_items_own_period_and_known_since(cron: Harness) -> None:
    start = datetime(2024, 5, 6, 12, 0, 30, tzinfo=UTC)
    # "long" may backfill 10 minutes but only became known 3 minutes ago; "short" was last
    # run long ago but may only backfill 2 minutes; "new" is unknown: registered only.
    cron.seed_known("long", start - 3 * MINUTE, None)
    cron.seed_known("short", start - timedelta(days=3), start - timedelta(days=2))
    cron.start(
        "* * * * * t ?id=long&fill=10m\n* * * * * t ?id=short&fill=2m\n* * * * * t ?id=new&fill=1h",
        FakeClock(start),
    )
    stamps = sorted(cron_ts(job) for job in cron.jobs())
    assert stamps == [
        "2024-05-06T11:58:00.000Z",  # long
        "2024-05-06T11:59:00.000Z",  # long
        "2024-05-06T11:59:00.000Z",  # short (fill=2m: 11:58:30 onwards)
        "2024-05-06T12:00:00.000Z",  # long
        "2024-05-06T12:00:00.000Z",  # short
    ]
    known = {row["identifier"]: row for row in cron.known()}
    assert known["new"]["last_execution"] is None
    assert known["new"]["known_since"] == start
    assert known["long"]["last_execution"] == datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


# -- ticking (graphile-worker's cron-timing.test.ts) ------------------------------------


def test_executes_job_when_expected(cron: Harness) -> None:
    clock = FakeClock(REFERENCE + HOUR)
    events = Recorder()
    cron.start("0 */4 * * * my_task", clock, events)
    assert events.names() == ["cron_starting", "cron_started"]

    clock.set_time(REFERENCE + 3 * HOUR + SECOND)
    assert events.of("cron_schedule") == []

    clock.set_time(REFERENCE + 4 * HOUR + SECOND)
    assert events.of("cron_schedule") == [(REFERENCE + 4 * HOUR, ["my_task"])]
    assert events.of("cron_scheduled") == [(REFERENCE + 4 * HOUR, ["my_task"])]
    [job] = cron.jobs()
    assert job["task"] == "my_task"
    assert job["run_at"] == REFERENCE + 4 * HOUR
    assert job["payload_text"] == '{"_cron":{"ts":"2021-01-01T04:00:00.000Z","backfilled":false}}'
    assert events.of("cron_premature_timer") == []
    assert events.of("cron_overdue_timer") == []


def test_clock_reversal_never_schedules_twice(cron: Harness) -> None:
    clock = FakeClock(REFERENCE + HOUR)
    events = Recorder()
    cron.start("0 */4 * * * my_task", clock, events)
    clock.set_time(REFERENCE + 3 * HOUR + SECOND)
    clock.set_time(REFERENCE + 4 * HOUR + SECOND)
    assert len(events.of("cron_schedule")) == 1

    clock.set_time(REFERENCE + 3 * HOUR + SECOND)  # rewind
    clock.set_time(REFERENCE + 4 * HOUR + SECOND)
    assert len(events.of("cron_schedule")) == 1
    assert events.of("cron_premature_timer")  # the timer fired at 03:01 wall time
    assert len(cron.jobs()) == 1


def test_clock_skew_does_not_prevent_scheduling_on_time(cron: Harness) -> None:
    clock = FakeClock(REFERENCE + HOUR)
    events = Recorder()
    cron.start("0 */4 * * * my_task", clock, events)
    clock.set_time(REFERENCE + 3 * HOUR + SECOND)
    clock.set_time(REFERENCE + 4 * HOUR - 30 * SECOND)
    assert events.of("cron_schedule") == []
    for _ in range(10):
        clock.set_time(REFERENCE + 4 * HOUR - MINUTE)
        assert events.of("cron_schedule") == []
        clock.set_time(REFERENCE + 4 * HOUR - 30 * SECOND)
        assert events.of("cron_schedule") == []
    assert events.of("cron_premature_timer")
    clock.set_time(REFERENCE + 4 * HOUR + SECOND)
    assert events.of("cron_schedule") == [(REFERENCE + 4 * HOUR, ["my_task"])]
    assert len(cron.jobs()) == 1


def test_job_key_replaces_the_pending_job(cron: Harness) -> None:
    clock = FakeClock(REFERENCE + HOUR)
    cron.start("0 */4 * * * my_task ?jobKey=foo", clock)
    clock.set_time(REFERENCE + 4 * HOUR + SECOND)
    [first] = cron.jobs()
    assert first["key"] == "foo"
    assert cron_ts(first) == "2021-01-01T04:00:00.000Z"

    clock.set_time(REFERENCE + 8 * HOUR + SECOND)
    [second] = cron.jobs()
    assert second["id"] == first["id"]
    assert second["key"] == "foo"
    assert cron_ts(second) == "2021-01-01T08:00:00.000Z"
    assert second["run_at"] == REFERENCE + 8 * HOUR
    assert second["revision"] == first["revision"] + 1


def test_late_timer_catches_up_minute_by_minute(cron: Harness) -> None:
    clock = FakeClock(REFERENCE + 30 * SECOND)
    events = Recorder()
    cron.start("* * * * * every_minute", clock, events)
    clock.set_time(REFERENCE + MINUTE + SECOND)  # 00:01 scheduled on time
    clock.jump(REFERENCE + 5 * MINUTE + 11 * SECOND)  # the machine slept
    clock.advance(60)  # the 00:02 timer fires at 00:06:10 wall time
    stamps = [cron_ts(job) for job in cron.jobs()]
    assert stamps == [f"2021-01-01T00:0{m}:00.000Z" for m in range(1, 7)]
    overdue = events.of("cron_overdue_timer")
    current, expected = overdue[0]
    assert expected == REFERENCE + 2 * MINUTE
    assert REFERENCE + 6 * MINUTE + 10 * SECOND <= current < REFERENCE + 6 * MINUTE + 11 * SECOND
    assert len(overdue) == 4  # 00:02 to 00:05; 00:06 is the current minute
    payloads = [json.loads(job["payload_text"]) for job in cron.jobs()]
    assert not any(p["_cron"]["backfilled"] for p in payloads)


def test_job_shape_matches_graphile_worker(cron: Harness) -> None:
    clock = FakeClock(REFERENCE + 30 * SECOND)
    cron.start(
        "* * * * * send/report ?id=report&max=3&queue=reports&priority=-5"
        ' {b: 1.0, "2": [1e21, 0.5], a: "x", "1": null}',
        clock,
    )
    clock.set_time(REFERENCE + MINUTE + SECOND)
    [job] = cron.jobs()
    assert job["task"] == "send/report"
    assert job["payload_text"] == (
        '{"1":null,"2":[1e+21,0.5],"b":1,"a":"x",'
        '"_cron":{"ts":"2021-01-01T00:01:00.000Z","backfilled":false}}'
    )
    assert job["run_at"] == REFERENCE + MINUTE
    assert (job["queue_name"], job["priority"], job["max_attempts"]) == ("reports", -5, 3)
    assert job["key"] is None
    assert job["flags"] is None


def test_cron_job_specs_document() -> None:
    items = parse_crontab("* * * * * t ?jobKey=k&jobKeyMode=preserve_run_at {x: 1}")
    ts = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    assert cron_job_specs(items, ts) == (
        '[{"identifier":"t","job":{"task":"t","payload":{"x":1,"_cron":'
        '{"ts":"2024-01-02T03:04:00.000Z","backfilled":false}},"runAt":"2024-01-02T03:04:00.000Z",'
        '"jobKey":"k","jobKeyMode":"preserve_run_at"}}]'
    )
    known = [("t", datetime(2024, 1, 1, tzinfo=UTC), None)]
    assert cron_job_specs(items, ts, backfilled=True, known=known).endswith(
        '"known_since":"2024-01-01T00:00:00.000Z","last_execution":null}]'
    )


# -- several runners -------------------------------------------------------------------


def test_two_schedulers_schedule_each_minute_once(cron: Harness) -> None:
    crontab = "* * * * * tick ?fill=10m\n*/2 * * * * tock"
    cron.seed_known("tick", REFERENCE - HOUR, None)
    clocks = [FakeClock(REFERENCE + 30 * SECOND), FakeClock(REFERENCE + 30 * SECOND)]
    barrier = threading.Barrier(2)

    def start(clock: FakeClock) -> None:
        barrier.wait()
        cron.start(crontab, clock)

    threads = [threading.Thread(target=start, args=(clock,)) for clock in clocks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    def advance(clock: FakeClock) -> None:
        barrier.wait()
        clock.set_time(REFERENCE + 10 * MINUTE + SECOND)

    threads = [threading.Thread(target=advance, args=(clock,)) for clock in clocks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    per_minute = Counter((job["task"], cron_ts(job)) for job in cron.jobs())
    assert set(per_minute.values()) == {1}
    ticks = sorted(ts for task, ts in per_minute if task == "tick")
    tocks = sorted(ts for task, ts in per_minute if task == "tock")
    # Backfill 23:51 to 00:00 (start 00:00:30), then ticks 00:01 to 00:10.
    assert len(ticks) == 20
    assert ticks[0] == "2020-12-31T23:51:00.000Z"
    assert ticks[-1] == "2021-01-01T00:10:00.000Z"
    assert tocks == [f"2021-01-01T00:{m:02d}:00.000Z" for m in range(2, 11, 2)]


def test_concurrent_backfill_by_many_schedulers(cron: Harness) -> None:
    """Real clock: six schedulers start at once and backfill the same minutes."""
    cron.seed_known("busy", "now() - interval '1 hour'", None)
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        cron.start("* * * * * busy ?fill=30m")

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    per_minute = Counter(cron_ts(job) for job in cron.jobs())
    assert set(per_minute.values()) == {1}
    assert 30 <= len(per_minute) <= 31


# -- events, errors, stopping ------------------------------------------------------------


def test_event_order_and_a_raising_hook(cron: Harness) -> None:
    class Raising(Recorder):
        def cron_schedule(self, timestamp: datetime, identifiers: Any) -> None:
            super().cron_schedule(timestamp, identifiers)
            raise RuntimeError("hook failed")

    start = REFERENCE + 30 * SECOND
    cron.seed_known("a", start - HOUR, start - MINUTE)
    clock = FakeClock(start)
    events = Raising()
    cron.start("* * * * * a ?fill=5m\n*/2 * * * * b", clock, events)
    clock.set_time(REFERENCE + 2 * MINUTE + SECOND)
    assert events.names() == [
        "cron_starting",
        "cron_backfill",
        "cron_started",
        "cron_schedule",
        "cron_scheduled",
        "cron_schedule",
        "cron_scheduled",
    ]
    assert events.of("cron_backfill") == [(["a"], REFERENCE)]
    assert events.of("cron_scheduled") == [
        (REFERENCE + MINUTE, ["a"]),
        (REFERENCE + 2 * MINUTE, ["a", "b"]),
    ]
    assert len(cron.jobs()) == 4


def test_errors_restart_cron_with_backoff(
    cron: Harness, db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    table = sql.SQL("{}._private_known_crontabs").format(sql.Identifier(db.schema))
    with db.connect() as conn:
        conn.execute(sql.SQL("alter table {} rename to hidden_crontabs").format(table))
    caplog.set_level(logging.ERROR, logger="graphile_py.cron")
    scheduler = cron.start("* * * * * t")
    wait_for(lambda: any("(attempt 2)" in r.getMessage() for r in caplog.records))
    assert not scheduler.wait_until_running(0)
    assert scheduler.running
    first = caplog.records[0].getMessage()
    assert first.startswith("Cron hit an error; restarting in ")
    assert "ms (attempt 1): " in first
    with db.connect() as conn:
        conn.execute(
            sql.SQL("alter table {}.hidden_crontabs rename to _private_known_crontabs").format(
                sql.Identifier(db.schema)
            )
        )
    assert scheduler.wait_until_running(10)
    assert [row["identifier"] for row in cron.known()] == ["t"]


def test_a_failing_match_function_restarts_cron(
    cron: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def flaky(moment: datetime) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("flaky matcher")
        return moment.minute == 1

    clock = FakeClock(REFERENCE + 30 * SECOND)
    cron.start([CronItem("t", flaky, backfill_period=120)], clock)
    clock.set_time(REFERENCE + MINUTE + SECOND)  # the 00:01 tick raises, then backoff
    clock.set_time(REFERENCE + 2 * MINUTE + SECOND)  # restarted: 00:01 is backfilled
    assert "Cron hit an error; restarting in " in caplog.text
    assert "flaky matcher" in caplog.text
    [job] = cron.jobs()
    assert json.loads(job["payload_text"])["_cron"] == {
        "ts": "2021-01-01T00:01:00.000Z",
        "backfilled": True,
    }


def test_stop_is_prompt(cron: Harness) -> None:
    scheduler = cron.start([cron_item("0 0 1 1 *", "yearly")])
    assert scheduler.wait_until_running(5)
    started = time.monotonic()
    assert scheduler.stop(5)
    assert time.monotonic() - started < 1
    assert not scheduler.running


def test_no_items_means_no_thread(cron: Harness) -> None:
    scheduler = cron.start([])
    assert not scheduler.running
    assert scheduler.stop()


def test_duplicate_identifiers_are_refused(
    db: TestDatabase, pool: ConnectionPool[psycopg.Connection[Any]]
) -> None:
    items = [cron_item("* * * * *", "a"), cron_item("0 * * * *", "a")]
    with pytest.raises(CrontabError, match="duplicate identifiers found: 'a'"):
        CronScheduler(items, pool=pool, schema=db.schema)


# -- the crontab file --------------------------------------------------------------------


def test_missing_crontab_file_disables_cron(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="graphile_py.cron")
    path = tmp_path / "crontab"
    assert load_crontab_file(path) == []
    assert f"Failed to read crontab file '{path}'; cron is disabled" in caplog.text


def test_crontab_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CrontabError, match=f"Failed to read crontab file '{tmp_path}'"):
        load_crontab_file(tmp_path)
    path = tmp_path / "crontab"
    path.write_text("# nightly\n0 4 * * * nightly\n* * * * nope\n")
    with pytest.raises(CrontabError) as info:
        load_crontab_file(path)
    assert info.value.node_message == (
        f"Could not process line '3' of crontab file '{path}': '* * * * nope'"
    )
    assert (info.value.line, info.value.column) == (3, 9)  # where the 5th field should be
    path.write_text("# nightly\n0 4 * * * nightly ?fill=1h\n")
    [item] = load_crontab_file(path)
    assert (item.identifier, item.backfill_period) == ("nightly", 3600)
