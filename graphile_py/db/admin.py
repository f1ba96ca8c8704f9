"""The statements behind :class:`graphile_py.WorkerUtils`: graphile-worker's admin functions.

Actions on jobs go through the schema's own functions (``complete_jobs``,
``reschedule_jobs``, ...), which skip jobs locked by a live worker, exactly as Node's
``WorkerUtils`` calls them; the clean-up steps are graphile-worker's ``cleanup`` tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import dict_row

from graphile_py.db.rows import Row, labelled_jobs
from graphile_py.db.statement_set import Statement, StatementSet
from graphile_py.db.translate import map_db_errors

__all__ = ["AdminStatements", "CleanupRows"]


class CleanupRows(NamedTuple):
    """What :meth:`AdminStatements.cleanup` removed; None for a step not run."""

    #: Permanently failed jobs deleted, counted per task identifier.
    deleted_jobs: dict[str, int] | None
    #: Task identifiers removed (no job used them).
    task_identifiers: list[str] | None
    #: Named queues removed (empty and unlocked).
    queues: list[str] | None


class AdminStatements(StatementSet):
    """Admin actions on jobs and workers, clean-up, and who holds locks."""

    complete_jobs_sql = Statement(labelled_jobs("{schema}.complete_jobs(%s::bigint[])"))
    permanently_fail_jobs_sql = Statement(
        labelled_jobs("{schema}.permanently_fail_jobs(%s::bigint[], %s::text)")
    )
    reschedule_jobs_sql = Statement(
        labelled_jobs(
            "{schema}.reschedule_jobs(%s::bigint[], run_at => %s::timestamptz,"
            " priority => %s::int, attempts => %s::int, max_attempts => %s::int)"
        )
    )
    remove_job_sql = Statement(labelled_jobs("{schema}.remove_job(%s::text)"))
    force_unlock_workers_sql = Statement("select {schema}.force_unlock_workers(%s::text[])")
    # Each clean-up step returns what it removed, so that operators are told.
    delete_permafailed_sql = Statement(
        "with deleted as (delete from {schema}._private_jobs"
        " where attempts = max_attempts and locked_at is null returning task_id)"
        " select tasks.identifier, count(*) from deleted"
        " left join {schema}._private_tasks as tasks on tasks.id = deleted.task_id"
        " group by tasks.identifier order by tasks.identifier"
    )
    gc_task_identifiers_sql = Statement(
        "delete from {schema}._private_tasks as tasks"
        " where tasks.id not in (select jobs.task_id from {schema}._private_jobs as jobs)"
        " and tasks.identifier <> all(%s::text[])"
        " returning tasks.identifier"
    )
    gc_job_queues_sql = Statement(
        "delete from {schema}._private_job_queues as queues"
        " where queues.locked_at is null and not exists ("
        "select 1 from {schema}._private_jobs as jobs where jobs.job_queue_id = queues.id)"
        " returning queues.queue_name"
    )
    lock_holders_sql = Statement(
        "select held.locked_by as pool_id,"
        " count(*) filter (where held.kind = 'job') as jobs,"
        " count(*) filter (where held.kind = 'queue') as queues,"
        " min(held.locked_at) as oldest_lock"
        " from (select locked_by, locked_at, 'job' as kind from {schema}._private_jobs"
        " where locked_by is not null"
        " union all select locked_by, locked_at, 'queue' from {schema}._private_job_queues"
        " where locked_by is not null) as held"
        " group by held.locked_by order by oldest_lock"
    )

    def _admin_rows(
        self, conn: psycopg.Connection[Any], action: str, query: bytes, params: Sequence[Any]
    ) -> list[Row]:
        with map_db_errors(action), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def admin_complete_jobs(self, conn: psycopg.Connection[Any], ids: Sequence[int]) -> list[Row]:
        """Delete the listed jobs unless a live worker holds them."""
        return self._admin_rows(conn, "Completing jobs", self.complete_jobs_sql, (list(ids),))

    def admin_permanently_fail_jobs(
        self, conn: psycopg.Connection[Any], ids: Sequence[int], reason: str | None
    ) -> list[Row]:
        """Mark the listed jobs as permanently failed unless a live worker holds them."""
        return self._admin_rows(
            conn, "Failing jobs", self.permanently_fail_jobs_sql, (list(ids), reason)
        )

    def admin_reschedule_jobs(
        self,
        conn: psycopg.Connection[Any],
        ids: Sequence[int],
        *,
        run_at: datetime | None,
        priority: int | None,
        attempts: int | None,
        max_attempts: int | None,
    ) -> list[Row]:
        """Change when and how the listed jobs run, unless a live worker holds them."""
        return self._admin_rows(
            conn,
            "Rescheduling jobs",
            self.reschedule_jobs_sql,
            (list(ids), run_at, priority, attempts, max_attempts),
        )

    def admin_remove_job(self, conn: psycopg.Connection[Any], job_key: str) -> Row | None:
        """Delete the job with this key, or retire it if a worker is running it."""
        rows = self._admin_rows(conn, "Removing a job", self.remove_job_sql, (job_key,))
        return rows[0] if rows else None

    def admin_force_unlock_workers(
        self, conn: psycopg.Connection[Any], pool_ids: Sequence[str]
    ) -> None:
        """Release every job and queue locked by the given (dead) pools."""
        with map_db_errors("Unlocking workers"):
            conn.execute(self.force_unlock_workers_sql, (list(pool_ids),))

    def cleanup(
        self,
        conn: psycopg.Connection[Any],
        *,
        delete_permafailed_jobs: bool,
        gc_task_identifiers: bool,
        gc_job_queues: bool,
        task_identifiers_to_keep: Sequence[str] = (),
    ) -> CleanupRows:
        """Run the requested clean-up steps in graphile-worker's order; what each removed.

        A step that was not requested is None in the result.
        """
        deleted: dict[str, int] | None = None
        tasks: list[str] | None = None
        queues: list[str] | None = None
        with map_db_errors("Cleaning up"):
            if delete_permafailed_jobs:
                rows = conn.execute(self.delete_permafailed_sql, ()).fetchall()
                deleted = {str(name): int(count) for name, count in rows}
            if gc_task_identifiers:
                keep = list(task_identifiers_to_keep)
                rows = conn.execute(self.gc_task_identifiers_sql, (keep,)).fetchall()
                tasks = sorted(str(name) for (name,) in rows)
            if gc_job_queues:
                rows = conn.execute(self.gc_job_queues_sql, ()).fetchall()
                queues = sorted(str(name) for (name,) in rows)
        return CleanupRows(deleted, tasks, queues)

    def lock_holders(self, conn: psycopg.Connection[Any]) -> list[Row]:
        """Every pool holding job or queue locks: pool_id, jobs, queues, oldest_lock."""
        with map_db_errors("Listing locks"), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self.lock_holders_sql, ())
            return cur.fetchall()
