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
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from graphile_py.admin.utils import LockHolder, WorkerUtils
from graphile_py.db.inspection import inspection_statements_for
from graphile_py.errors import ConfigurationError
from graphile_py.jobs import Job

if TYPE_CHECKING:
    from graphile_py.cron.crontab import CronItem

__all__ = [
    "MAX_LIST_LIMIT",
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


#: The most jobs one :meth:`Inspector.list_jobs` call returns.
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
    #: Whether the crontab given to :meth:`Inspector.list_cron` has this identifier
    #: (None when no crontab was given). False means it is left over from an old crontab.
    in_crontab: bool | None = None


class Inspector:
    """Queries and actions for operators, over a :class:`~graphile_py.WorkerUtils`.

    >>> with WorkerUtils("postgresql://localhost/app") as utils:  # doctest: +SKIP
    ...     report = Inspector(utils).status()
    ...     print(report.totals.failed, report.oldest_ready_age)
    """

    def __init__(self, utils: WorkerUtils) -> None:
        self.utils = utils
        self._sql = inspection_statements_for(utils.schema)

    def status(self) -> QueueStatusReport:
        """Counts by task and queue, the oldest ready job's age, locked queues, pools."""
        with self.utils.connection() as conn, self._sql.snapshot(conn, "Reading the status"):
            taken_at = self._sql.now(conn)
            counts = self._sql.counts(conn)
            queue_rows = self._sql.queues(conn)
            holders = [LockHolder(**row) for row in self._sql.lock_holders(conn)]
        by_task: dict[str, dict[str, int]] = {}
        by_queue: dict[int, dict[str, int]] = {}
        oldest: dict[str, timedelta] = {}
        for row in counts:
            if row["by_task"]:
                task = row["task_identifier"]
                by_task.setdefault(task, {})[row["state"]] = row["n"]
                if row["oldest_ready_age"] is not None:
                    oldest[task] = row["oldest_ready_age"]
            elif row["job_queue_id"] is not None:
                by_queue.setdefault(row["job_queue_id"], {})[row["state"]] = row["n"]
        tasks = [
            TaskStatus(
                task=task, counts=StateCounts(**by_task[task]), oldest_ready_age=oldest.get(task)
            )
            for task in sorted(by_task)
        ]
        return QueueStatusReport(
            taken_at=taken_at,
            totals=_sum_counts(task.counts for task in tasks),
            tasks=tasks,
            queues=_queues(queue_rows, by_queue),
            oldest_ready_age=max(oldest.values(), default=None),
            pools=holders,
        )

    def list_jobs(self, where: JobFilter = JobFilter()) -> list[JobRecord]:
        """Jobs matching ``where``, newest first.

        Raises :class:`~graphile_py.ConfigurationError` when ``where.limit`` is not
        between 1 and :data:`MAX_LIST_LIMIT` or ``where.state`` is not a job state.
        """
        state = _check_filter(where)
        with self.utils.connection() as conn:
            rows = self._sql.list_jobs(
                conn,
                task=where.task,
                queue=where.queue,
                key=where.key,
                state=state,
                before_id=where.before_id,
                limit=where.limit,
            )
        return [_record(row) for row in rows]

    def get_job(self, job_id: int) -> JobRecord | None:
        """One job with its payload and last error, or None if there is no such job."""
        found = self.get_jobs([job_id])
        return found[0] if found else None

    def get_jobs(self, job_ids: Sequence[int]) -> list[JobRecord]:
        """The jobs with these ids that exist, in id order (one round trip)."""
        with self.utils.connection() as conn:
            return [_record(row) for row in self._sql.get_jobs(conn, list(job_ids))]

    def list_queues(self) -> list[QueueStatus]:
        """Every named queue, with counts, and its lock holder."""
        with self.utils.connection() as conn, self._sql.snapshot(conn, "Listing queues"):
            counts = self._sql.queue_counts(conn)
            queue_rows = self._sql.queues(conn)
        by_queue: dict[int, dict[str, int]] = {}
        for row in counts:
            by_queue.setdefault(row["job_queue_id"], {})[row["state"]] = row["n"]
        return _queues(queue_rows, by_queue)

    def list_cron(self, crontab: str | None = None) -> list[CronStatus]:
        """Known cron identifiers; with a crontab's text, also when each next fires.

        Identifiers the crontab does not mention keep ``next_run`` and ``task`` None.
        Raises :class:`~graphile_py.CrontabError` when the crontab does not parse.
        """
        items = _crontab_items(crontab) if crontab is not None else {}
        with self.utils.connection() as conn:
            rows = self._sql.known_crontabs(conn)
        statuses = []
        for row in rows:
            item = items.get(row["identifier"])
            statuses.append(
                CronStatus(
                    identifier=row["identifier"],
                    known_since=row["known_since"],
                    last_execution=row["last_execution"],
                    next_run=_next_run(item, row["now"]) if item is not None else None,
                    task=item.task if item is not None else None,
                    in_crontab=None if crontab is None else item is not None,
                )
            )
        return statuses

    def retry_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """Run these jobs now with their attempts reset; locked jobs are left alone."""
        with self.utils.connection() as conn:
            return [_job(row) for row in self._sql.retry(conn, _ids(job_ids))]

    def retry_failed(self, *, task: str | None = None, queue: str | None = None) -> list[Job]:
        """Retry every permanently failed job (of ``task`` / ``queue`` if given)."""
        with self.utils.connection() as conn:
            return [_job(row) for row in self._sql.retry_failed(conn, task=task, queue=queue)]

    def remove_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """Delete these jobs; locked jobs are left alone. Returns what was removed."""
        with self.utils.connection() as conn:
            return [_job(row) for row in self._sql.remove(conn, _ids(job_ids))]

    def reschedule_jobs(self, job_ids: Sequence[int], run_at: datetime) -> list[Job]:
        """Move these jobs to ``run_at``; locked jobs are left alone.

        ``run_at`` must be timezone-aware (a naive time would be read in the database
        session's time zone); :class:`~graphile_py.ConfigurationError` otherwise.
        """
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise ConfigurationError(
                "run_at must be a timezone-aware datetime (for example with +00:00)"
            )
        with self.utils.connection() as conn:
            return [_job(row) for row in self._sql.reschedule(conn, _ids(job_ids), run_at)]


def _check_filter(where: JobFilter) -> str | None:
    """Validate a filter; return its state as the SQL string (or None)."""
    if isinstance(where.limit, bool) or not isinstance(where.limit, int):
        raise ConfigurationError(f"limit must be an integer, not {where.limit!r}")
    if not 1 <= where.limit <= MAX_LIST_LIMIT:
        raise ConfigurationError(f"limit must be between 1 and {MAX_LIST_LIMIT}, not {where.limit}")
    if where.state is None:
        return None
    try:
        return JobState(where.state).value
    except ValueError:
        allowed = ", ".join(state.value for state in JobState)
        raise ConfigurationError(
            f"unknown job state {where.state!r}; expected one of: {allowed}"
        ) from None


def _ids(job_ids: Sequence[int]) -> list[int]:
    ids = list(job_ids)
    for job_id in ids:
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise ConfigurationError(f"job ids must be integers, not {job_id!r}")
    return ids


def _job(row: Mapping[str, Any]) -> Job:
    return Job.from_row(row)


def _record(row: Mapping[str, Any]) -> JobRecord:
    return JobRecord(job=Job.from_row(row), state=JobState(row["state"]))


def _sum_counts(counts: Iterable[StateCounts]) -> StateCounts:
    total = StateCounts()
    for c in counts:
        total = StateCounts(
            ready=total.ready + c.ready,
            scheduled=total.scheduled + c.scheduled,
            running=total.running + c.running,
            retrying=total.retrying + c.retrying,
            failed=total.failed + c.failed,
        )
    return total


def _queues(
    rows: Sequence[Mapping[str, Any]], by_queue: dict[int, dict[str, int]]
) -> list[QueueStatus]:
    return [
        QueueStatus(
            name=row["queue_name"],
            counts=StateCounts(**by_queue.get(row["id"], {})),
            locked_at=row["locked_at"],
            locked_by=row["locked_by"],
        )
        for row in rows
    ]


@functools.lru_cache(maxsize=8)  # the dashboard asks with the same text on every request
def _crontab_items(text: str) -> dict[str, CronItem]:
    from graphile_py.cron.crontab import parse_crontab  # cron's parser loads only when needed

    return {item.identifier: item for item in parse_crontab(text)}


def _next_run(item: CronItem, now: datetime) -> datetime | None:
    from graphile_py.cron.crontab import CronSchedule

    # Crontab lines always parse to a CronSchedule; only Python matchers lack one.
    return item.match.next_run_after(now) if isinstance(item.match, CronSchedule) else None
