"""Local queue, batched writes, events and task time limits, on a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from psycopg import sql

from graphile_py import Job, JobSpec, TaskRegistry, WorkerEvents, add_job, add_jobs
from graphile_py.pool.execution import error_summary
from tests.support import TestDatabase
from tests.support.workers import (
    Recorder,
    jobs_rows,
    queue_rows,
    run_once,
    running_pool,
    wait_for,
)

BATCHED = {
    "local_queue_size": 50,
    "complete_job_batch_delay": 0.0,
    "fail_job_batch_delay": 0.0,
}


def _add_many(db: TestDatabase, specs: list[JobSpec]) -> list[Job]:
    with db.connect() as conn:
        return add_jobs(conn, specs, schema=db.schema)


@pytest.mark.parametrize("options", [BATCHED, {"local_queue_size": 3}], ids=["batched", "small"])
def test_local_queue_runs_every_job_once_and_keeps_queues_serial(
    db: TestDatabase, options: dict[str, Any]
) -> None:
    _add_many(
        db,
        [JobSpec("work", {"n": n}, queue_name=f"q{n % 3}") for n in range(60)]
        + [JobSpec("work", {"n": 100 + n}) for n in range(60)],
    )
    lock = threading.Lock()
    running: dict[str, int] = {}
    overlaps: list[str] = []
    seen = Recorder()

    def work(payload: dict[str, int], helpers: Any) -> None:
        queue = helpers.get_queue_name()
        if queue is not None:
            with lock:
                running[queue] = running.get(queue, 0) + 1
                if running[queue] > 1:
                    overlaps.append(queue)
        time.sleep(0.002)
        seen.add(payload["n"])
        if queue is not None:
            with lock:
                running[queue] -= 1

    threads = [
        threading.Thread(
            target=run_once, args=(db, {"work": work}), kwargs={"concurrency": 6, **options}
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert overlaps == []
    assert sorted(seen.items) == sorted([*range(60), *range(100, 160)])
    assert jobs_rows(db) == []
    assert all(row["locked_by"] is None for row in queue_rows(db))


def test_local_queue_hands_unstarted_jobs_back_at_shutdown(db: TestDatabase) -> None:
    entered = threading.Event()
    release = threading.Event()
    _add_many(db, [JobSpec("slow", {"n": n}) for n in range(10)])
    try:
        with running_pool(
            db,
            {"slow": lambda p, h: (entered.set(), release.wait(10))},
            concurrency=1,
            local_queue_size=10,
        ) as pool:
            assert entered.wait(10)
            # One job runs; the other nine sit in the local queue, locked by this pool.
            locked = [row for row in jobs_rows(db) if row["locked_by"] == pool.id]
            assert len(locked) == 10
            pool.request_stop("test")
            time.sleep(0.3)
            release.set()
    finally:
        release.set()
    rows = jobs_rows(db)
    assert len(rows) == 9
    assert all(row["locked_by"] is None and row["attempts"] == 0 for row in rows)


def test_local_queue_ttl_returns_jobs_nobody_took(db: TestDatabase) -> None:
    entered = threading.Event()
    release = threading.Event()
    _add_many(db, [JobSpec("slow", {"n": n}) for n in range(5)])
    try:
        with running_pool(
            db,
            {"slow": lambda p, h: (entered.set(), release.wait(10))},
            concurrency=1,
            local_queue_size=5,
            local_queue_ttl=0.3,
            poll_interval=60.0,
        ):
            assert entered.wait(10)
            wait_for(lambda: sum(r["locked_by"] is None for r in jobs_rows(db)) == 4, timeout=10)
            release.set()
    finally:
        release.set()
    assert all(row["attempts"] == 0 for row in jobs_rows(db) if row["locked_by"] is None)


class _CountingGetJob(WorkerEvents):
    def __init__(self) -> None:
        self.get_job_calls = 0

    def worker_get_job_start(self, worker_id: str) -> None:
        self.get_job_calls += 1  # under the GIL: a lost update only lowers the count


def test_idle_local_queue_waits_for_pulses_and_fetches_back_to_back_when_busy(
    db: TestDatabase,
) -> None:
    # An idle pool once fetched ~2,500 times a second: each empty fetch's wake-up started
    # the next waiting worker's fetch. Idle workers must wait for a pulse or the poll
    # interval; a non-empty fetch must let the next one follow at once.
    events = _CountingGetJob()
    seen = Recorder()
    with running_pool(
        db,
        {"job": lambda p, h: seen.add(p["n"])},
        concurrency=8,
        local_queue_size=10,
        poll_interval=60.0,
        events=events,
    ):
        time.sleep(1.5)
        assert events.get_job_calls < 40, f"{events.get_job_calls} get_job calls while idle"
        _add_many(db, [JobSpec("job", {"n": n}) for n in range(35)])
        wait_for(lambda: len(seen.items) == 35, timeout=10)
    assert sorted(seen.items) == list(range(35))


def test_batched_writes_complete_and_fail_in_batches(db: TestDatabase) -> None:
    _add_many(db, [JobSpec("maybe", {"n": n}) for n in range(40)])

    def maybe(payload: dict[str, int], helpers: Any) -> None:
        if payload["n"] % 4 == 0:
            raise RuntimeError(f"n={payload['n']}")

    run_once(
        db,
        {"maybe": maybe},
        concurrency=4,
        complete_job_batch_delay=0.05,
        fail_job_batch_delay=0.05,
        local_queue_size=8,
    )
    rows = jobs_rows(db)
    assert sorted(row["payload"]["n"] for row in rows) == list(range(0, 40, 4))
    assert all(row["attempts"] == 1 and row["locked_by"] is None for row in rows)
    assert {error_summary(row["last_error"]) for row in rows} == {f"n={n}" for n in range(0, 40, 4)}


def test_forbidden_flags_bypass_the_local_queue(db: TestDatabase) -> None:
    with db.connect() as conn:
        add_job(conn, "flagged", "skip", flags=["paused"], schema=db.schema)
        add_job(conn, "flagged", "run", schema=db.schema)
    seen = Recorder()
    run_once(
        db, {"flagged": lambda p, h: seen.add(p)}, local_queue_size=5, forbidden_flags=["paused"]
    )
    assert seen.items == ["run"]
    assert [row["attempts"] for row in jobs_rows(db)] == [0]


class RecordingEvents(WorkerEvents):
    def __init__(self) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()

    def _note(self, name: str) -> None:
        with self._lock:
            self.names.append(name)

    def pool_create(self, pool: Any) -> None:
        self._note("pool_create")

    def worker_create(self, worker_id: str, tasks: Any) -> None:
        self._note("worker_create")

    def pool_listen_success(self, pool: Any) -> None:
        self._note("pool_listen_success")

    def pool_listen_notification(self, pool: Any, channel: str, payload: str) -> None:
        self._note(f"notification:{channel}")

    def job_start(self, worker_id: str, job: Job) -> None:
        self._note("job_start")

    def job_success(self, worker_id: str, job: Job) -> None:
        self._note("job_success")

    def job_error(self, worker_id: str, job: Job, error: BaseException, batch: Any) -> None:
        self._note("job_error")

    def job_failed(self, worker_id: str, job: Job, error: BaseException, batch: Any) -> None:
        self._note("job_failed")

    def job_complete(self, worker_id: str, job: Job, error: BaseException | None) -> None:
        self._note("job_complete")

    def pool_graceful_shutdown(self, pool: Any, message: str) -> None:
        self._note("pool_graceful_shutdown")

    def worker_stop(self, worker_id: str, error: BaseException | None) -> None:
        self._note("worker_stop")

    def pool_release(self, pool: Any) -> None:
        self._note("pool_release")


def test_events_fire_in_order(db: TestDatabase) -> None:
    events = RecordingEvents()
    tasks = {"ok": lambda p, h: None, "bad": lambda p, h: 1 / 0}
    with running_pool(db, tasks, concurrency=3, events=events, poll_interval=60.0):
        wait_for(lambda: "pool_listen_success" in events.names)
        with db.connect() as conn:
            add_job(conn, "ok", schema=db.schema)
            add_job(conn, "bad", max_attempts=1, schema=db.schema)
        wait_for(lambda: events.names.count("job_complete") == 2)
    names = events.names
    assert names[:4] == ["pool_create", "worker_create", "worker_create", "worker_create"]
    assert names.count("notification:jobs:insert") == 2
    assert names.count("job_start") == 2 and names.count("job_success") == 1
    assert names.count("job_error") == 1 and names.count("job_failed") == 1
    assert names.index("job_error") < names.index("job_failed")
    assert names[-1] == "pool_release"
    shutdown = names.index("pool_graceful_shutdown")
    assert [n for n in names[shutdown:] if n == "worker_stop"] == ["worker_stop"] * 3
    assert names.count("worker_stop") == 3


def test_a_failing_event_hook_never_kills_a_worker(db: TestDatabase) -> None:
    class Broken(WorkerEvents):
        def job_start(self, worker_id: str, job: Job) -> None:
            raise RuntimeError("hook bug")

    seen = Recorder()
    with db.connect() as conn:
        add_job(conn, "ok", "x", schema=db.schema)
    run_once(db, {"ok": lambda p, h: seen.add(p)}, events=Broken())
    assert seen.items == ["x"]
    assert jobs_rows(db) == []


def test_cooperative_task_stops_at_its_time_limit(db: TestDatabase) -> None:
    registry = TaskRegistry()

    @registry.task(timeout=0.3)
    def polite(payload: Any, helpers: Any) -> None:
        if helpers.abort_event.wait(5):
            raise TimeoutError("stopped because asked to")

    with db.connect() as conn:
        add_job(conn, "polite", schema=db.schema)
    started = time.monotonic()
    run_once(db, registry)
    assert time.monotonic() - started < 4
    row = jobs_rows(db)[0]
    assert error_summary(row["last_error"]) == "stopped because asked to"
    assert row["attempts"] == 1 and row["locked_by"] is None


def test_stuck_task_is_failed_and_its_worker_replaced(db: TestDatabase) -> None:
    release = threading.Event()
    seen = Recorder()
    registry = TaskRegistry()

    @registry.task(timeout=0.2)
    def stuck(payload: Any, helpers: Any) -> None:
        release.wait(20)  # ignores abort_event

    registry.add("quick", lambda p, h: seen.add(p))
    with db.connect() as conn:
        add_job(conn, "stuck", schema=db.schema, priority=-1)
        add_job(conn, "quick", "after", schema=db.schema)
    try:
        with running_pool(db, registry, concurrency=1, task_timeout_grace=0.2, poll_interval=0.2):
            # The only worker is stuck; the replacement must run the next job.
            wait_for(lambda: seen.items == ["after"], timeout=10)
    finally:
        release.set()
    rows = jobs_rows(db)
    assert len(rows) == 1
    assert rows[0]["last_error"].startswith("Task timed out after 0.2s")
    assert rows[0]["locked_by"] is None


def test_default_task_timeout_from_options(db: TestDatabase) -> None:
    with db.connect() as conn:
        add_job(conn, "sleepy", schema=db.schema)
    run_once(
        db,
        {
            "sleepy": lambda p, h: (
                h.abort_event.wait(5) and (_ for _ in ()).throw(TimeoutError("late"))
            )
        },
        task_timeout=0.2,
    )
    assert error_summary(jobs_rows(db)[0]["last_error"]) == "late"


def test_batch_delay_flushes_at_shutdown(db: TestDatabase) -> None:
    seen = Recorder()
    with running_pool(
        db, {"t": lambda p, h: seen.add(p)}, complete_job_batch_delay=30.0, poll_interval=60.0
    ):
        with db.connect() as conn:
            for n in range(5):
                add_job(conn, "t", n, schema=db.schema)
        wait_for(lambda: len(seen) == 5)
        assert len(jobs_rows(db)) == 5  # completions still waiting in the batch
    assert jobs_rows(db) == []


def test_node_time_option_uses_the_client_clock_for_due_jobs(
    db: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime as dt

    import graphile_py.pool.claim_loop

    with db.connect() as conn:
        job = add_job(conn, "due", schema=db.schema)
        conn.execute(
            sql.SQL("update {}._private_jobs set run_at = now() + interval '1 hour'").format(
                sql.Identifier(db.schema)
            )
        )
    seen = Recorder()
    tasks = {"due": lambda p, h: seen.add(h.job.id)}
    run_once(db, tasks, use_node_time=True)
    assert seen.items == []  # by both clocks, the job is not due yet

    class TwoHoursAhead(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> TwoHoursAhead:  # type: ignore[override]
            return super().now(tz) + dt.timedelta(hours=2)

    monkeypatch.setattr(graphile_py.pool.claim_loop, "datetime", TwoHoursAhead)
    run_once(db, tasks)
    assert seen.items == []  # the database's clock decides by default
    run_once(db, tasks, use_node_time=True)
    assert seen.items == [job.id]  # this machine's clock decides with use_node_time
