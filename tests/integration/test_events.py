"""Every WorkerEvents hook fires when its event happens (spec 8.1)."""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any

from psycopg import sql

from graphile_py import WorkerError, WorkerEvents, add_job
from tests.support import TestDatabase
from tests.support.workers import make_pool, running_pool, wait_for

HOOKS = sorted(
    name
    for name, _ in inspect.getmembers(WorkerEvents, inspect.isfunction)
    if not name.startswith("_")
)


class Recorder(WorkerEvents):
    """Records every hook call as (name, args)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def __getattribute__(self, name: str) -> Any:
        if name in HOOKS:

            def record(*args: Any) -> None:
                with object.__getattribute__(self, "_lock"):
                    object.__getattribute__(self, "calls").append((name, args))

            return record
        return object.__getattribute__(self, name)

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.calls]

    def args(self, name: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [args for hook, args in self.calls if hook == name]


def _add(db: TestDatabase, task: str, **kwargs: Any) -> int:
    with db.connect() as conn:
        return add_job(conn, task, schema=db.schema, **kwargs).id


def _exec(db: TestDatabase, statement: str) -> None:
    with db.connect() as conn:
        conn.execute(sql.SQL(statement).format(s=sql.Identifier(db.schema)))


def test_lifecycle_job_and_sweep_events(db: TestDatabase) -> None:
    events = Recorder()
    with running_pool(
        db,
        {"ok": lambda p, h: None, "bad": lambda p, h: 1 / 0},
        events=events,
        poll_interval=0.2,
        min_reset_locked_interval=0.05,
        max_reset_locked_interval=0.1,
    ) as pool:
        ok, bad = _add(db, "ok"), _add(db, "bad", max_attempts=1)
        wait_for(lambda: events.names().count("job_complete") == 2)
        wait_for(lambda: "reset_locked_success" in events.names(), timeout=90)
        pool_id = pool.id
    names = events.names()
    for hook in (
        "pool_create",
        "worker_create",
        "pool_listen_connecting",
        "pool_listen_success",
        "pool_listen_notification",
        "worker_get_job_start",
        "worker_get_job_empty",
        "job_start",
        "job_success",
        "job_error",
        "job_failed",
        "job_complete",
        "reset_locked_started",
        "reset_locked_success",
        "stop",
        "pool_graceful_shutdown",
        "pool_listen_release",
        "worker_stop",
        "pool_release",
    ):
        assert hook in names, hook
    assert [args[1].id for args in events.args("job_success")] == [ok]
    assert [args[1].id for args in events.args("job_failed")] == [bad]
    assert isinstance(events.args("job_error")[0][2], ZeroDivisionError)
    assert events.args("pool_create")[0][0].id == pool_id
    assert names.index("stop") < names.index("pool_graceful_shutdown") < names.index("pool_release")


def test_listener_error_events(db: TestDatabase) -> None:
    events = Recorder()
    with running_pool(db, {"ok": lambda p, h: None}, events=events) as pool:
        with db.connect() as conn:
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = current_database() and query ilike 'LISTEN%'"
            )
        wait_for(lambda: pool.listener_reconnects >= 1, timeout=15)
    assert events.args("pool_listen_error")
    assert [a[1] for a in events.args("pool_listen_connecting")][:2] == [0, 1]


def test_forceful_shutdown_event(db: TestDatabase) -> None:
    events = Recorder()
    entered, release = threading.Event(), threading.Event()
    _add(db, "stuck")
    try:
        with running_pool(
            db, {"stuck": lambda p, h: (entered.set(), release.wait(10))}, events=events
        ) as pool:
            assert entered.wait(10)
            pool.request_stop("SIGTERM", force=True)
    finally:
        release.set()
    assert events.args("pool_forceful_shutdown")[0][1] == "SIGTERM"


def test_failure_events_when_the_database_refuses_writes(db: TestDatabase) -> None:
    # A trigger makes every write to the queue table fail: claims and the sweep fail.
    _exec(
        db,
        "create function public.refuse() returns trigger language plpgsql as"
        " $$ begin raise exception 'refused by test trigger'; end $$",
    )
    _exec(
        db,
        "create trigger refuse before update on {s}._private_job_queues"
        " for each statement execute function public.refuse()",
    )
    events = Recorder()
    with running_pool(
        db,
        {"ok": lambda p, h: None},
        events=events,
        poll_interval=0.1,
        min_reset_locked_interval=0.05,
        max_reset_locked_interval=0.1,
    ):
        wait_for(lambda: "reset_locked_failure" in events.names(), timeout=90)
        wait_for(lambda: "worker_get_job_error" in events.names(), timeout=10)
    assert "refused by test trigger" in str(events.args("worker_get_job_error")[0][1])


def test_write_failure_events(db: TestDatabase) -> None:
    # Deleting (completing) fails: unbatched -> worker_fatal_error, batched -> pool_fatal_error.
    _exec(
        db,
        "create function public.refuse() returns trigger language plpgsql as"
        " $$ begin raise exception 'no deletes'; end $$",
    )
    _exec(
        db,
        "create trigger refuse before delete on {s}._private_jobs"
        " for each row execute function public.refuse()",
    )
    events = Recorder()
    _add(db, "ok")
    pool = make_pool(db, {"ok": lambda p, h: None}, once=True, events=events)
    pool.run()
    assert "no deletes" in str(events.args("worker_fatal_error")[0][1])

    batched = Recorder()
    _add(db, "ok")
    pool = make_pool(db, {"ok": lambda p, h: None}, events=batched, complete_job_batch_delay=0.0)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pool.run()
        except WorkerError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: "pool_fatal_error" in batched.names(), timeout=30)
    thread.join(30)
    assert not thread.is_alive()  # a failed batch write stops the pool...
    assert errors and "no deletes" in str(errors[0])  # ...as an error, not a clean exit
    assert batched.args("pool_fatal_error")[0][2] == "complete_job"
    time.sleep(0)


def test_signal_events_from_the_runner(db: TestDatabase) -> None:
    import os
    import signal

    from graphile_py import WorkerOptions, run_worker

    events = Recorder()
    entered, release = threading.Event(), threading.Event()
    _add(db, "stuck")

    def send_signals() -> None:
        entered.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send_signals)
    sender.start()
    try:
        status = run_worker(
            {"stuck": lambda p, h: (entered.set(), release.wait(10))},
            conninfo=db.dsn,
            options=WorkerOptions(schema=db.schema, events=events),
        )
    finally:
        release.set()
        sender.join(10)
    assert status == 0
    assert events.args("graceful_shutdown") == [("SIGTERM",)]
    assert events.args("forceful_shutdown") == [("SIGTERM",)]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_every_hook_is_exercised_somewhere() -> None:
    # cron_* hooks are exercised by tests/integration/test_cron.py.
    import pathlib

    sources = "".join(p.read_text() for p in pathlib.Path(__file__).parent.glob("test_*.py"))
    missing = [
        hook for hook in HOOKS if f'"{hook}"' not in sources and f"def {hook}" not in sources
    ]
    assert missing == [], missing
