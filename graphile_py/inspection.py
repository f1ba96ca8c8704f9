"""Read-only views of the queue for operators, and the few actions they need.

This is what the ``status``/``jobs``/``queues``/``cron`` commands, the dashboard and the
metrics exporter read. Every query goes through :mod:`graphile_py.db`; actions on jobs
use the schema's own admin functions, so a job locked by a running worker (less than
4 hours ago) is left alone, exactly as graphile-worker's ``WorkerUtils`` does.

A job is in exactly one :class:`JobState`, decided in this order:

``running``    locked by a worker (``locked_at`` is set);
``failed``     permanently failed: no attempts left (``attempts >= max_attempts``);
``retrying``   failed at least once and waiting for its next attempt;
``scheduled``  never attempted and due in the future;
``ready``      due now and never attempted (it may still wait for its named queue).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from graphile_py.admin import LockHolder, WorkerUtils
from graphile_py.jobs import Job

__all__ = [
    "CronStatus",
    "Inspector",
    "JobFilter",
    "JobRecord",
    "JobState",
    "QueueStatus",
    "QueueStatusReport",
    "StateCounts",
    "TaskStatus",
]


class JobState(enum.StrEnum):
    """Where a job is in its life; see the module docstring for the precise rules."""

    READY = "ready"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StateCounts:
    """How many jobs are in each state."""

    ready: int = 0
    scheduled: int = 0
    running: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.ready + self.scheduled + self.running + self.retrying + self.failed


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """Counts for one task identifier, and the age of its oldest ready job."""

    task: str
    counts: StateCounts
    oldest_ready_age: timedelta | None


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """One named queue: its jobs by state and who holds its lock, if anyone."""

    name: str
    counts: StateCounts
    locked_at: datetime | None
    locked_by: str | None


@dataclass(frozen=True, slots=True)
class QueueStatusReport:
    """Everything ``graphile-py status`` shows, taken in one snapshot."""

    taken_at: datetime
    totals: StateCounts
    tasks: Sequence[TaskStatus]
    queues: Sequence[QueueStatus]
    oldest_ready_age: timedelta | None
    pools: Sequence[LockHolder]

    @property
    def locked_queues(self) -> list[QueueStatus]:
        return [queue for queue in self.queues if queue.locked_at is not None]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as an operator sees it: the row and its state."""

    job: Job
    state: JobState


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs to list; every field that is set must match."""

    task: str | None = None
    queue: str | None = None
    state: JobState | None = None
    key: str | None = None
    limit: int = 100
    #: Only jobs with an id below this (keyset pagination, newest first).
    before_id: int | None = None


@dataclass(frozen=True, slots=True)
class CronStatus:
    """A cron identifier the database knows, and when it next fires (if a crontab is given)."""

    identifier: str
    known_since: datetime
    last_execution: datetime | None
    next_run: datetime | None
    task: str | None


class Inspector:
    """Queries and actions for operators, over a :class:`~graphile_py.WorkerUtils`."""

    # Interface fixed for the CLI, the dashboard and the metrics exporter; bodies to come.
    def __init__(self, utils: WorkerUtils) -> None:
        self.utils = utils

    def status(self) -> QueueStatusReport:
        """Counts by task and queue, the oldest ready job's age, locked queues, pools."""
        raise NotImplementedError

    def list_jobs(self, where: JobFilter = JobFilter()) -> list[JobRecord]:
        """Jobs matching ``where``, newest first."""
        raise NotImplementedError

    def get_job(self, job_id: int) -> JobRecord | None:
        """One job with its payload and last error, or None if there is no such job."""
        raise NotImplementedError

    def list_queues(self) -> list[QueueStatus]:
        """Every named queue, with counts, and its lock holder."""
        raise NotImplementedError

    def list_cron(self, crontab: str | None = None) -> list[CronStatus]:
        """Known cron identifiers; with a crontab's text, also when each next fires."""
        raise NotImplementedError

    def retry_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """Run these jobs now with their attempts reset; locked jobs are left alone."""
        raise NotImplementedError

    def retry_failed(self, *, task: str | None = None, queue: str | None = None) -> list[Job]:
        """Retry every permanently failed job (of ``task`` / ``queue`` if given)."""
        raise NotImplementedError

    def remove_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """Delete these jobs; locked jobs are left alone. Returns what was removed."""
        raise NotImplementedError

    def reschedule_jobs(self, job_ids: Sequence[int], run_at: datetime) -> list[Job]:
        """Move these jobs to ``run_at``; locked jobs are left alone."""
        raise NotImplementedError
