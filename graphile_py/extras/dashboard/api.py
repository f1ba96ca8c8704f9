"""The dashboard's JSON API, ``/api/v1``: the routes.

Reads go through the :class:`~graphile_py.admin.inspector.Inspector` and answer with the
shapes of :mod:`graphile_py.admin.views` (those ``--json`` prints); requests and the
dashboard's own answers are in ``models.py``. Enqueueing goes through
``WorkerUtils.add_job``; the throughput history comes from the sampler's buffer. The
routes are plain functions, so FastAPI runs them on its thread pool, where blocking on
the database is fine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Request

from graphile_py.admin.history import HistoryFilter
from graphile_py.admin.inspector import Inspector
from graphile_py.admin.records import JobFilter, JobRecord, JobState
from graphile_py.admin.views import (
    AttemptListOut,
    AttemptOut,
    CronOut,
    JobDetailOut,
    JobOut,
    JobShowOut,
    JobTimelineOut,
    QueueOut,
    ReplayOut,
    StatsOut,
    TaskOut,
    WorkersOut,
)
from graphile_py.extras.dashboard.models import (
    MAX_ID,
    AttemptQuery,
    BulkOut,
    EnqueueIn,
    ErrorOut,
    HistoryOut,
    HistoryPoint,
    InfoOut,
    JobListOut,
    JobQuery,
    RescheduleIn,
    RetryFailed,
    RetryIds,
)
from graphile_py.extras.dashboard.sampler import Sampler
from graphile_py.jobs import Job

__all__ = ["API_PREFIX", "DashboardContext", "router", "version"]

API_PREFIX = "/api/v1"


@dataclass(frozen=True, slots=True)
class DashboardContext:
    """What the routes need, kept on ``app.state.dashboard``."""

    inspector: Inspector
    sampler: Sampler
    allow_actions: bool
    crontab: str | None
    auth: list[str]
    #: The JSON schema of each typed task's payload, when the dashboard was given the
    #: task registry (``--tasks``); the database does not know them.
    payload_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)


def _context(request: Request) -> DashboardContext:
    context: DashboardContext = request.app.state.dashboard
    return context


router = APIRouter(
    prefix=API_PREFIX,
    responses={
        400: {"model": ErrorOut, "description": "graphile-py or the database refused it"},
        401: {"model": ErrorOut, "description": "Credentials are missing or wrong"},
        403: {"model": ErrorOut, "description": "Read-only, cross-site, or not allowed"},
        503: {"model": ErrorOut, "description": "The database is unreachable or failed"},
    },
)

JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="The job's id.")]


_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "A running worker holds the job"}
}
_MISSING: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such job"}}


# -- reads -----------------------------------------------------------------------------------


@router.get("/info", response_model=InfoOut, tags=["dashboard"])
def info(request: Request) -> InfoOut:
    """The dashboard's version, schema and mode."""
    context = _context(request)
    return InfoOut(
        version=version(),
        schema_name=context.inspector.utils.schema,
        allow_actions=context.allow_actions,
        auth=context.auth,
        sample_interval=context.sampler.interval,
    )


@router.get("/stats", response_model=StatsOut, tags=["read"])
def stats(request: Request) -> StatsOut:
    """Job counts by state, task and queue; locked queues; the pools holding locks.

    Each task says whether a worker serves it; ``unserved`` lists those with waiting
    jobs that no worker is known to serve.
    """
    inspector = _context(request).inspector
    report = inspector.status()
    return StatsOut.of(report, inspector.task_services(report.tasks))


@router.get("/jobs", response_model=JobListOut, tags=["read"])
def list_jobs(request: Request, where: Annotated[JobQuery, Query()]) -> JobListOut:
    """Jobs matching every filter given, newest first, ``limit`` at a time.

    ``unserved`` is set on waiting jobs whose task no worker is known to serve.
    """
    inspector = _context(request).inspector
    records = inspector.list_jobs(
        JobFilter(
            task=where.task or None,
            queue=where.queue or None,
            state=where.state,
            key=where.key or None,
            limit=where.limit,
            before_id=where.before_id,
        )
    )
    services = inspector.job_services(records)
    return JobListOut(
        jobs=[JobOut.of(record.job, record.state, services.marks(record)) for record in records],
        next_before_id=records[-1].job.id if len(records) == where.limit else None,
    )


@router.get(
    "/jobs/{job_id}",
    response_model=JobShowOut,
    responses=_MISSING,
    tags=["read"],
)
def get_job(request: Request, job_id: JobId) -> JobShowOut:
    """One job, with its payload, last error and recorded attempts (oldest first)."""
    inspector = _context(request).inspector
    job, state = _record(inspector, job_id)
    attempts = inspector.attempts(job_id, if_installed=True)
    mark = inspector.job_services([JobRecord(job, state)]).marks(JobRecord(job, state))
    return JobShowOut.model_validate(
        {
            **JobDetailOut.of(job, state, mark).model_dump(),
            "history": [AttemptOut.of(attempt) for attempt in attempts],
        }
    )


@router.get(
    "/jobs/{job_id}/attempts",
    response_model=JobTimelineOut,
    responses={404: {"model": ErrorOut, "description": "No such job, and no recorded attempt"}},
    tags=["read"],
)
def job_attempts(request: Request, job_id: JobId) -> JobTimelineOut:
    """A job's recorded attempts, oldest first, also once the job is gone."""
    inspector = _context(request).inspector
    attempts = inspector.attempts(job_id, if_installed=True)
    exists = inspector.get_job(job_id) is not None
    if not attempts and not exists:
        raise HTTPException(404, f"There is no job {job_id}, and no recorded attempt of it.")
    return JobTimelineOut.of(job_id, exists, attempts)


@router.get("/history", response_model=AttemptListOut, tags=["read"])
def job_history(request: Request, where: Annotated[AttemptQuery, Query()]) -> AttemptListOut:
    """Recorded attempts (workers run with ``--history``), newest first, ``limit`` at a time."""
    page = _context(request).inspector.history(
        HistoryFilter(
            task=where.task or None,
            queue=where.queue or None,
            outcome=where.outcome,
            since=where.since,
            job_id=where.job_id,
            limit=where.limit,
            before_id=where.before_id,
        )
    )
    return AttemptListOut.of(page, where.limit)


@router.get("/workers", response_model=WorkersOut, tags=["read"])
def workers(
    request: Request,
    all: Annotated[
        bool, Query(description="Also stopped pools, and those lost over a day ago.")
    ] = False,
) -> WorkersOut:
    """Registered worker pools (live, overdue, lately lost) and unregistered lock holders."""
    return WorkersOut.of(_context(request).inspector.workers(include_stopped=all))


@router.get("/queues", response_model=list[QueueOut], tags=["read"])
def queues(request: Request) -> list[QueueOut]:
    """Every named queue with its counts and lock holder."""
    return [QueueOut.of(queue) for queue in _context(request).inspector.list_queues()]


@router.get("/tasks", response_model=list[TaskOut], tags=["read"])
def tasks(request: Request) -> list[TaskOut]:
    """Every task identifier that has jobs, with its counts and whether a worker serves it."""
    inspector = _context(request).inspector
    tasks = inspector.status().tasks
    services = inspector.task_services(tasks)
    return [TaskOut.of(task, services.of(task.task)) for task in tasks]


@router.get("/payload-schemas", response_model=dict[str, dict[str, Any]], tags=["read"])
def payload_schemas(request: Request) -> dict[str, dict[str, Any]]:
    """The JSON schema of each typed task's payload, by task identifier.

    Empty unless the dashboard was started with the task registry (``--tasks``).
    """
    return _context(request).payload_schemas


@router.get(
    "/payload-schemas/{identifier:path}",
    response_model=dict[str, Any],
    tags=["read"],
    responses={404: {"description": "No payload schema is known for this task"}},
)
def payload_schema(request: Request, identifier: str) -> dict[str, Any]:
    """The JSON schema of one typed task's payload."""
    known = _context(request).payload_schemas
    if identifier not in known:
        hint = (
            "it has no typed payload"
            if known
            else "start the dashboard with --tasks module:registry to show payload schemas"
        )
        raise HTTPException(404, f"no payload schema is known for task {identifier!r}: {hint}")
    return known[identifier]


@router.get("/cron", response_model=list[CronOut], tags=["read"])
def cron(request: Request) -> list[CronOut]:
    """Known cron items; when the dashboard was given a crontab, when each next fires."""
    context = _context(request)
    return [CronOut.of(item) for item in context.inspector.list_cron(context.crontab)]


@router.get("/metrics/history", response_model=HistoryOut, tags=["read"])
def history(
    request: Request,
    bucket: Annotated[
        float | None,
        Query(ge=0, le=3600, description="Merge samples into buckets of this many seconds."),
    ] = None,
) -> HistoryOut:
    """Jobs created, completed and failed per interval over the last hour (in memory)."""
    sampler = _context(request).sampler
    return HistoryOut(
        interval=sampler.interval,
        window=sampler.window,
        bucket=max(bucket or 0.0, sampler.interval),
        last_error=sampler.last_error,
        points=[HistoryPoint.of(sample) for sample in sampler.history(bucket)],
    )


# -- actions ---------------------------------------------------------------------------------


@router.post("/jobs", status_code=201, response_model=JobDetailOut, tags=["actions"])
def add_job(request: Request, job: EnqueueIn) -> JobDetailOut:
    """Add a job (through ``WorkerUtils.add_job``); ``unserved`` says if no worker is
    known to serve its task."""
    inspector = _context(request).inspector
    added = inspector.utils.add_job(
        job.task,
        job.payload,
        queue_name=job.queue,
        run_at=job.run_at,
        max_attempts=job.max_attempts,
        job_key=job.key,
        job_key_mode=job.key_mode,
        priority=job.priority,
        flags=job.flags,
    )
    record = inspector.get_job(added.id)
    if record is None:  # a worker finished it already
        return JobDetailOut.of(added, JobState.of(added))
    mark = inspector.job_services([record]).marks(record)
    return JobDetailOut.of(record.job, record.state, mark)


@router.post("/jobs/retry", response_model=BulkOut, tags=["actions"])
def retry_many(request: Request, which: Annotated[RetryIds | RetryFailed, Body()]) -> BulkOut:
    """Retry the listed jobs, or every permanently failed one (of a task / queue)."""
    inspector = _context(request).inspector
    if isinstance(which, RetryIds):
        wanted = list(dict.fromkeys(which.ids))
        changed = [job.id for job in inspector.retry_jobs(wanted)] if wanted else []
        done = set(changed)
        return BulkOut(changed=changed, skipped=[i for i in wanted if i not in done])
    retried = inspector.retry_failed(task=which.task, queue=which.queue)
    return BulkOut(changed=[job.id for job in retried], skipped=[])


@router.post(
    "/jobs/{job_id}/replay",
    status_code=201,
    response_model=ReplayOut,
    responses={404: {"model": ErrorOut, "description": "No such job, and no recorded attempt"}},
    tags=["actions"],
)
def replay(request: Request, job_id: JobId) -> ReplayOut:
    """Add a new job with the job's task, payload and options (from its history if gone)."""
    inspector = _context(request).inspector
    done = inspector.replay(job_id)
    if done is None:
        raise HTTPException(404, f"There is no job {job_id}, and no recorded attempt of it.")
    record = inspector.get_job(done.job.id)
    return ReplayOut.of(job_id, done, record.state if record else JobState.of(done.job))


@router.post(
    "/jobs/{job_id}/retry",
    response_model=JobDetailOut,
    responses={**_MISSING, **_CONFLICT},
    tags=["actions"],
)
def retry_one(request: Request, job_id: JobId) -> JobDetailOut:
    """Run the job now, with its attempts reset."""
    inspector = _context(request).inspector
    job = _act(inspector, job_id, inspector.retry_jobs)
    return _fresh(inspector, job)


@router.post(
    "/jobs/{job_id}/reschedule",
    response_model=JobDetailOut,
    responses={**_MISSING, **_CONFLICT},
    tags=["actions"],
)
def reschedule(
    request: Request, job_id: JobId, when: Annotated[RescheduleIn, Body()]
) -> JobDetailOut:
    """Move the job to ``run_at``."""
    inspector = _context(request).inspector
    job = _act(inspector, job_id, lambda ids: inspector.reschedule_jobs(ids, when.run_at))
    return _fresh(inspector, job)


@router.delete(
    "/jobs/{job_id}",
    response_model=JobDetailOut,
    responses={**_MISSING, **_CONFLICT},
    tags=["actions"],
)
def remove(request: Request, job_id: JobId) -> JobDetailOut:
    """Delete the job; returns it as it was."""
    inspector = _context(request).inspector
    job = _act(inspector, job_id, inspector.remove_jobs)
    return JobDetailOut.of(job, JobState.of(job))


# -- helpers ---------------------------------------------------------------------------------


def _record(inspector: Inspector, job_id: int) -> tuple[Job, JobState]:
    record: JobRecord | None = inspector.get_job(job_id)
    if record is None:
        raise HTTPException(404, f"There is no job {job_id}.")
    return record.job, record.state


def _act(inspector: Inspector, job_id: int, action: Callable[[Sequence[int]], list[Job]]) -> Job:
    """Apply ``action`` to one job; 404 if it does not exist, 409 if a worker holds it."""
    changed = action([job_id])
    if changed:
        return changed[0]
    job, state = _record(inspector, job_id)
    if state is JobState.RUNNING:
        raise HTTPException(
            409,
            f"Job {job_id} is running (locked by {job.locked_by} since"
            f" {job.locked_at:%Y-%m-%d %H:%M:%S%z}); try again when it has finished."
            if job.locked_at
            else f"Job {job_id} is running; try again when it has finished.",
        )
    raise HTTPException(409, f"Job {job_id} could not be changed; reload it and try again.")


def _fresh(inspector: Inspector, job: Job) -> JobDetailOut:
    """The job as it is now; as it was returned, if a worker already finished it."""
    record = inspector.get_job(job.id)
    if record is None:
        return JobDetailOut.of(job, JobState.of(job))
    return JobDetailOut.of(record.job, record.state)


def version() -> str:
    """graphile-py's installed version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("graphile-py")
    except PackageNotFoundError:
        return "0"
