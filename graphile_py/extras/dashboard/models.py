"""The shapes the dashboard's JSON API exchanges (pydantic models, hence the OpenAPI schemas).

Every string that reaches the database is bounded and refuses NUL (PostgreSQL cannot
store it); job ids stop at 2**53 - 1, JavaScript's largest exact integer, so that an id
survives a round trip through the page (a sequence would take centuries to get there).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from graphile_py.admin.inspector import JobState, QueueStatus, StateCounts, TaskStatus
from graphile_py.extras.dashboard.sampler import Sample
from graphile_py.jobs import Job

__all__ = [
    "MAX_ID",
    "BulkOut",
    "Counts",
    "CronOut",
    "EnqueueIn",
    "ErrorOut",
    "HistoryOut",
    "HistoryPoint",
    "InfoOut",
    "JobDetailOut",
    "JobListOut",
    "JobOut",
    "JobQuery",
    "PoolOut",
    "QueueOut",
    "RescheduleIn",
    "RetryFailed",
    "RetryIds",
    "StatsOut",
    "TaskOut",
    "seconds",
]

#: The largest job id the API accepts.
MAX_ID = 2**53 - 1
NoNul = r"^[^\x00]*$"
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=NoNul)]


class Counts(BaseModel):
    """How many jobs are in each state."""

    ready: int
    scheduled: int
    running: int
    retrying: int
    failed: int
    total: int

    @classmethod
    def of(cls, counts: StateCounts) -> Counts:
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
    def of(cls, task: TaskStatus) -> TaskOut:
        return cls(
            task=task.task,
            counts=Counts.of(task.counts),
            oldest_ready_age_seconds=seconds(task.oldest_ready_age),
        )


class QueueOut(BaseModel):
    """One named queue: its jobs by state, and the pool holding its lock, if any."""

    name: str
    counts: Counts
    locked_at: datetime | None
    locked_by: str | None

    @classmethod
    def of(cls, queue: QueueStatus) -> QueueOut:
        return cls(
            name=queue.name,
            counts=Counts.of(queue.counts),
            locked_at=queue.locked_at,
            locked_by=queue.locked_by,
        )


class PoolOut(BaseModel):
    """A worker pool holding locks."""

    pool_id: str
    jobs: int
    queues: int
    oldest_lock: datetime
    age_seconds: float


class StatsOut(BaseModel):
    """What ``graphile-py status`` shows."""

    taken_at: datetime
    totals: Counts
    oldest_ready_age_seconds: float | None
    tasks: list[TaskOut]
    queues: list[QueueOut]
    locked_queues: list[str]
    pools: list[PoolOut]


class JobOut(BaseModel):
    """A job as listed (without its payload)."""

    id: int
    task_identifier: str
    queue_name: str | None
    state: JobState
    priority: int
    run_at: datetime | None
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime | None
    updated_at: datetime | None
    key: str | None
    locked_at: datetime | None
    locked_by: str | None
    revision: int
    flags: list[str]

    @classmethod
    def of(cls, job: Job, state: JobState) -> Self:
        return cls(
            id=job.id,
            task_identifier=job.task_identifier,
            queue_name=job.queue_name,
            state=state,
            priority=job.priority,
            run_at=job.run_at,
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            last_error=job.last_error,
            created_at=job.created_at,
            updated_at=job.updated_at,
            key=job.key,
            locked_at=job.locked_at,
            locked_by=job.locked_by,
            revision=job.revision,
            flags=sorted(job.flag_names),
        )


class JobDetailOut(JobOut):
    """A job with its payload."""

    payload: JsonValue = None

    @classmethod
    def of(cls, job: Job, state: JobState) -> Self:
        detail = super().of(job, state)
        detail.payload = job.payload
        return detail


class JobListOut(BaseModel):
    """A page of jobs, newest first; pass ``next_before_id`` as ``before_id`` for the next."""

    jobs: list[JobOut]
    next_before_id: int | None


class CronOut(BaseModel):
    """A cron identifier the database knows."""

    identifier: str
    known_since: datetime
    last_execution: datetime | None
    next_run: datetime | None
    task: str | None
    in_crontab: bool | None


class HistoryPoint(BaseModel):
    """Events in the interval ending at ``t`` (``seconds`` long) and the counts then."""

    t: datetime
    seconds: float
    created: int
    completed: int
    failed: int
    ready: int
    scheduled: int
    running: int
    retrying: int
    failed_total: int

    @classmethod
    def of(cls, sample: Sample) -> HistoryPoint:
        return cls(
            t=sample.taken_at,
            seconds=round(sample.seconds, 3),
            created=sample.created or 0,
            completed=sample.completed or 0,
            failed=sample.failed or 0,
            ready=sample.ready,
            scheduled=sample.scheduled,
            running=sample.running,
            retrying=sample.retrying,
            failed_total=sample.failed_total,
        )


class HistoryOut(BaseModel):
    """The sampler's history, for the throughput chart."""

    interval: float
    window: float
    bucket: float
    last_error: str | None
    points: list[HistoryPoint]


class InfoOut(BaseModel):
    """How this dashboard is set up (the page uses it to show or hide the buttons)."""

    version: str
    schema_name: str
    allow_actions: bool
    auth: list[str]
    sample_interval: float


class EnqueueIn(BaseModel):
    """A job to add, with graphile-worker's options."""

    model_config = ConfigDict(extra="forbid")

    task: Name
    payload: JsonValue = None
    queue: Name | None = None
    run_at: AwareDatetime | None = None
    max_attempts: Annotated[int, Field(ge=1, le=32767)] | None = None
    key: Annotated[str, Field(min_length=1, max_length=512, pattern=NoNul)] | None = None
    key_mode: Literal["replace", "preserve_run_at", "unsafe_dedupe"] | None = None
    priority: Annotated[int, Field(ge=-32768, le=32767)] | None = None
    flags: Annotated[list[Name], Field(max_length=100)] | None = None


class JobQuery(BaseModel):
    """The filters of ``GET /jobs``; every one given must match."""

    task: Annotated[str, Field(max_length=128, pattern=NoNul)] | None = None
    queue: Annotated[str, Field(max_length=128, pattern=NoNul)] | None = None
    state: JobState | None = None
    key: Annotated[str, Field(max_length=512, pattern=NoNul)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    before_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = None


class RetryIds(BaseModel):
    """Retry these jobs."""

    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[Annotated[int, Field(ge=1, le=MAX_ID)]], Field(max_length=1000)]


class RetryFailed(BaseModel):
    """Retry every permanently failed job, of one task and/or queue if given."""

    model_config = ConfigDict(extra="forbid")

    all_failed: Literal[True]
    task: Name | None = None
    queue: Name | None = None


class RescheduleIn(BaseModel):
    """When the job should run next."""

    model_config = ConfigDict(extra="forbid")

    run_at: AwareDatetime


class ErrorOut(BaseModel):
    """Every error answer: a short machine-readable code and a message for people."""

    error: str
    message: str


class BulkOut(BaseModel):
    """The jobs an action changed, and those it left alone (running, or unknown)."""

    changed: list[int]
    skipped: list[int]


def seconds(age: timedelta | None) -> float | None:
    """A duration as seconds (rounded to the millisecond), or None."""
    return None if age is None else round(age.total_seconds(), 3)
