"""What the operator API returns: the queue's counts, jobs with their state, cron items.

Plain frozen dataclasses, built by :class:`~graphile_py.admin.inspector.Inspector` and
turned into JSON by :mod:`graphile_py.admin.views`.

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
from datetime import UTC, datetime, timedelta

from graphile_py.admin.worker_utils import LockHolder
from graphile_py.jobs import Job

__all__ = [
    "MAX_LIST_LIMIT",
    "CronStatus",
    "JobFilter",
    "JobRecord",
    "JobState",
    "QueueStatus",
    "QueueStatusReport",
    "StateCounts",
    "TaskStatus",
]

#: The most jobs one :meth:`~graphile_py.admin.inspector.Inspector.list_jobs` call returns.
MAX_LIST_LIMIT = 10_000


class JobState(enum.StrEnum):
    """Where a job is in its life; see the module docstring for the precise rules."""

    READY = "ready"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    FAILED = "failed"

    @classmethod
    def of(cls, job: Job, now: datetime | None = None) -> JobState:
        """The state of ``job`` as it was read, by the same rule as the queries use.

        For a job no longer in the database (an action just removed it, a worker just
        finished it); for a job that is there, the query's answer is the one to trust.
        """
        if job.locked_at is not None:
            return cls.RUNNING
        if job.attempts >= job.max_attempts:
            return cls.FAILED
        if job.attempts > 0:
            return cls.RETRYING
        if job.run_at is not None and job.run_at > (now or datetime.now(UTC)):
            return cls.SCHEDULED
        return cls.READY


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
        """Jobs in every state."""
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
    """Everything ``graphile-py status`` shows, taken in one snapshot.

    ``taken_at`` is the database's clock; ``tasks`` (sorted by identifier) lists the
    tasks that have jobs; ``queues`` (sorted by name) every named queue, idle ones
    included; ``oldest_ready_age`` is that of the oldest ``ready`` job of any task.
    """

    taken_at: datetime
    totals: StateCounts
    tasks: Sequence[TaskStatus]
    queues: Sequence[QueueStatus]
    oldest_ready_age: timedelta | None
    pools: Sequence[LockHolder]

    @property
    def locked_queues(self) -> list[QueueStatus]:
        """The named queues a worker holds (it is running one of their jobs)."""
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
    #: Whether the crontab given to ``Inspector.list_cron`` has this identifier (None
    #: when no crontab was given). False means it is left over from an old crontab.
    in_crontab: bool | None = None
