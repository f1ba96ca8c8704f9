"""Running what is queued, in-process, until nothing is left to run: ``run_jobs``.

Each round starts a run-once :class:`~graphile_py.WorkerPool` with the user's tasks, the
very code a worker runs (claims, retries, batch jobs, async tasks), and records every
outcome through the pool's events. Between rounds, jobs waiting for a retry (and, when
asked, jobs scheduled for later) are made due at once: time travel, so a test does not
wait out the backoff. The number of rounds is bounded, so a task that keeps enqueueing
itself fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from graphile_py.admin.inspector import Inspector
from graphile_py.admin.records import MAX_LIST_LIMIT, JobFilter, JobRecord, JobState
from graphile_py.admin.worker_utils import WorkerUtils
from graphile_py.db.migrations import DEFAULT_SCHEMA
from graphile_py.events import WorkerEvents, combine_events
from graphile_py.jobs import Job
from graphile_py.logs import plural
from graphile_py.pool.options import WorkerOptions
from graphile_py.pool.pool import WorkerPool
from graphile_py.tasks import TaskFunction

__all__ = ["JobError", "JobsRun", "RunawayJobs", "run_jobs", "run_jobs_async"]


@dataclass(frozen=True)
class JobError:
    """One failed attempt: the job as claimed, what its task raised, and whether that was
    its last attempt (the job failed permanently)."""

    job: Job
    error: BaseException
    permanent: bool = False


@dataclass
class JobsRun:
    """What :func:`run_jobs` ran: completed jobs and failed attempts, in the order seen."""

    completed: list[Job] = field(default_factory=list)
    errors: list[JobError] = field(default_factory=list)
    #: How many rounds (run-once pools) it took.
    rounds: int = 0

    @property
    def failed(self) -> list[Job]:
        """Jobs that failed permanently (no attempts left)."""
        return [error.job for error in self.errors if error.permanent]

    def identifiers(self) -> list[str]:
        """Task identifiers of the completed jobs, in completion order."""
        return [job.task_identifier for job in self.completed]

    def raise_errors(self) -> None:
        """Re-raise the first error a task raised, if any (the others are chained notes)."""
        if not self.errors:
            return
        first = self.errors[0].error
        for other in self.errors[1:]:
            first.add_note(
                f"also: job {other.job.id} ({other.job.task_identifier}): {other.error!r}"
            )
        raise first

    def __str__(self) -> str:
        return (
            f"{len(self.completed)} completed, {plural(len(self.errors), 'failed attempt')}"
            f" ({len(self.failed)} permanently) in {plural(self.rounds, 'round')}"
        )


class RunawayJobs(AssertionError):
    """run_jobs gave up with jobs still to run (a task that keeps enqueueing itself?)."""


class _Recorder(WorkerEvents):
    """Collects outcomes from the pool's worker threads."""

    def __init__(self, run: JobsRun, max_jobs: int) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._max_jobs = max_jobs
        self.started = 0
        #: The round's pool, asked to stop once max_jobs have started.
        self.pool: WorkerPool | None = None

    def job_start(self, worker_id: str, job: Job) -> None:
        with self._lock:
            self.started += 1
            over = self.started >= self._max_jobs
        if over and self.pool is not None:
            self.pool.request_stop(f"run_jobs: max_jobs ({self._max_jobs}) reached")

    def job_success(self, worker_id: str, job: Job) -> None:
        with self._lock:
            self._run.completed.append(job)

    def job_error(
        self,
        worker_id: str,
        job: Job,
        error: BaseException,
        batch_errors: Sequence[BaseException] | None,
    ) -> None:
        with self._lock:
            self._run.errors.append(JobError(job, error))

    def job_failed(
        self,
        worker_id: str,
        job: Job,
        error: BaseException,
        batch_errors: Sequence[BaseException] | None,
    ) -> None:
        with self._lock:  # always right after job_error for the same attempt
            for index in range(len(self._run.errors) - 1, -1, -1):
                if self._run.errors[index].job.id == job.id:
                    self._run.errors[index] = JobError(job, error, permanent=True)
                    break


def run_jobs(
    conninfo: str,
    tasks: Mapping[str, TaskFunction],
    *,
    schema: str = DEFAULT_SCHEMA,
    retries: bool = True,
    include_future: bool = False,
    max_rounds: int = 25,
    max_jobs: int = 1000,
    raise_errors: bool = False,
    job_ids: Collection[int] | None = None,
    options: WorkerOptions | None = None,
) -> JobsRun:
    """Run the queued jobs of ``tasks`` until none is due, and report what happened.

    With ``retries`` (the default) a failed job is retried at once instead of after its
    backoff, until it succeeds or runs out of attempts; with ``include_future`` jobs
    scheduled for later (``run_at``) run now too. ``job_ids`` are made due first whatever
    their ``run_at``. Jobs of tasks not in ``tasks`` are left alone. A round is one
    run-once pool (``options`` tune it; one worker by default, so jobs run in the order a
    single worker claims them). After ``max_rounds`` rounds or ``max_jobs`` attempts with
    work left, :class:`RunawayJobs` is raised. With ``raise_errors`` the first exception
    a task raised is re-raised at the end.
    """
    names = set(tasks)
    base = options or WorkerOptions(schema=schema, concurrency=1)
    run = JobsRun()
    recorder = _Recorder(run, max_jobs)
    pool_options = dataclasses.replace(base, events=combine_events(base.events, recorder))
    with WorkerUtils(conninfo, schema=base.schema, run_migrations=False, max_pool_size=1) as utils:
        inspector = Inspector(utils)
        if job_ids:
            _make_due(utils, list(job_ids))
        while True:
            waiting = _to_run(inspector, names, retries=retries, include_future=include_future)
            if not waiting:
                break
            if run.rounds >= max_rounds or recorder.started >= max_jobs:
                limit = (
                    f"{max_rounds} rounds"
                    if run.rounds >= max_rounds
                    else f"{recorder.started} attempts (max_jobs={max_jobs})"
                )
                raise RunawayJobs(
                    f"run_jobs stopped after {limit} with {plural(len(waiting), 'job')} still to"
                    " run:"
                    f" {_describe(waiting)}. Does a task keep enqueueing itself, or is a"
                    " named queue locked by another worker? Raise max_rounds or max_jobs if"
                    " this much work is expected."
                )
            _make_due(
                utils, [record.job.id for record in waiting if record.state != JobState.READY]
            )
            run.rounds += 1
            recorder.pool = WorkerPool(tasks, conninfo=conninfo, options=pool_options, once=True)
            recorder.pool.run()
    if raise_errors:
        run.raise_errors()
    return run


async def run_jobs_async(
    conninfo: str,
    tasks: Mapping[str, TaskFunction],
    **kwargs: object,
) -> JobsRun:
    """:func:`run_jobs` without blocking the event loop (it runs in a thread)."""
    return await asyncio.to_thread(run_jobs, conninfo, tasks, **kwargs)  # type: ignore[arg-type]


def _to_run(
    inspector: Inspector, names: set[str], *, retries: bool, include_future: bool
) -> list[JobRecord]:
    """The jobs of our tasks that a round would run (after time travel), oldest first."""
    now = datetime.now(UTC)
    wanted: list[JobRecord] = []
    for record in reversed(inspector.list_jobs(JobFilter(limit=MAX_LIST_LIMIT))):
        job = record.job
        if job.task_identifier not in names:
            continue
        due = job.run_at is None or job.run_at <= now
        if (
            record.state == JobState.READY
            or (record.state == JobState.RETRYING and (due or retries))
            or (record.state == JobState.SCHEDULED and include_future)
        ):
            wanted.append(record)
    return wanted


def _make_due(utils: WorkerUtils, ids: list[int]) -> None:
    # A second in the past: the database's clock may run a little behind ours.
    if ids:
        utils.reschedule_jobs(ids, run_at=datetime.now(UTC) - timedelta(seconds=1))


def _describe(records: Sequence[JobRecord]) -> str:
    shown = ", ".join(
        f"#{r.job.id} {r.job.task_identifier} ({r.state}, attempts {r.job.attempts})"
        for r in records[:10]
    )
    return shown + (f" and {len(records) - 10} more" if len(records) > 10 else "")
