"""WorkerUtils: adding and administering jobs from code that has no connection at hand.

It owns a small connection pool and migrates the schema when it opens, as
graphile-worker's ``makeWorkerUtils`` does. Every action on jobs is implemented here,
once, with graphile-worker's names; the :class:`~graphile_py.admin.inspector.Inspector`'s
actions call these. They use the schema's own SQL functions, so they treat a job locked
less than 4 hours ago as running and leave it alone; a lock older than that is presumed
dead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Unpack

import psycopg
from psycopg_pool import ConnectionPool

from graphile_py.db import Row, borrow, map_db_errors, statements_for, task_index
from graphile_py.db.migrate import MigrationReport, migrate
from graphile_py.db.migrations import DEFAULT_SCHEMA
from graphile_py.db.pooler import connect_kwargs
from graphile_py.db.side_schema import side_schema_for
from graphile_py.db.task_index import TaskIndexStatus
from graphile_py.enqueue import add_job, add_jobs
from graphile_py.errors import ConfigurationError
from graphile_py.jobs import Job, JobOptions, JobSpec, client_time_defaults

__all__ = ["CLEANUP_TASKS", "CleanupReport", "CleanupTask", "LockHolder", "WorkerUtils"]

CleanupTask = Literal["GC_TASK_IDENTIFIERS", "GC_JOB_QUEUES", "DELETE_PERMAFAILED_JOBS"]
CLEANUP_TASKS: tuple[CleanupTask, ...] = (
    "GC_TASK_IDENTIFIERS",
    "GC_JOB_QUEUES",
    "DELETE_PERMAFAILED_JOBS",
)


@dataclass(frozen=True, slots=True)
class LockHolder:
    """A worker pool (``locked_by``) holding locks, and how many."""

    pool_id: str
    jobs: int
    queues: int
    oldest_lock: datetime

    def age(self, now: datetime | None = None) -> timedelta:
        """How long ago the oldest of its locks was taken."""
        return (now or datetime.now(UTC)) - self.oldest_lock


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What :meth:`WorkerUtils.cleanup` removed, step by step; None for a step not run."""

    #: DELETE_PERMAFAILED_JOBS: how many permanently failed jobs, per task identifier.
    deleted_jobs: Mapping[str, int] | None = None
    #: GC_TASK_IDENTIFIERS: the task identifiers removed (no job used them).
    task_identifiers: tuple[str, ...] | None = None
    #: GC_JOB_QUEUES: the named queues removed (no job in them, not locked).
    queues: tuple[str, ...] | None = None

    @property
    def deleted_job_count(self) -> int:
        """How many jobs were deleted in all (0 when that step did not run)."""
        return sum((self.deleted_jobs or {}).values())


class WorkerUtils:
    """Enqueue and administer jobs through a pool of its own.

    >>> with WorkerUtils("postgresql://localhost/app") as utils:  # doctest: +SKIP
    ...     utils.add_job("send_email", {"to": "someone@example.com"})

    Through PgBouncer in transaction mode pass ``prepared_statements=False``.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        max_pool_size: int = 4,
        run_migrations: bool = True,
        connect_timeout: float = 30.0,
        use_node_time: bool = False,
        side_schema: str | None = None,
        prepared_statements: bool = True,
    ) -> None:
        self.schema = schema
        #: graphile-py's own schema (pool registry, job history); derived from ``schema``.
        self.side_schema = side_schema_for(schema, side_schema)
        #: Jobs added without ``run_at`` are due at this machine's time, not the database's.
        self.use_node_time = use_node_time
        self._statements = statements_for(schema)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_pool_size,
            # prepared_statements=False for a transaction-mode pooler (PgBouncer), where
            # psycopg's prepared statements (after 5 runs of one query) would fail.
            kwargs={
                "autocommit": True,
                **({} if prepared_statements else connect_kwargs(prepared_statements=False)),
            },
            open=False,
            name="graphile-py-utils",
        )
        with map_db_errors("Connecting to the database"):
            # One direct connection first: a wrong connection string fails now, with the
            # server's words, instead of after the pool's connect_timeout of retrying.
            psycopg.connect(conninfo, connect_timeout=max(1, round(connect_timeout))).close()
            self._pool.open(wait=True, timeout=connect_timeout)
        if run_migrations:
            try:
                self.migrate()
            except BaseException:
                self._pool.close()
                raise

    def __enter__(self) -> WorkerUtils:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pool's connections."""
        self._pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a pooled connection (autocommit)."""
        with borrow(self._pool) as conn:
            yield conn

    def migrate(self) -> MigrationReport:
        """Install or upgrade the worker schema and graphile-py's side schema."""
        with self.connection() as conn:
            return migrate(conn, schema=self.schema, side_schema=self.side_schema)

    def add_job(
        self, identifier: str, payload: object = None, **options: Unpack[JobOptions]
    ) -> Job:
        """Add a job (committed at once); see :func:`graphile_py.add_job`."""
        if self.use_node_time:
            options, _ = client_time_defaults(options)
        with self.connection() as conn:
            return add_job(conn, identifier, payload, schema=self.schema, **options)

    def add_jobs(
        self, specs: Sequence[JobSpec], *, job_key_preserve_run_at: bool = False
    ) -> list[Job]:
        """Add several jobs in one round trip; see :func:`graphile_py.add_jobs`."""
        if self.use_node_time:
            _, specs = client_time_defaults({}, specs)
        with self.connection() as conn:
            return add_jobs(
                conn, specs, job_key_preserve_run_at=job_key_preserve_run_at, schema=self.schema
            )

    def complete_jobs(self, job_ids: Iterable[int]) -> list[Job]:
        """Delete the listed jobs as if they had succeeded; running ones are skipped."""
        with self.connection() as conn:
            return self._jobs(self._statements.admin_complete_jobs(conn, list(job_ids)))

    def permanently_fail_jobs(self, job_ids: Iterable[int], reason: str | None = None) -> list[Job]:
        """Mark the listed jobs as failed for good; running ones are skipped."""
        with self.connection() as conn:
            rows = self._statements.admin_permanently_fail_jobs(conn, list(job_ids), reason or None)
            return self._jobs(rows)

    def reschedule_jobs(
        self,
        job_ids: Iterable[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> list[Job]:
        """Change the given fields of the listed jobs; running ones are skipped."""
        with self.connection() as conn:
            rows = self._statements.admin_reschedule_jobs(
                conn,
                list(job_ids),
                run_at=run_at,
                priority=priority,
                attempts=attempts,
                max_attempts=max_attempts,
            )
            return self._jobs(rows)

    def remove_job(self, job_key: str) -> Job | None:
        """Delete the pending job with this key; a running one is only prevented from retrying."""
        with self.connection() as conn:
            row = self._statements.admin_remove_job(conn, job_key)
            return self._jobs([row])[0] if row else None

    def lock_holders(self) -> list[LockHolder]:
        """Every pool that holds job or queue locks, oldest first.

        A pool whose oldest lock is hours old is probably dead (its process crashed or
        was killed); :meth:`force_unlock_workers` releases its jobs at once.
        """
        with self.connection() as conn:
            return [LockHolder(**row) for row in self._statements.lock_holders(conn)]

    def force_unlock_workers(self, pool_ids: Iterable[str]) -> None:
        """Release every job and queue locked by these pools (which must be dead)."""
        with self.connection() as conn:
            self._statements.admin_force_unlock_workers(conn, list(pool_ids))

    def cleanup(
        self,
        tasks: Iterable[CleanupTask] = ("GC_JOB_QUEUES",),
        *,
        task_identifiers_to_keep: Iterable[str] = (),
    ) -> CleanupReport:
        """Delete permanently failed jobs and unused task and queue rows, as asked.

        Returns what each step removed. ``GC_TASK_IDENTIFIERS`` is unsafe while workers
        run: they cache task ids.
        """
        wanted = list(tasks)
        unknown = [task for task in wanted if task not in CLEANUP_TASKS]
        if unknown:
            raise ConfigurationError(
                f"Invalid cleanup tasks; allowed values: {', '.join(CLEANUP_TASKS)};"
                f" you provided: {', '.join(map(str, unknown))}"
            )
        with self.connection() as conn:
            removed = self._statements.cleanup(
                conn,
                delete_permafailed_jobs="DELETE_PERMAFAILED_JOBS" in wanted,
                gc_task_identifiers="GC_TASK_IDENTIFIERS" in wanted,
                gc_job_queues="GC_JOB_QUEUES" in wanted,
                task_identifiers_to_keep=list(task_identifiers_to_keep),
            )
        return CleanupReport(
            removed.deleted_jobs,
            None if removed.task_identifiers is None else tuple(removed.task_identifiers),
            None if removed.queues is None else tuple(removed.queues),
        )

    def task_index_status(self) -> TaskIndexStatus:
        """Whether the opt-in per-task index is installed (:mod:`graphile_py.db.task_index`)."""
        with self.connection() as conn:
            return task_index.task_index_status(conn, self.schema)

    def install_task_index(self, *, concurrently: bool = True) -> TaskIndexStatus:
        """Build the opt-in per-task index, for pools facing a backlog of other tasks' jobs.

        Worker pools look for it when they start. See docs/operations.md, "A backlog of
        other tasks' jobs", for its cost.
        """
        with self.connection() as conn:
            return task_index.install_task_index(conn, self.schema, concurrently=concurrently)[0]

    def drop_task_index(self, *, concurrently: bool = True) -> bool:
        """Drop the opt-in per-task index; True if there was one."""
        with self.connection() as conn:
            return task_index.drop_task_index(conn, self.schema, concurrently=concurrently)

    @staticmethod
    def _jobs(rows: Sequence[Row]) -> list[Job]:
        """Jobs from the labelled rows the actions return (task and queue names joined in)."""
        return [Job.from_row(row) for row in rows]
