"""Inspector against a real database: every job state, counts that agree with listings,
filters and pagination, and actions that leave jobs held by workers alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql

from graphile_py import (
    ConfigurationError,
    CrontabError,
    Inspector,
    JobFilter,
    JobState,
    StateCounts,
    WorkerUtils,
)
from graphile_py.db import statements_for
from tests.support import TestDatabase
from tests.support.workers import claim_like_a_worker, jobs_rows, running_pool, wait_for

POOL = "pool-inspection-test"


@pytest.fixture
def utils(db: TestDatabase) -> Iterator[WorkerUtils]:
    with WorkerUtils(db.dsn, schema=db.schema) as utils:
        yield utils


def _claim(db: TestDatabase, task: str, pool: str = POOL) -> int:
    return claim_like_a_worker(db, task, pool)


def _fail_attempt(db: TestDatabase, task: str, message: str) -> int:
    """Claim the ready job of ``task`` and fail that attempt, as a worker would."""
    job_id = _claim(db, task)
    with db.connect() as conn:
        statements_for(db.schema).fail_jobs_with_message(conn, POOL, [job_id], message)
    return job_id


@dataclass
class Jobs:
    ready: int
    scheduled: int
    running: int
    retrying: int
    failed: int
    queued_running: int
    queued_waiting: int


@pytest.fixture
def jobs(db: TestDatabase, utils: WorkerUtils) -> Jobs:
    """One job in every state, plus a named queue held by a worker with a job waiting on it."""
    later = datetime.now(UTC) + timedelta(hours=1)
    utils.add_job("held", {"n": "running"})
    running = _claim(db, "held")
    utils.add_job("flaky", {"n": "retrying"}, job_key="flaky-1")
    retrying = _fail_attempt(db, "flaky", "boom: connection reset")
    failed = utils.add_job("email", {"n": "failed"}, max_attempts=3).id
    utils.permanently_fail_jobs([failed], "bad address")
    ready = utils.add_job("email", {"n": "ready"}, job_key="email-ready").id
    scheduled = utils.add_job("email", {"n": "scheduled"}, run_at=later).id
    utils.add_job("ordered", {"n": "queued running"}, queue_name="serial")
    queued_running = _claim(db, "ordered")
    queued_waiting = utils.add_job("ordered", {"n": "queued waiting"}, queue_name="serial").id
    return Jobs(ready, scheduled, running, retrying, failed, queued_running, queued_waiting)


EXPECTED_STATES = {
    "ready": JobState.READY,
    "scheduled": JobState.SCHEDULED,
    "running": JobState.RUNNING,
    "retrying": JobState.RETRYING,
    "failed": JobState.FAILED,
    "queued_running": JobState.RUNNING,
    "queued_waiting": JobState.READY,
}


def test_every_job_is_in_its_state(utils: WorkerUtils, jobs: Jobs) -> None:
    inspector = Inspector(utils)
    for name, state in EXPECTED_STATES.items():
        record = inspector.get_job(getattr(jobs, name))
        assert record is not None and record.state is state, (name, record)
    listed = {record.job.id: record.state for record in inspector.list_jobs()}
    assert listed == {getattr(jobs, name): state for name, state in EXPECTED_STATES.items()}
    # The rule in Python (for jobs no longer in the table) agrees with the query's.
    for record in inspector.list_jobs():
        assert JobState.of(record.job) is record.state, record


def test_get_job_has_every_field(utils: WorkerUtils, jobs: Jobs) -> None:
    inspector = Inspector(utils)
    retrying = inspector.get_job(jobs.retrying)
    assert retrying is not None
    job = retrying.job
    assert job.task_identifier == "flaky" and job.payload == {"n": "retrying"}
    assert job.last_error == "boom: connection reset" and job.attempts == 1
    assert job.key == "flaky-1" and job.locked_by is None and job.created_at is not None
    running = inspector.get_job(jobs.queued_running)
    assert running is not None
    assert running.job.queue_name == "serial" and running.job.locked_by == POOL
    failed = inspector.get_job(jobs.failed)
    assert failed is not None and failed.job.last_error == "bad address"
    assert failed.job.attempts == failed.job.max_attempts == 3
    assert inspector.get_job(10**12) is None


def test_status_counts_agree_with_listings(utils: WorkerUtils, jobs: Jobs) -> None:
    inspector = Inspector(utils)
    report = inspector.status()
    assert report.totals == StateCounts(ready=2, scheduled=1, running=2, retrying=1, failed=1)
    assert report.totals.total == 7
    for state in JobState:
        listed = inspector.list_jobs(JobFilter(state=state))
        assert len(listed) == getattr(report.totals, state.value), state
        assert all(record.state is state for record in listed)
    tasks = {task.task: task for task in report.tasks}
    assert sorted(tasks) == ["email", "flaky", "held", "ordered"]
    assert tasks["email"].counts == StateCounts(ready=1, scheduled=1, failed=1)
    assert tasks["held"].counts == StateCounts(running=1)
    assert tasks["held"].oldest_ready_age is None
    age = tasks["email"].oldest_ready_age
    assert age is not None and age >= timedelta(0)
    assert report.oldest_ready_age is not None and report.oldest_ready_age >= age
    for task in report.tasks:
        for state in JobState:
            listed = inspector.list_jobs(JobFilter(task=task.task, state=state))
            assert len(listed) == getattr(task.counts, state.value), (task.task, state)
    (serial,) = report.queues
    assert serial.name == "serial" and serial.counts == StateCounts(ready=1, running=1)
    assert serial.locked_by == POOL and serial.locked_at is not None
    assert report.locked_queues == [serial]
    (pool,) = report.pools
    assert (pool.pool_id, pool.jobs, pool.queues) == (POOL, 2, 1)
    assert report.taken_at.tzinfo is not None


def test_status_of_an_empty_queue(utils: WorkerUtils) -> None:
    report = Inspector(utils).status()
    assert report.totals == StateCounts() and report.totals.total == 0
    assert report.tasks == [] and report.queues == [] and report.pools == []
    assert report.oldest_ready_age is None and report.locked_queues == []


def test_list_queues_includes_idle_queues(utils: WorkerUtils, jobs: Jobs) -> None:
    done = utils.add_job("ordered", queue_name="idle")
    utils.complete_jobs([done.id])
    queues = {queue.name: queue for queue in Inspector(utils).list_queues()}
    assert sorted(queues) == ["idle", "serial"]
    assert queues["idle"].counts == StateCounts() and queues["idle"].locked_at is None
    assert queues["serial"].counts == StateCounts(ready=1, running=1)
    assert queues["serial"].locked_by == POOL


def test_filters(utils: WorkerUtils, jobs: Jobs) -> None:
    inspector = Inspector(utils)

    def ids(**where: Any) -> list[int]:
        return [record.job.id for record in inspector.list_jobs(JobFilter(**where))]

    assert ids(task="email") == sorted([jobs.ready, jobs.scheduled, jobs.failed], reverse=True)
    assert ids(task="email", state=JobState.FAILED) == [jobs.failed]
    assert ids(task="email", state="scheduled") == [jobs.scheduled]
    assert ids(queue="serial") == [jobs.queued_waiting, jobs.queued_running]
    assert ids(queue="serial", state=JobState.RUNNING) == [jobs.queued_running]
    assert ids(key="email-ready") == [jobs.ready]
    assert ids(key="email-ready", state=JobState.FAILED) == []
    assert ids(task="nobody") == []
    assert ids(state=JobState.RETRYING) == [jobs.retrying]


def test_pagination_with_before_id(utils: WorkerUtils) -> None:
    added = [utils.add_job("page", {"i": i}).id for i in range(7)]
    inspector = Inspector(utils)
    seen: list[int] = []
    before: int | None = None
    while True:
        page = inspector.list_jobs(JobFilter(task="page", limit=3, before_id=before))
        if not page:
            break
        assert len(page) <= 3
        seen.extend(record.job.id for record in page)
        before = page[-1].job.id
    assert seen == sorted(added, reverse=True)


@pytest.mark.parametrize("limit", [0, -1, 10_001])
def test_limit_out_of_range_is_refused(utils: WorkerUtils, limit: int) -> None:
    with pytest.raises(ConfigurationError, match="limit must be between 1 and 10000"):
        Inspector(utils).list_jobs(JobFilter(limit=limit))


def test_limit_bounds_are_accepted(utils: WorkerUtils) -> None:
    utils.add_job("t")
    utils.add_job("t")
    assert len(Inspector(utils).list_jobs(JobFilter(limit=1))) == 1
    assert len(Inspector(utils).list_jobs(JobFilter(limit=10_000))) == 2


def test_unknown_state_is_refused(utils: WorkerUtils) -> None:
    with pytest.raises(ConfigurationError, match="unknown job state 'stuck'"):
        Inspector(utils).list_jobs(JobFilter(state="stuck"))  # type: ignore[arg-type]


# -- actions --------------------------------------------------------------------------------


def _row(db: TestDatabase, job_id: int) -> dict[str, Any]:
    (row,) = [row for row in jobs_rows(db) if row["id"] == job_id]
    return row


def test_retry_resets_attempts_and_skips_running_jobs(
    db: TestDatabase, utils: WorkerUtils, jobs: Jobs
) -> None:
    running_before = _row(db, jobs.running)
    retried = Inspector(utils).retry_jobs([jobs.failed, jobs.retrying, jobs.running, 10**12])
    assert sorted(job.id for job in retried) == sorted([jobs.failed, jobs.retrying])
    assert {job.task_identifier for job in retried} == {"email", "flaky"}
    assert all(job.attempts == 0 for job in retried)
    inspector = Inspector(utils)
    for job_id in (jobs.failed, jobs.retrying):
        record = inspector.get_job(job_id)
        assert record is not None and record.state is JobState.READY
    assert _row(db, jobs.running) == running_before


def test_retry_failed_only_touches_failed_jobs_of_the_filter(
    db: TestDatabase, utils: WorkerUtils, jobs: Jobs
) -> None:
    other = utils.add_job("other", max_attempts=1)
    utils.permanently_fail_jobs([other.id])
    inspector = Inspector(utils)
    assert inspector.retry_failed(task="email", queue="serial") == []
    retried = inspector.retry_failed(task="email")
    assert [job.id for job in retried] == [jobs.failed]
    assert retried[0].attempts == 0 and retried[0].task_identifier == "email"
    assert _row(db, other.id)["attempts"] == 1
    assert [job.id for job in inspector.retry_failed()] == [other.id]
    assert inspector.list_jobs(JobFilter(state=JobState.FAILED)) == []
    assert _row(db, jobs.retrying)["attempts"] == 1


def test_remove_skips_running_jobs(db: TestDatabase, utils: WorkerUtils, jobs: Jobs) -> None:
    removed = Inspector(utils).remove_jobs([jobs.ready, jobs.failed, jobs.queued_running])
    assert sorted(job.id for job in removed) == sorted([jobs.ready, jobs.failed])
    assert {job.key for job in removed} == {"email-ready", None}
    remaining = {row["id"] for row in jobs_rows(db)}
    assert jobs.ready not in remaining and jobs.failed not in remaining
    assert _row(db, jobs.queued_running)["locked_by"] == POOL


def test_reschedule_moves_run_at_and_skips_running_jobs(
    db: TestDatabase, utils: WorkerUtils, jobs: Jobs
) -> None:
    when = datetime(2035, 6, 1, 12, 30, tzinfo=UTC)
    moved = Inspector(utils).reschedule_jobs([jobs.ready, jobs.running], when)
    assert [(job.id, job.run_at) for job in moved] == [(jobs.ready, when)]
    assert _row(db, jobs.ready)["run_at"] == when
    assert _row(db, jobs.running)["run_at"] != when
    record = Inspector(utils).get_job(jobs.ready)
    assert record is not None and record.state is JobState.SCHEDULED


def test_reschedule_refuses_a_naive_time(utils: WorkerUtils) -> None:
    job = utils.add_job("t")
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        Inspector(utils).reschedule_jobs([job.id], datetime(2035, 1, 1))


def test_a_job_a_real_worker_is_running(db: TestDatabase, utils: WorkerUtils) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(payload: Any, helpers: Any) -> None:
        started.set()
        release.wait(60)

    with running_pool(db, {"slow": slow}) as pool:
        job = utils.add_job("slow", queue_name="one-at-a-time")
        try:
            wait_for(started.is_set)
            inspector = Inspector(utils)
            record = inspector.get_job(job.id)
            assert record is not None and record.state is JobState.RUNNING
            assert record.job.locked_by == pool.id
            report = inspector.status()
            assert report.totals == StateCounts(running=1)
            assert [p.pool_id for p in report.pools] == [pool.id]
            assert [q.locked_by for q in report.locked_queues] == [pool.id]
            assert inspector.retry_jobs([job.id]) == []
            assert inspector.remove_jobs([job.id]) == []
            assert inspector.reschedule_jobs([job.id], datetime(2035, 1, 1, tzinfo=UTC)) == []
            assert _row(db, job.id)["attempts"] == 1
        finally:
            release.set()
        wait_for(lambda: Inspector(utils).get_job(job.id) is None)


# -- cron -----------------------------------------------------------------------------------


def _known(db: TestDatabase, identifier: str, last_execution: datetime | None) -> None:
    with db.connect() as conn:
        conn.execute(
            sql.SQL(
                "insert into {}._private_known_crontabs (identifier, known_since, last_execution)"
                " values (%s, now() - interval '1 day', %s)"
            ).format(sql.Identifier(db.schema)),
            (identifier, last_execution),
        )


def test_list_cron(db: TestDatabase, utils: WorkerUtils) -> None:
    ran = datetime(2030, 1, 1, 4, 0, tzinfo=UTC)
    _known(db, "nightly", ran)
    _known(db, "retired", None)
    inspector = Inspector(utils)
    plain = {cron.identifier: cron for cron in inspector.list_cron()}
    assert sorted(plain) == ["nightly", "retired"]
    assert plain["nightly"].last_execution == ran and plain["nightly"].next_run is None
    assert plain["nightly"].in_crontab is None

    before = datetime.now(UTC)
    crontab = "# comment\n0 4 * * * nightly_cleanup ?id=nightly\n*/5 * * * * never_run_yet\n"
    listed = {cron.identifier: cron for cron in inspector.list_cron(crontab)}
    assert sorted(listed) == ["nightly", "retired"]
    nightly = listed["nightly"]
    assert nightly.task == "nightly_cleanup" and nightly.in_crontab is True
    assert nightly.next_run is not None
    assert (nightly.next_run.hour, nightly.next_run.minute) == (4, 0)
    assert before - timedelta(minutes=1) < nightly.next_run <= before + timedelta(days=1)
    assert listed["retired"].in_crontab is False and listed["retired"].next_run is None


def test_list_cron_with_a_bad_crontab(utils: WorkerUtils) -> None:
    with pytest.raises(CrontabError):
        Inspector(utils).list_cron("61 * * * * task\n")
