"""Read-only views of the queue for operators, and the few actions they need.

This is what the ``status``/``jobs``/``queues``/``cron`` commands, the dashboard and the
metrics exporter read. Every query goes through :mod:`graphile_py.db` and none of them
writes: :meth:`Inspector.check_schema` reports a missing or old schema instead of
migrating it. The actions (retry, remove, reschedule) are those of
:class:`~graphile_py.WorkerUtils`, which skip a job locked by a running worker (less than
4 hours ago); only ``retry_failed``, which picks its jobs by state, has a query of its own.

The records it returns (a job's :class:`JobState` among them) are in
:mod:`graphile_py.admin.records`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from graphile_py.admin.history import (
    AttemptRecord,
    HistoryFilter,
    HistoryPage,
    Replay,
    read_history,
    read_timeline,
    replay_job,
)
from graphile_py.admin.pools import WorkersReport, read_workers

# The records are part of this module's interface: Inspector takes and returns them.
from graphile_py.admin.records import (
    MAX_LIST_LIMIT,
    CronStatus,
    JobFilter,
    JobRecord,
    JobState,
    QueueStatus,
    QueueStatusReport,
    StateCounts,
    TaskStatus,
)
from graphile_py.admin.served import ServiceReport, services_for_jobs, services_for_tasks
from graphile_py.admin.worker_utils import LockHolder, WorkerUtils
from graphile_py.db.health import schema_version
from graphile_py.db.inspection import inspection_statements_for
from graphile_py.db.migrate import latest_known_migration
from graphile_py.db.side_views import NOT_INSTALLED
from graphile_py.errors import ConfigurationError, DatabaseError, IncompatibleSchema
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

_MIGRATE_FIRST = "run 'graphile-py migrate' (or start a worker) first"
# What reading ``schema.migrations`` fails with when the schema or the table is missing.
_NOT_INSTALLED = frozenset({"3F000", "42P01"})
_EVERY_JOB = JobFilter()  # the default filter (frozen, so one instance serves every call)


class Inspector:
    """Queries and actions for operators, over a :class:`~graphile_py.WorkerUtils`.

    >>> with WorkerUtils("postgresql://localhost/app") as utils:  # doctest: +SKIP
    ...     report = Inspector(utils).status()
    ...     print(report.totals.failed, report.oldest_ready_age)
    """

    def __init__(self, utils: WorkerUtils) -> None:
        self.utils = utils
        self._sql = inspection_statements_for(utils.schema)

    def check_schema(self) -> None:
        """Fail unless the worker schema is installed and fully migrated; only reads.

        Looking at a queue must not upgrade a schema that other workers share, so the
        read-only commands and the dashboard call this instead of migrating. Raises
        :class:`~graphile_py.DatabaseError` when the schema is missing or older than this
        graphile-py's migrations, and :class:`~graphile_py.IncompatibleSchema` when it has
        a breaking migration newer than those.
        """
        schema = self.utils.schema
        try:
            with self.utils.connection() as conn:
                latest, breaking = schema_version(conn, schema)
        except DatabaseError as exc:
            if exc.sqlstate not in _NOT_INSTALLED:
                raise
            latest = breaking = None
        if latest is None:
            raise DatabaseError(
                f"the worker schema {schema!r} is not installed in this database; {_MIGRATE_FIRST}"
            )
        known = latest_known_migration()
        if breaking is not None and breaking > known:
            raise IncompatibleSchema(
                f"the worker schema {schema!r} is at revision {latest}, with breaking migration"
                f" {breaking}, but this graphile-py only supports up to revision {known};"
                " upgrade graphile-py to read it"
            )
        if latest < known:
            raise DatabaseError(
                f"the worker schema {schema!r} is at revision {latest}, older than the"
                f" revision {known} this graphile-py reads; {_MIGRATE_FIRST}"
            )

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

    def list_jobs(self, where: JobFilter = _EVERY_JOB) -> list[JobRecord]:
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

    # -- the side schema: the pool registry and the job history ------------------------------

    def task_services(self, tasks: Sequence[TaskStatus]) -> ServiceReport:
        """Whether a worker serves each of ``status()``'s tasks (:mod:`graphile_py.admin.served`).

        From the worker registry when Python pools use it, else from the tasks' counts.
        """
        return services_for_tasks(self.utils, tasks)

    def job_services(self, records: Sequence[JobRecord]) -> ServiceReport:
        """Whether a worker serves the tasks of those ``records`` that wait to run."""
        return services_for_jobs(self.utils, records)

    def workers(self, *, include_stopped: bool = False) -> WorkersReport:
        """Registered pools: live ones and recently lost ones (``include_stopped``: all).

        Raises :class:`~graphile_py.DatabaseError` when the side schema is not installed.
        """
        return read_workers(self.utils, include_stopped=include_stopped)

    def history(self, where: HistoryFilter | None = None) -> HistoryPage:
        """Recorded attempts matching ``where``, newest first (needs ``--history`` workers)."""
        return read_history(self.utils, where)

    def attempts(self, job_id: int, *, if_installed: bool = False) -> list[AttemptRecord]:
        """Every recorded attempt of one job, oldest first, whether it still exists or not.

        With ``if_installed``, none (rather than an error) when the side schema is missing:
        a job's page must still show the job.
        """
        try:
            return read_timeline(self.utils, job_id)
        except DatabaseError as exc:
            if not if_installed or exc.sqlstate not in NOT_INSTALLED:
                raise
            return []

    def replay(self, job_id: int) -> Replay | None:
        """Add a new job with the task, payload and options of job ``job_id``.

        From the job while it exists, else from its history (see
        :mod:`graphile_py.admin.history`); None when there is neither.
        """
        return replay_job(self.utils, job_id, self.get_job(job_id))

    # -- actions -------------------------------------------------------------------------------

    def retry_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """Run these jobs now with their attempts reset; locked jobs are left alone."""
        ids = _ids(job_ids)
        if not ids:
            return []
        # One statement, run_at => now(): the database's clock, which the claims compare
        # run_at with. (WorkerUtils has no retry: graphile-worker's has none either.)
        with self.utils.connection() as conn:
            return [_job(row) for row in self._sql.retry(conn, ids)]

    def retry_failed(self, *, task: str | None = None, queue: str | None = None) -> list[Job]:
        """Retry every permanently failed job (of ``task`` / ``queue`` if given).

        One statement picks the jobs by state and retries them, so a job that fails in
        the meantime is either retried or left failed, never half-handled.
        """
        with self.utils.connection() as conn:
            return [_job(row) for row in self._sql.retry_failed(conn, task=task, queue=queue)]

    def remove_jobs(self, job_ids: Sequence[int]) -> list[Job]:
        """Delete these jobs; locked jobs are left alone. Returns what was removed."""
        ids = _ids(job_ids)
        return _by_id(self.utils.complete_jobs(ids)) if ids else []

    def reschedule_jobs(self, job_ids: Sequence[int], run_at: datetime) -> list[Job]:
        """Move these jobs to ``run_at``; locked jobs are left alone.

        ``run_at`` must be timezone-aware (a naive time would be read in the database
        session's time zone); :class:`~graphile_py.ConfigurationError` otherwise.
        """
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise ConfigurationError(
                "run_at must be a timezone-aware datetime (for example with +00:00)"
            )
        ids = _ids(job_ids)
        return _by_id(self.utils.reschedule_jobs(ids, run_at=run_at)) if ids else []


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


def _by_id(jobs: list[Job]) -> list[Job]:
    """In id order (the schema's functions return them in whatever order they found them)."""
    return sorted(jobs, key=lambda job: job.id)


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
    from graphile_py.cron.schedule import CronSchedule

    # Crontab lines always parse to a CronSchedule; only Python matchers lack one.
    return item.match.next_run_after(now) if isinstance(item.match, CronSchedule) else None
