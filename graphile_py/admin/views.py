"""The JSON shapes of the operator API's records: what ``--json`` prints and the dashboard answers.

One model per record, so a job, a queue or the status looks the same to a script reading
``graphile-py jobs show --json`` and to one calling the dashboard's ``/api/v1``. They are
pydantic models, so the dashboard's OpenAPI document describes them; each is built from
its record with ``of``.

Times are ISO 8601 with their offset, as :meth:`datetime.isoformat` writes them;
durations are seconds (``..._seconds``, to the millisecond); a job's flags are the sorted
list of their names, empty when it has none (``[]`` rather than null: a list is what
scripts and the page iterate over).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import BaseModel, JsonValue, PlainSerializer, WithJsonSchema

from graphile_py.admin.records import (
    CronStatus,
    JobState,
    QueueStatus,
    QueueStatusReport,
    StateCounts,
    TaskStatus,
)
from graphile_py.admin.worker_utils import LockHolder
from graphile_py.jobs import Job

__all__ = [
    "Counts",
    "CronOut",
    "JobDetailOut",
    "JobOut",
    "Moment",
    "PoolOut",
    "QueueOut",
    "StatsOut",
    "TaskOut",
    "seconds",
]


def _iso(moment: datetime) -> str:
    return moment.isoformat()


#: A time, written as ``datetime.isoformat`` does (pydantic would write ``Z`` for UTC).
Moment = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def seconds(age: timedelta | None) -> float | None:
    """A duration as seconds (rounded to the millisecond), or None."""
    return None if age is None else round(age.total_seconds(), 3)


class Counts(BaseModel):
    """How many jobs are in each state, and in all."""

    ready: int
    scheduled: int
    running: int
    retrying: int
    failed: int
    total: int

    @classmethod
    def of(cls, counts: StateCounts) -> Self:
        return cls(
            ready=counts.ready,
            scheduled=counts.scheduled,
            running=counts.running,
            retrying=counts.retrying,
            failed=counts.failed,
            total=counts.total,
        )


class TaskOut(BaseModel):
    """One task identifier's jobs by state."""

    task: str
    counts: Counts
    oldest_ready_age_seconds: float | None

    @classmethod
    def of(cls, task: TaskStatus) -> Self:
        return cls(
            task=task.task,
            counts=Counts.of(task.counts),
            oldest_ready_age_seconds=seconds(task.oldest_ready_age),
        )


class QueueOut(BaseModel):
    """One named queue: its jobs by state, and the pool holding its lock, if any."""

    name: str
    counts: Counts
    locked_at: Moment | None
    locked_by: str | None

    @classmethod
    def of(cls, queue: QueueStatus) -> Self:
        return cls(
            name=queue.name,
            counts=Counts.of(queue.counts),
            locked_at=queue.locked_at,
            locked_by=queue.locked_by,
        )


class PoolOut(BaseModel):
    """A worker pool holding locks; ``age_seconds`` is that of its oldest lock."""

    pool_id: str
    jobs: int
    queues: int
    oldest_lock: Moment
    age_seconds: float

    @classmethod
    def of(cls, holder: LockHolder, now: datetime) -> Self:
        return cls(
            pool_id=holder.pool_id,
            jobs=holder.jobs,
            queues=holder.queues,
            oldest_lock=holder.oldest_lock,
            age_seconds=round(holder.age(now).total_seconds(), 3),
        )


class StatsOut(BaseModel):
    """What ``graphile-py status`` shows: counts by state, task and queue; locks; pools."""

    taken_at: Moment
    totals: Counts
    oldest_ready_age_seconds: float | None
    tasks: list[TaskOut]
    queues: list[QueueOut]
    locked_queues: list[str]
    pools: list[PoolOut]

    @classmethod
    def of(cls, report: QueueStatusReport) -> Self:
        return cls(
            taken_at=report.taken_at,
            totals=Counts.of(report.totals),
            oldest_ready_age_seconds=seconds(report.oldest_ready_age),
            tasks=[TaskOut.of(task) for task in report.tasks],
            queues=[QueueOut.of(queue) for queue in report.queues],
            locked_queues=[queue.name for queue in report.locked_queues],
            pools=[PoolOut.of(holder, report.taken_at) for holder in report.pools],
        )


class JobOut(BaseModel):
    """A job and its state, without its payload (as lists show it)."""

    id: int
    state: JobState
    task_identifier: str
    queue_name: str | None
    priority: int
    run_at: Moment | None
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: Moment | None
    updated_at: Moment | None
    key: str | None
    locked_at: Moment | None
    locked_by: str | None
    revision: int
    flags: list[str]

    @classmethod
    def of(cls, job: Job, state: JobState) -> Self:
        return cls.model_validate(_job_fields(job, state))


class JobDetailOut(JobOut):
    """A job and its state, with its payload."""

    payload: JsonValue = None

    @classmethod
    def of(cls, job: Job, state: JobState) -> Self:
        return cls.model_validate({**_job_fields(job, state), "payload": job.payload})


def _job_fields(job: Job, state: JobState) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": state,
        "task_identifier": job.task_identifier,
        "queue_name": job.queue_name,
        "priority": job.priority,
        "run_at": job.run_at,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "last_error": job.last_error,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "key": job.key,
        "locked_at": job.locked_at,
        "locked_by": job.locked_by,
        "revision": job.revision,
        "flags": sorted(job.flag_names),
    }


class CronOut(BaseModel):
    """A cron identifier the database knows; ``task`` and ``next_run`` need a crontab."""

    identifier: str
    task: str | None
    known_since: Moment
    last_execution: Moment | None
    next_run: Moment | None
    in_crontab: bool | None

    @classmethod
    def of(cls, status: CronStatus) -> Self:
        return cls(
            identifier=status.identifier,
            task=status.task,
            known_since=status.known_since,
            last_execution=status.last_execution,
            next_run=status.next_run,
            in_crontab=status.in_crontab,
        )
