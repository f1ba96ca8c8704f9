"""The worker pool against a real PostgreSQL: claiming, queues, retries, shutdown, LISTEN."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg import sql

from graphile_py import JobSpec, WorkerOptions, WorkerPool, add_job, add_jobs
from graphile_py.pool.execution import error_summary
from tests.support import TestDatabase
from tests.support.workers import (
    Recorder,
    jobs_rows,
    make_pool,
    queue_rows,
    run_once,
    running_pool,
    wait_for,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _add(db: TestDatabase, identifier: str, payload: object = None, **kwargs: object) -> int:
    with db.connect() as conn:
        return add_job(conn, identifier, payload, schema=db.schema, **kwargs).id  # type: ignore[arg-type]


def test_run_once_runs_every_ready_job_and_deletes_it(db: TestDatabase) -> None:
    seen = Recorder()
    ids = [_add(db, "record", {"n": n}) for n in range(5)]
    future = _add(db, "record", {"n": 99}, run_at=datetime.now(UTC) + timedelta(hours=1))

    assert run_once(db, {"record": lambda payload, helpers: seen.add(payload["n"])}) == 0

    assert sorted(seen.items) == [0, 1, 2, 3, 4]
    remaining = jobs_rows(db)
    assert [row["id"] for row in remaining] == [future]
    assert remaining[0]["attempts"] == 0
    assert set(ids).isdisjoint(row["id"] for row in remaining)


def test_claim_order_is_priority_then_run_at(db: TestDatabase) -> None:
    now = datetime.now(UTC)
    _add(db, "record", "late-low", run_at=now - timedelta(seconds=1), priority=5)
    _add(db, "record", "early-low", run_at=now - timedelta(seconds=9), priority=5)
    _add(db, "record", "urgent", run_at=now - timedelta(seconds=1), priority=-3)
    _add(db, "record", "default", run_at=now - timedelta(seconds=5))
    order = Recorder()

    run_once(db, {"record": lambda payload, helpers: order.add(payload)}, concurrency=1)

    assert order.items == ["urgent", "default", "early-low", "late-low"]


def test_claim_marks_job_and_queue_with_the_pool_id(db: TestDatabase) -> None:
    _add(db, "inspect", queue_name="mutex")
    observed: dict[str, object] = {}

    def inspect(payload: object, helpers: object) -> None:
        observed["job"] = jobs_rows(db)[0]
        observed["queue"] = queue_rows(db)[0]
        observed["helpers_job"] = helpers.job  # type: ignore[attr-defined]

    pool = make_pool(db, {"inspect": inspect}, once=True)
    pool.run()

    job_row, queue_row = observed["job"], observed["queue"]
    assert pool.id.startswith("otpool-") and len(pool.id) == len("otpool-") + 18
    assert job_row["locked_by"] == pool.id and job_row["locked_at"] is not None  # type: ignore[index]
    assert job_row["attempts"] == 1  # type: ignore[index]
    assert queue_row["locked_by"] == pool.id and queue_row["queue_name"] == "mutex"  # type: ignore[index]
    assert observed["helpers_job"].attempts == 1  # type: ignore[attr-defined]
    assert queue_rows(db)[0]["locked_by"] is None  # released after completion


def test_updated_at_is_not_touched_by_claim_complete_or_fail(db: TestDatabase) -> None:
    job_id = _add(db, "fails")
    before = jobs_rows(db)[0]["updated_at"]

    def fails(payload: object, helpers: object) -> None:
        raise RuntimeError("no")

    run_once(db, {"fails": fails})
    assert jobs_rows(db, f"jobs.id = {job_id}")[0]["updated_at"] == before


def test_named_queue_runs_one_job_at_a_time(db: TestDatabase) -> None:
    with db.connect() as conn:
        add_jobs(
            conn,
            [JobSpec("serial", {"n": n}, queue_name="one-at-a-time") for n in range(12)]
            + [JobSpec("serial", {"n": 100 + n}) for n in range(6)],
            schema=db.schema,
        )
    lock = threading.Lock()
    running = {"queued": 0, "max_queued": 0, "free": 0, "max_free": 0}

    def serial(payload: dict[str, int], helpers: object) -> None:
        kind = "free" if payload["n"] >= 100 else "queued"
        with lock:
            running[kind] += 1
            running[f"max_{kind}"] = max(running[f"max_{kind}"], running[kind])
        time.sleep(0.03)
        with lock:
            running[kind] -= 1

    # Two pools with four workers each compete for the same queue.
    threads = [
        threading.Thread(target=run_once, args=(db, {"serial": serial}), kwargs={"concurrency": 4})
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert running["max_queued"] == 1
    assert running["max_free"] > 1  # jobs without a queue do run in parallel
    assert jobs_rows(db) == []
    assert all(row["locked_at"] is None for row in queue_rows(db))


def test_failure_backoff_is_exp_of_attempts_and_errors_are_recorded(db: TestDatabase) -> None:
    job_id = _add(db, "flaky", {"x": 1})

    def flaky(payload: object, helpers: object) -> None:
        raise ValueError(f"attempt {helpers.job.attempts} failed")  # type: ignore[attr-defined]

    for attempt in (1, 2, 3):
        started = _db_now(db)
        run_once(db, {"flaky": flaky})
        row = jobs_rows(db)[0]
        assert row["id"] == job_id
        assert row["attempts"] == attempt
        assert error_summary(row["last_error"]) == f"attempt {attempt} failed"
        assert row["locked_at"] is None and row["locked_by"] is None
        delay = (row["run_at"] - started).total_seconds()
        assert math.exp(attempt) - 0.05 <= delay <= math.exp(attempt) + 2.0
        _make_due(db, job_id)


def test_job_fails_permanently_when_attempts_reach_max(db: TestDatabase) -> None:
    job_id = _add(db, "always_fails", max_attempts=2)
    calls = Recorder()

    def always_fails(payload: object, helpers: object) -> None:
        calls.add(helpers.job.attempts)  # type: ignore[attr-defined]
        raise RuntimeError("broken")

    run_once(db, {"always_fails": always_fails})
    _make_due(db, job_id)
    run_once(db, {"always_fails": always_fails})
    _make_due(db, job_id)
    run_once(db, {"always_fails": always_fails})  # nothing left to try

    assert calls.items == [1, 2]
    row = jobs_rows(db)[0]
    assert (row["attempts"], row["max_attempts"], row["is_available"]) == (2, 2, False)
    assert row["last_error"].startswith("broken\n\nTraceback (most recent call last):\n")


def test_batch_job_partial_failure_keeps_only_failed_items(db: TestDatabase) -> None:
    job_id = _add(db, "batch", [{"id": 1}, {"id": 2}, {"id": 3}])

    def batch(payload: list[dict[str, int]], helpers: object) -> list[object]:
        return [ValueError(f"item {item['id']}") if item["id"] != 2 else None for item in payload]

    run_once(db, {"batch": batch})

    row = jobs_rows(db)[0]
    assert row["id"] == job_id
    assert row["payload"] == [{"id": 1}, {"id": 3}]
    assert row["attempts"] == 1
    assert row["last_error"] == "Batch failures:\nitem 1\nitem 3"


def test_async_tasks_run_alongside_sync_ones(db: TestDatabase) -> None:
    import asyncio

    seen = Recorder()

    async def async_task(payload: dict[str, int], helpers: object) -> None:
        await asyncio.sleep(0.01)
        seen.add(("async", payload["n"]))

    for n in range(3):
        _add(db, "async_task", {"n": n})
        _add(db, "sync_task", {"n": n})
    run_once(
        db,
        {"async_task": async_task, "sync_task": lambda p, h: seen.add(("sync", p["n"]))},
        concurrency=3,
    )
    assert sorted(seen.items) == [(kind, n) for kind in ("async", "sync") for n in range(3)]


def test_unknown_task_is_left_untouched_for_other_workers(db: TestDatabase) -> None:
    _add(db, "someone_elses_task")
    _add(db, "mine")
    run_once(db, {"mine": lambda payload, helpers: None})
    rows = jobs_rows(db)
    assert len(rows) == 1
    assert rows[0]["attempts"] == 0 and rows[0]["locked_at"] is None


def test_forbidden_flags_skip_jobs(db: TestDatabase) -> None:
    _add(db, "flagged", "skip me", flags=["slow", "expensive"])
    _add(db, "flagged", "run me", flags=["cheap"])
    _add(db, "flagged", "no flags")
    seen = Recorder()
    run_once(db, {"flagged": lambda p, h: seen.add(p)}, forbidden_flags=lambda: ["expensive"])
    assert sorted(seen.items) == ["no flags", "run me"]
    assert [row["attempts"] for row in jobs_rows(db)] == [0]


def test_notify_wakes_an_idle_worker_quickly(db: TestDatabase) -> None:
    started: dict[int, float] = {}
    added: dict[int, float] = {}

    def record(payload: dict[str, int], helpers: object) -> None:
        started[payload["n"]] = time.perf_counter()

    latencies = []
    with (
        running_pool(db, {"record": record}, poll_interval=60.0, concurrency=2),
        db.connect() as conn,
    ):
        time.sleep(0.3)  # both workers have fetched nothing and are waiting
        for n in range(20):
            added[n] = time.perf_counter()
            add_job(conn, "record", {"n": n}, schema=db.schema)
            wait_for(lambda n=n: n in started, timeout=2.0, interval=0.001)
            latencies.append(started[n] - added[n])
            time.sleep(0.05)
    latencies.sort()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "notify-latency.txt").write_text(
        "add_job -> task start with poll_interval=60s, 20 jobs (ms): "
        + ", ".join(f"{value * 1000:.1f}" for value in latencies)
        + "\n"
    )
    assert max(latencies) < 2.0


def test_listener_reconnects_after_its_connection_is_killed(db: TestDatabase) -> None:
    seen = Recorder()
    with running_pool(db, {"record": lambda p, h: seen.add(p)}, poll_interval=60.0) as pool:
        with db.connect() as conn:
            killed = conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = current_database() and query ilike 'LISTEN%'"
            ).fetchall()
        assert killed == [(True,)]
        wait_for(lambda: pool.listener_reconnects >= 1, timeout=10)
        _add(db, "record", "after reconnect")
        wait_for(lambda: len(seen) == 1, timeout=2.0)
    assert seen.items == ["after reconnect"]


def test_graceful_shutdown_lets_running_job_finish(db: TestDatabase) -> None:
    entered = threading.Event()
    finished = Recorder()

    def slow(payload: object, helpers: object) -> None:
        entered.set()
        time.sleep(0.5)
        finished.add(payload)

    _add(db, "slow", "x")
    with running_pool(db, {"slow": slow}) as pool:
        assert entered.wait(5)
        pool.request_stop("test")
        wait_for(lambda: pool.stopping, timeout=5)
    assert finished.items == ["x"]
    assert jobs_rows(db) == []


def test_shutdown_timeout_fails_the_stuck_job_and_leaves_nothing_locked(db: TestDatabase) -> None:
    entered = threading.Event()
    release = threading.Event()
    aborted = Recorder()

    def stuck(payload: object, helpers: object) -> None:
        entered.set()
        if helpers.abort_event.wait(5):  # type: ignore[attr-defined]
            aborted.add(True)
        release.wait(10)  # ignores the abort: shutdown must not wait for it forever

    job_id = _add(db, "stuck", queue_name="q")
    try:
        with running_pool(
            db, {"stuck": stuck}, graceful_shutdown_abort_timeout=0.1, shutdown_timeout=0.5
        ) as pool:
            assert entered.wait(5)
            pool.request_stop("SIGTERM")
    finally:
        release.set()
    row = jobs_rows(db)[0]
    assert row["id"] == job_id
    assert row["locked_at"] is None and row["locked_by"] is None
    assert row["attempts"] == 1
    assert "did not finish within the 0.5s grace period" in row["last_error"]
    assert queue_rows(db)[0]["locked_by"] is None
    assert aborted.items == [True]


def test_forced_shutdown_fails_running_job_with_signal_message(db: TestDatabase) -> None:
    entered = threading.Event()
    release = threading.Event()
    _add(db, "stuck")
    try:
        with running_pool(db, {"stuck": lambda p, h: (entered.set(), release.wait(10))}) as pool:
            assert entered.wait(5)
            started = _db_now(db)
            pool.request_stop("SIGINT")
            pool.request_stop("SIGTERM", force=True)
    finally:
        release.set()
    row = jobs_rows(db)[0]
    assert row["last_error"] == "Forced worker shutdown due to SIGTERM"
    assert row["locked_by"] is None and row["attempts"] == 1
    assert (row["run_at"] - started).total_seconds() >= math.e - 0.05


def test_breaking_migration_notification_stops_pool_with_exit_57(db: TestDatabase) -> None:
    pool = make_pool(db, {"noop": lambda p, h: None}, poll_interval=60.0)
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("exit", pool.run()))
    thread.start()
    wait_for(lambda: pool._listener is not None and pool.wait_listening(0.1), timeout=10)
    with db.connect() as conn:
        conn.execute(
            "select pg_notify('worker:migrate', %s)", ('{"migrationNumber":21,"breaking":false}',)
        )
        time.sleep(0.3)
        assert not pool.stopping  # non-breaking announcements are ignored
        conn.execute(
            "select pg_notify('worker:migrate', %s)", ('{"migrationNumber":22,"breaking":true}',)
        )
    thread.join(15)
    assert result == {"exit": 57}


def test_garbage_job_notifications_are_tolerated(db: TestDatabase) -> None:
    seen = Recorder()
    with running_pool(db, {"record": lambda p, h: seen.add(p)}, poll_interval=60.0):
        with db.connect() as conn:
            for payload in ("", "garbage", '{"count":-1}', '{"count":"x"}'):
                conn.execute("select pg_notify('jobs:insert', %s)", (payload,))
        _add(db, "record", "still works")
        wait_for(lambda: len(seen) == 1, timeout=2.0)


def test_stale_lock_sweep_unlocks_jobs_locked_over_four_hours_ago(db: TestDatabase) -> None:
    stale = _add(db, "noop", queue_name="stale-q")
    recent = _add(db, "other")
    ident = sql.Identifier(db.schema)
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "update {s}._private_jobs set locked_at = now() - interval '4 hours 1 minute',"
                " locked_by = 'pool-dead', attempts = 1 where id = %s"
            ).format(s=ident),
            (stale,),
        )
        conn.execute(
            sql.SQL(
                "update {s}._private_job_queues set locked_at = now() - interval '5 hours',"
                " locked_by = 'pool-dead'"
            ).format(s=ident)
        )
        conn.execute(
            sql.SQL(
                "update {s}._private_jobs set locked_at = now() - interval '5 minutes',"
                " locked_by = 'pool-alive' where id = %s"
            ).format(s=ident),
            (recent,),
        )
    seen = Recorder()
    with running_pool(
        db,
        {"noop": lambda p, h: seen.add(p)},
        min_reset_locked_interval=0.05,
        max_reset_locked_interval=0.1,
        poll_interval=0.1,
    ):
        wait_for(lambda: len(seen) == 1, timeout=15)
    rows = {row["id"]: row for row in jobs_rows(db)}
    assert stale not in rows  # unlocked by the sweep, then claimed and completed
    assert rows[recent]["locked_by"] == "pool-alive"


def test_a_failing_claim_is_retried_after_the_poll_interval(db: TestDatabase) -> None:
    seen = Recorder()
    with running_pool(db, {"record": lambda p, h: seen.add(p)}, poll_interval=0.2) as pool:
        # Kill the pooled connections under the workers; they must recover by themselves.
        with db.connect() as conn:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid()"
            )
        _add(db, "record", "after outage")
        wait_for(lambda: len(seen) == 1, timeout=15)
        assert not pool.stopping


def test_worker_id_is_refused_with_concurrency_above_one() -> None:
    from graphile_py import ConfigurationError

    with pytest.raises(ConfigurationError, match="must not set worker_id"):
        WorkerOptions(concurrency=2, worker_id="worker-x")


def _db_now(db: TestDatabase) -> datetime:
    with db.connect() as conn:
        row = conn.execute("select now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def _make_due(db: TestDatabase, job_id: int) -> None:
    with db.connect() as conn:
        conn.execute(
            sql.SQL("update {s}._private_jobs set run_at = now() where id = %s").format(
                s=sql.Identifier(db.schema)
            ),
            (job_id,),
        )


def test_pool_refuses_an_unreachable_database() -> None:
    from graphile_py import ConnectError

    pool = WorkerPool(
        {"noop": lambda p, h: None},
        conninfo="postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=1",
    )
    with pytest.raises(ConnectError, match="Connecting to the database failed"):
        pool.start()


def test_shutdown_releases_a_job_claimed_but_never_started(db: TestDatabase) -> None:
    entered = threading.Event()
    release = threading.Event()
    held = _add(db, "stuck")
    try:
        with running_pool(db, {"stuck": lambda p, h: (entered.set(), release.wait(10))}) as pool:
            assert entered.wait(5)
            untracked = _add(db, "stuck")
            # Claimed by the pool but not by any of its workers, as in the instant a
            # shutdown begins: only the final safety net can release it.
            assert [job.id for job in pool.claim()] == [untracked]
            pool.request_stop("SIGINT", force=True)
    finally:
        release.set()
    rows = {row["id"]: row for row in jobs_rows(db)}
    assert rows[held]["last_error"] == "Forced worker shutdown due to SIGINT"
    assert "before the job's outcome was recorded" in rows[untracked]["last_error"]
    assert all(row["locked_by"] is None for row in rows.values())
