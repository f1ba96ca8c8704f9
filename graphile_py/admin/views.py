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

from graphile_py.admin.history import HISTORY_OFF, AttemptRecord, HistoryPage, Outcome, Replay
from graphile_py.admin.pools import PoolRecord, PoolState, WorkersReport
from graphile_py.admin.records import (
    CronStatus,
    JobState,
    QueueStatus,
    QueueStatusReport,
    StateCounts,
    TaskStatus,
)
from graphile_py.admin.served import Registry, Service, ServiceReport, TaskService
from graphile_py.admin.worker_utils import LockHolder
from graphile_py.jobs import Job

__all__ = [
    "AttemptListOut",
    "AttemptOut",
    "Counts",
    "CronOut",
    "JobDetailOut",
    "JobOut",
    "JobShowOut",
    "JobTimelineOut",
    "Moment",
    "PoolOut",
    "QueueOut",
    "ReplayOut",
    "ServiceOut",
    "StatsOut",
    "TaskOut",
    "WorkerPoolOut",
    "WorkersOut",
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


class ServiceOut(BaseModel):
    """Whether a worker serves a task (:mod:`graphile_py.admin.served`).

    ``status`` is ``served``, ``unserved`` (no live graphile-py pool serves it; Node
    workers are not visible), ``unattempted`` (no registry to ask, and none of its jobs
    was ever attempted while one has waited over a minute) or ``unknown``; ``pools`` are
    the live graphile-py pools serving it; ``note`` says it in a sentence.
    """

    status: Service
    pools: list[str]
    note: str

    @classmethod
    def of(cls, service: TaskService) -> Self:
        return cls(status=service.service, pools=list(service.pools), note=service.note)


class TaskOut(BaseModel):
    """One task identifier's jobs by state, and whether a worker serves it."""

    task: str
    counts: Counts
    oldest_ready_age_seconds: float | None
    service: ServiceOut | None = None

    @classmethod
    def of(cls, task: TaskStatus, service: TaskService | None = None) -> Self:
        return cls(
            task=task.task,
            counts=Counts.of(task.counts),
            oldest_ready_age_seconds=seconds(task.oldest_ready_age),
            service=ServiceOut.of(service) if service is not None else None,
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
    """What ``graphile-py status`` shows: counts by state, task and queue; locks; pools.

    ``unserved`` lists the tasks with jobs waiting to run (ready, scheduled, retrying)
    that no worker is known to serve (their ``service`` says why); ``registry`` says what
    that verdict rests on: ``in_use`` (the worker registry), or, without it,
    ``empty``, ``not_installed`` or ``forbidden`` (the jobs' own history).
    """

    taken_at: Moment
    totals: Counts
    oldest_ready_age_seconds: float | None
    tasks: list[TaskOut]
    queues: list[QueueOut]
    locked_queues: list[str]
    pools: list[PoolOut]
    registry: Registry | None = None
    unserved: list[str] = []

    @classmethod
    def of(cls, report: QueueStatusReport, services: ServiceReport | None = None) -> Self:
        verdicts = services.tasks if services is not None else {}
        return cls(
            taken_at=report.taken_at,
            totals=Counts.of(report.totals),
            oldest_ready_age_seconds=seconds(report.oldest_ready_age),
            tasks=[TaskOut.of(task, verdicts.get(task.task)) for task in report.tasks],
            queues=[QueueOut.of(queue) for queue in report.queues],
            locked_queues=[queue.name for queue in report.locked_queues],
            pools=[PoolOut.of(holder, report.taken_at) for holder in report.pools],
            registry=services.registry if services is not None else None,
            unserved=[
                task.task
                for task in report.tasks
                if (verdict := verdicts.get(task.task)) is not None
                and verdict.unserved
                and task.counts.ready + task.counts.scheduled + task.counts.retrying > 0
            ],
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
    #: Why this waiting job may never run: its task's note when no worker is known to
    #: serve it; null otherwise, and in answers to actions (which do not judge).
    unserved: str | None = None

    @classmethod
    def of(cls, job: Job, state: JobState, service: TaskService | None = None) -> Self:
        return cls.model_validate(_job_fields(job, state, service))


class JobDetailOut(JobOut):
    """A job and its state, with its payload."""

    payload: JsonValue = None

    @classmethod
    def of(cls, job: Job, state: JobState, service: TaskService | None = None) -> Self:
        return cls.model_validate({**_job_fields(job, state, service), "payload": job.payload})


def _job_fields(job: Job, state: JobState, service: TaskService | None) -> dict[str, Any]:
    return {
        "unserved": service.note if service is not None and service.unserved else None,
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


# -- the side schema: the worker registry and the job history ---------------------------------


class WorkerPoolOut(BaseModel):
    """A registered worker pool: where it runs, whether it is alive, what it holds and did."""

    id: str
    state: PoolState
    hostname: str
    pid: int
    version: str
    concurrency: int
    tasks: list[str]
    heartbeat_age_seconds: float
    heartbeat_timeout_seconds: float
    started_at: Moment
    heartbeat_at: Moment
    stopped_at: Moment | None
    lost_at: Moment | None
    lost_by: str | None
    jobs_rescued: int | None
    running_jobs: int
    locked_queues: int
    jobs_succeeded: int
    jobs_failed: int

    @classmethod
    def of(cls, pool: PoolRecord) -> Self:
        return cls(
            id=pool.id,
            state=pool.state,
            hostname=pool.hostname,
            pid=pool.pid,
            version=pool.version,
            concurrency=pool.concurrency,
            tasks=list(pool.tasks),
            heartbeat_age_seconds=seconds(pool.heartbeat_age) or 0.0,
            heartbeat_timeout_seconds=seconds(pool.heartbeat_timeout) or 0.0,
            started_at=pool.started_at,
            heartbeat_at=pool.heartbeat_at,
            stopped_at=pool.stopped_at,
            lost_at=pool.lost_at,
            lost_by=pool.lost_by,
            jobs_rescued=pool.jobs_rescued,
            running_jobs=pool.running_jobs,
            locked_queues=pool.locked_queues,
            jobs_succeeded=pool.jobs_succeeded,
            jobs_failed=pool.jobs_failed,
        )


class WorkersOut(BaseModel):
    """What ``graphile-py workers`` shows; ``unregistered`` pools hold locks unregistered.

    Those are Node workers or older graphile-py: no heartbeat, so their locks are only
    released after 4 hours (or by ``graphile-py unlock``).
    """

    taken_at: Moment
    alive: int
    pools: list[WorkerPoolOut]
    unregistered: list[PoolOut]

    @classmethod
    def of(cls, report: WorkersReport) -> Self:
        return cls(
            taken_at=report.taken_at,
            alive=report.count(PoolState.ALIVE),
            pools=[WorkerPoolOut.of(pool) for pool in report.pools],
            unregistered=[PoolOut.of(holder, report.taken_at) for holder in report.unregistered],
        )


class AttemptOut(BaseModel):
    """One recorded attempt of a job (without its payload)."""

    id: int
    job_id: int
    task_identifier: str
    queue_name: str | None
    key: str | None
    attempt: int
    max_attempts: int
    outcome: Outcome
    error: str | None
    pool_id: str
    started_at: Moment
    finished_at: Moment
    duration_seconds: float
    payload_stored: bool
    payload_bytes: int

    @classmethod
    def of(cls, record: AttemptRecord) -> Self:
        return cls(
            id=record.id,
            job_id=record.job_id,
            task_identifier=record.task_identifier,
            queue_name=record.queue_name,
            key=record.key,
            attempt=record.attempt,
            max_attempts=record.max_attempts,
            outcome=record.outcome,
            error=record.error,
            pool_id=record.pool_id,
            started_at=record.started_at,
            finished_at=record.finished_at,
            duration_seconds=seconds(record.finished_at - record.started_at) or 0.0,
            payload_stored=record.payload_stored,
            payload_bytes=record.payload_bytes,
        )


class AttemptListOut(BaseModel):
    """A page of attempts, newest first; ``next_before_id`` asks for the next page.

    ``note`` says why there is nothing when history holds no attempt at all (it is off).
    """

    attempts: list[AttemptOut]
    next_before_id: int | None
    note: str | None

    @classmethod
    def of(cls, page: HistoryPage, limit: int) -> Self:
        attempts = page.attempts
        return cls(
            attempts=[AttemptOut.of(attempt) for attempt in attempts],
            next_before_id=attempts[-1].id if len(attempts) == limit else None,
            note=None if page.recorded else HISTORY_OFF,
        )


class JobShowOut(JobDetailOut):
    """``jobs show --json``: a job, its payload, and its recorded attempts (oldest first)."""

    history: list[AttemptOut]


class JobTimelineOut(BaseModel):
    """A job's recorded attempts, oldest first; ``exists`` is False once the job is gone."""

    job_id: int
    exists: bool
    attempts: list[AttemptOut]

    @classmethod
    def of(cls, job_id: int, exists: bool, attempts: list[AttemptRecord]) -> Self:
        return cls(job_id=job_id, exists=exists, attempts=[AttemptOut.of(a) for a in attempts])


class ReplayOut(BaseModel):
    """A replay: the new job, and whether it was copied from the job or from its history.

    ``defaulted`` names the options the source did not keep (the new job has the
    defaults): a job's history keeps neither its priority nor its flags.
    """

    replayed: int
    source: str
    defaulted: list[str]
    job: JobDetailOut

    @classmethod
    def of(cls, job_id: int, replay: Replay, state: JobState) -> Self:
        return cls(
            replayed=job_id,
            source=replay.source,
            defaulted=list(replay.defaulted),
            job=JobDetailOut.of(replay.job, state),
        )
