"""Per-task time limits, next to the 4-hour stale-lock rule (issue 5, item 4).

Past its limit (``@registry.task(timeout=...)``, ``TaskRegistry.add(..., timeout=...)``
or ``WorkerOptions(task_timeout=...)``) a task's ``helpers.abort_event`` is set; a task
still running ``task_timeout_grace`` (1 s) later has its job failed with "timed out after
Ns" and its worker replaced. tests/integration/test_worker_features.py covers those
basics; these cover what must not happen around them: another job aborted, a late
result overwriting the failure, a named queue left blocked, an async task running on,
a retry run twice, shutdown waiting for an abandoned thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Any

import pytest

from graphile_py import (
    ConfigurationError,
    TaskLoadError,
    TaskRegistry,
    WorkerOptions,
    add_job,
)
from graphile_py.pool.execution import error_summary
from tests.support import TestDatabase
from tests.support.workers import Recorder, jobs_rows, queue_rows, running_pool, wait_for


def _add(db: TestDatabase, identifier: str, payload: object = None, **options: Any) -> int:
    with db.connect() as conn:
        return add_job(conn, identifier, payload, schema=db.schema, **options).id


def _failed(db: TestDatabase, job_id: int) -> bool:
    return any(
        row["id"] == job_id and row["last_error"] and row["locked_at"] is None
        for row in jobs_rows(db)
    )


def test_the_limit_aborts_only_the_job_that_exceeded_it(db: TestDatabase) -> None:
    limited_aborted = threading.Event()
    seen: dict[str, Any] = {}
    registry = TaskRegistry()

    @registry.task(timeout=1.0)
    def limited(payload: Any, helpers: Any) -> None:
        started = time.monotonic()
        if helpers.abort_event.wait(60):
            seen["aborted_after"] = time.monotonic() - started
            limited_aborted.set()
            raise TimeoutError("gave up when asked to")

    @registry.task
    def neighbour(payload: Any, helpers: Any) -> None:
        assert limited_aborted.wait(60)
        seen["neighbour_aborted"] = helpers.abort_event.is_set()

    limited_id = _add(db, "limited")
    _add(db, "neighbour")
    with running_pool(db, registry, concurrency=2, poll_interval=0.2):
        wait_for(lambda: len(jobs_rows(db)) == 1 and _failed(db, limited_id), timeout=60)
    assert seen["neighbour_aborted"] is False, "another job's abort_event was set"
    assert 0.5 <= seen["aborted_after"] < 30  # not at once (the clock may start at the claim)
    [row] = jobs_rows(db)
    assert (row["id"], row["attempts"]) == (limited_id, 1)
    assert error_summary(row["last_error"]) == "gave up when asked to"


def test_a_stuck_task_is_failed_its_queue_freed_and_its_late_result_discarded(
    db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    release = threading.Event()
    returned = threading.Event()
    started: dict[str, float] = {}
    after = Recorder()
    registry = TaskRegistry()

    @registry.task(timeout=2.0)
    def stuck(payload: Any, helpers: Any) -> None:
        started["at"] = time.monotonic()
        try:
            release.wait(120)  # ignores abort_event, then "succeeds" far too late
        finally:
            returned.set()

    registry.add("after", lambda payload, helpers: after.add(release.is_set()))
    stuck_id = _add(db, "stuck", queue_name="q", max_attempts=1, priority=-1)
    _add(db, "after", queue_name="q")
    try:
        with running_pool(db, registry, concurrency=1, poll_interval=0.2):
            wait_for(lambda: _failed(db, stuck_id), timeout=60)
            failed_after = time.monotonic() - started["at"]
            # The only worker was replaced and the queue released: the next job of the
            # queue runs while the stuck thread is still blocked.
            wait_for(lambda: len(after) == 1, timeout=60)
            assert after.items == [False]
            release.set()
            assert returned.wait(30)
            wait_for(lambda: any("discard" in r.getMessage() for r in caplog.records), timeout=30)
    finally:
        release.set()
    assert 2.5 <= failed_after < 60  # the limit, then the grace period
    [row] = jobs_rows(db)
    assert row["id"] == stuck_id, "the late success completed a job that had been failed"
    assert "timed out after 2s" in row["last_error"]
    assert (row["attempts"], row["locked_by"]) == (1, None)
    assert all(queue["locked_by"] is None for queue in queue_rows(db))


def test_a_timed_out_job_is_retried_once_per_attempt_and_shutdown_does_not_wait(
    db: TestDatabase,
) -> None:
    release = threading.Event()
    attempts = Recorder()
    registry = TaskRegistry()

    @registry.task(timeout=1.0)
    def flaky(payload: Any, helpers: Any) -> None:
        attempts.add(helpers.job.attempts)
        if helpers.job.attempts == 1:
            release.wait(120)  # stuck, and still stuck when the pool shuts down

    job_id = _add(db, "flaky", max_attempts=3)
    try:
        with running_pool(db, registry, concurrency=1, poll_interval=0.2) as pool:
            wait_for(lambda: jobs_rows(db) == [], timeout=60)  # attempt 2 succeeded
            pool.request_stop("test finished")
            stopping = time.monotonic()
        shutdown_seconds = time.monotonic() - stopping
    finally:
        release.set()
    assert attempts.items == [1, 2], f"job {job_id} attempts run: {attempts.items}"
    assert shutdown_seconds < 20, "shutdown waited for the abandoned thread"


def test_an_async_task_past_its_limit_is_failed_and_the_loop_keeps_serving(
    db: TestDatabase,
) -> None:
    later = Recorder()
    registry = TaskRegistry()

    @registry.task(timeout=1.0)
    async def forever(payload: Any, helpers: Any) -> None:
        await asyncio.sleep(600)

    @registry.task
    async def quick(payload: Any, helpers: Any) -> None:
        await asyncio.sleep(0)
        later.add(payload)

    forever_id = _add(db, "forever", max_attempts=1, priority=-1)
    with running_pool(db, registry, concurrency=1, poll_interval=0.2):
        wait_for(lambda: _failed(db, forever_id), timeout=60)
        _add(db, "quick", "after")
        wait_for(lambda: later.items == ["after"], timeout=60)
    [row] = jobs_rows(db)
    assert "timed out after 1s" in row["last_error"]


def test_a_tasks_own_limit_overrides_the_default(db: TestDatabase) -> None:
    outcomes = Recorder()
    registry = TaskRegistry()

    def cooperative(name: str) -> Any:
        def task(payload: Any, helpers: Any) -> None:
            if helpers.abort_event.wait(2.0):
                outcomes.add((name, "aborted"))
                raise TimeoutError(f"{name} aborted")
            outcomes.add((name, "finished"))

        return task

    registry.add("patient", cooperative("patient"), timeout=30.0)
    registry.add("impatient", cooperative("impatient"))
    _add(db, "patient")
    impatient_id = _add(db, "impatient")
    with running_pool(db, registry, concurrency=2, poll_interval=0.2, task_timeout=0.5):
        wait_for(lambda: len(outcomes) == 2, timeout=60)
        wait_for(lambda: len(jobs_rows(db)) == 1 and _failed(db, impatient_id), timeout=60)
    assert sorted(outcomes.items) == [("impatient", "aborted"), ("patient", "finished")]
    assert error_summary(jobs_rows(db)[0]["last_error"]) == "impatient aborted"


@pytest.mark.parametrize("bad", [0, -1, math.nan])
def test_limits_are_validated(bad: float) -> None:
    with pytest.raises(TaskLoadError, match="timeout"):
        TaskRegistry().add("t", lambda payload, helpers: None, timeout=bad)
    with pytest.raises(TaskLoadError, match="timeout"):
        TaskRegistry().task("t", timeout=bad)(lambda payload, helpers: None)
    with pytest.raises(ConfigurationError, match="task_timeout"):
        WorkerOptions(task_timeout=bad)


def test_grace_must_not_be_negative() -> None:
    with pytest.raises(ConfigurationError, match="task_timeout_grace"):
        WorkerOptions(task_timeout_grace=-1)
